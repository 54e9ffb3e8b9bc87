"""How the node agent turns an image and a container spec into what runs: Kubernetes'
command/args/env rules, the user, the pull policy's default, and layers unpacked with OCI
whiteouts as overlayfs ones."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from modelship_dev.imagestore import Image, Layer
from modelship_dev.nodeagent import containers, pulling, rootfs, users
from tests.conftest import require_node_agent_host

GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def image(**config: Any) -> Image:
    fields: dict[str, Any] = {"ref": "localhost/t/img:1", "manifest_digest": "sha256:m",
                              "config_digest": "sha256:c", "entrypoint": ("ep",),
                              "cmd": ("c1", "c2"), "env": ("PATH=/img/bin", "A=image"),
                              "working_dir": "/w", "user": "1000:1000"}
    return Image(**{**fields, **config})


@pytest.mark.parametrize(("spec", "argv"), [
    ({}, ["ep", "c1", "c2"]),
    ({"args": ["x", "$(V)"]}, ["ep", "x", "v"]),
    ({"command": ["run"]}, ["run"]),
    ({"command": ["run", "$(V)"], "args": ["y"]}, ["run", "v", "y"]),
    ({"command": ["run", "$$(V)"]}, ["run", "$(V)"]),
])
def test_command_and_args_replace_entrypoint_and_cmd(spec: dict[str, Any],
                                                     argv: list[str]) -> None:
    assert containers.command_line(image(), spec, {"V": "v"}) == argv


def test_an_image_without_entrypoint_or_cmd_needs_a_command() -> None:
    with pytest.raises(containers.ConfigError, match="no Entrypoint or Cmd") as err:
        containers.command_line(image(entrypoint=(), cmd=()), {}, {})
    assert err.value.reason == "CreateContainerError"


def test_env_goes_over_the_image_env() -> None:
    env = containers.environment(image(), {"A": "pod", "B": "pod"}, "pod-name")
    assert env == {"PATH": "/img/bin", "A": "pod", "B": "pod", "HOSTNAME": "pod-name"}
    assert containers.environment(image(env=()), {}, "p")["PATH"] == containers.DEFAULT_PATH


def _root(tmp_path: Path) -> list[Path]:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                             "app:x:1500:1600::/home/app:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    return [tmp_path]


def test_user_from_the_image_and_the_security_context(tmp_path: Path) -> None:
    lowers = _root(tmp_path)
    assert users.resolve(image(), lowers, {}) == users.User(1000, 1000, (1000,))
    assert users.resolve(image(user="app"), lowers, {}) == users.User(1500, 1600, (1600,))
    assert users.resolve(image(user="app:staff"), lowers, {}).gid == 50
    assert users.resolve(image(user="2000"), lowers, {}) == users.User(2000, 0, (0,))
    assert users.resolve(image(user=""), lowers, {}).uid == 0
    # runAsUser replaces the image's user and its group; the group comes from passwd.
    assert users.resolve(image(), lowers, {"runAsUser": 1500}) == users.User(1500, 1600, (1600,))
    context = {"runAsUser": 7, "runAsGroup": 8, "supplementalGroups": [9], "fsGroup": 10}
    assert users.resolve(image(), lowers, context) == users.User(7, 8, (8, 9, 10))


def test_run_as_non_root_refuses_root_and_names(tmp_path: Path) -> None:
    lowers = _root(tmp_path)
    with pytest.raises(users.UserError, match="will run as root"):
        users.resolve(image(user="0"), lowers, {"runAsNonRoot": True})
    with pytest.raises(users.UserError, match="non-numeric user"):
        users.resolve(image(user="app"), lowers, {"runAsNonRoot": True})
    with pytest.raises(users.UserError, match="'nobody' is not in the image's /etc/passwd"):
        users.resolve(image(user="nobody"), lowers, {})


@pytest.mark.parametrize(("spec", "policy"), [
    ({"image": "localhost/a/b:1"}, "IfNotPresent"),
    ({"image": "localhost/a/b:latest"}, "Always"),
    ({"image": "localhost:5000/a/b"}, "Always"),
    ({"image": "localhost/a/b:1", "imagePullPolicy": "Never"}, "Never"),
])
def test_pull_policy_defaults_as_the_api_server_sets_it(spec: dict[str, Any],
                                                        policy: str) -> None:
    assert pulling.policy(spec) == policy


def _layer(tmp_path: Path, members: dict[str, bytes | None]) -> Layer:
    """A gzip layer: name -> content (None: a folder)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    blob = gzip.compress(raw.getvalue())
    path = tmp_path / "blob"
    path.write_bytes(blob)
    return Layer(f"sha256:{hashlib.sha256(blob).hexdigest()}", GZIP_LAYER, len(blob), path)


@pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts need mknod and trusted.* attributes")
def test_layers_unpack_once_with_overlay_whiteouts(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSHIP_CACHE", str(tmp_path / "cache"))
    layer = _layer(tmp_path, {"etc": None, "etc/keep": b"k", "etc/.wh.gone": b"",
                              "opt": None, "opt/.wh..wh..opq": b"", "opt/new": b"n"})
    unpacked = rootfs.unpack(layer)
    assert unpacked == rootfs.layer_path(layer.digest) and (unpacked / "etc/keep").read_bytes()
    gone = (unpacked / "etc/gone").lstat()
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert not (unpacked / "etc/.wh.gone").exists()
    assert os.getxattr(unpacked / "opt", "trusted.overlay.opaque") == b"y"
    assert not (unpacked / "opt/.wh..wh..opq").exists()
    assert rootfs.find_file([unpacked], "/etc/gone") is None
    assert rootfs.find_file([unpacked], "/etc/keep") == unpacked / "etc/keep"
    (unpacked / "etc/keep").write_bytes(b"changed")
    assert rootfs.unpack(layer) == unpacked  # once: not unpacked again
    assert (unpacked / "etc/keep").read_bytes() == b"changed"


def test_a_layer_whose_digest_does_not_match_is_refused(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSHIP_CACHE", str(tmp_path / "cache"))
    layer = _layer(tmp_path, {"file": b"x"})
    forged = Layer("sha256:" + "0" * 64, layer.media_type, layer.size, layer.path)
    with pytest.raises(rootfs.UnpackError, match="corrupt store"):
        rootfs.unpack(forged)
    assert not list(rootfs.layers_dir().glob("0*"))


def test_unpacked_layers_no_image_names_are_collected_unless_mounted_or_fresh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSHIP_CACHE", str(tmp_path))
    now = 1_000_000.0
    for name in ("named", "mounted", "fresh", "old", "old.partial"):
        (rootfs.layers_dir() / name / "usr").mkdir(parents=True)
        when = now - (10 if name == "fresh" else rootfs.GC_GRACE_S + 1)
        os.utime(rootfs.layers_dir() / name, (when, when))
    removed = rootfs.collect_garbage(["sha256:named", "sha256:config"], in_use={"mounted"},
                                     now=now)
    assert sorted(removed) == ["old", "old.partial"]
    assert sorted(p.name for p in rootfs.layers_dir().iterdir()
                  if not p.name.startswith(".")) == ["fresh", "mounted", "named"]


def test_layers_a_container_has_mounted_are_found_in_any_mount_namespace(
        tmp_path: Path) -> None:
    """A real overlay, mounted the way launch.py does (lower layers relative to the layer
    cache) in a mount namespace of its own."""
    require_node_agent_host()
    layers = tmp_path / "layers"
    for name in ("a1", "b2", "upper", "work", "root"):
        (layers / name).mkdir(parents=True)
    script = ("mount -t overlay overlay -o lowerdir=a1:b2,upperdir=$PWD/upper,"
              "workdir=$PWD/work $PWD/root && echo mounted && read _")
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               script], cwd=layers, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "mounted\n"
        assert {"a1", "b2"} <= rootfs.mounted_layers()
    finally:
        holder.communicate("\n", timeout=10)
    assert holder.returncode == 0
    assert not {"a1", "b2"} & rootfs.mounted_layers()
