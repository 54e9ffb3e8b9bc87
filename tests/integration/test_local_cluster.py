"""`up` gives a working cluster with CPU and GPU nodes; `down` leaves nothing behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modelship_dev.cluster import LocalCluster
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def _lease_times(cluster: LocalCluster) -> dict[str, str]:
    out = cluster.kubectl("get", "lease", "-n", "kube-node-lease", "-o", "json").stdout
    return {item["metadata"]["name"]: item["spec"].get("renewTime", "")
            for item in json.loads(out)["items"]}


def test_up_registers_cpu_and_gpu_nodes_and_down_leaves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "second-cluster"
    cluster = LocalCluster(state, log=lambda _line: None)
    try:
        cluster.up()
        assert cluster.is_up()
        nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        capacity = {n["metadata"]["name"]: n["status"]["capacity"] for n in nodes}
        assert capacity["gpu-0"]["nvidia.com/gpu"] == "1"
        assert "nvidia.com/gpu" not in capacity["cpu-0"]
        version = cluster.kubectl("version", "-o", "json").stdout
        assert json.loads(version)["serverVersion"]["gitVersion"] == "v1.35.4"
        assert len(_processes_mentioning(str(state))) == 5
        # kwok renews the nodes' Leases like kubelets: without that the node lifecycle
        # controller marks both nodes NotReady after 40 s and every pod with them.
        first = wait_for("both node Leases", lambda: (
            t if set(t := _lease_times(cluster)) == {"cpu-0", "gpu-0"} else None), timeout=30)

        def renewed() -> bool:
            now = _lease_times(cluster)
            return all(now.get(n, "") > first[n] for n in first)

        wait_for("both Leases renewed", renewed, timeout=30)
    finally:
        cluster.down()
    assert _processes_mentioning(str(state)) == []
    assert not state.exists()
    assert not cluster.is_up()
