"""How the local environment names and caches the binaries it builds from Go modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelship_dev import tools


@pytest.mark.parametrize(("package", "name"), [
    ("k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
    ("go.etcd.io/etcd/server/v3", "server"),
    ("github.com/prometheus-operator/prometheus-operator/cmd/operator", "operator"),
    ("example.com/v2tool", "v2tool"),
])
def test_the_file_go_build_writes_into_a_folder(package: str, name: str) -> None:
    assert tools.go_binary_name(package) == name


def test_binaries_built_with_other_tags_are_cached_apart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSHIP_CACHE", str(tmp_path))
    plain = tools.Component("p", "example.com/p", "v1.0.0", {"p": "example.com/p"})
    tagged = tools.Component("p", "example.com/p", "v1.0.0", {"p": "example.com/p"},
                             tags=("remove_all_sd", "enable_kubernetes_sd"))
    assert plain.bin_dir == tmp_path / "bin" / "p-v1.0.0"
    assert tagged.bin_dir == tmp_path / "bin" / "p-v1.0.0+remove_all_sd+enable_kubernetes_sd"
    # Prometheus keeps the service discovery the Prometheus Operator configures.
    assert "enable_kubernetes_sd" in tools.PROMETHEUS.tags
