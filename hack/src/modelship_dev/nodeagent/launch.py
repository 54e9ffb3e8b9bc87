"""Start one container: runs inside the pod's network namespace (via `ip netns exec`), builds
the container's own root in a private mount namespace, then execs the container's command
as the container's user.

The root is an overlay of the image's unpacked layers (rootfs.py) with a writable layer of
the container's own, made read-only after the mounts when readOnlyRootFilesystem says so; in
it /proc and /sys of the host, a private /dev (its own /dev/shm: Triton's Python backend
names its shared memory regions without regard for other servers), the pod's volumes at
their mount paths, /etc/hosts and the container's termination message file. Standard
library only: it runs with `python -S` before the command replaces it (same process, so
the agent's process group is the command's).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
EXIT_SETUP_FAILED = 128

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: Path, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, str(target).encode(),
                       fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {source} on {target}")


def _resolve(root: Path, path: str) -> Path:
    """`path` inside `root`, following symlinks as the chrooted process will (an absolute
    link is relative to `root`, not to the host)."""
    parts = list(Path(path.lstrip("/")).parts)
    done = Path("/")
    hops = 0
    while parts:
        part = parts.pop(0)
        candidate = root / (done / part).relative_to("/")
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise OSError(f"too many symlinks resolving {path}")
            link = candidate.readlink()
            parts = list(link.parts[1:] if link.is_absolute() else link.parts) + parts
            done = Path("/") if link.is_absolute() else done
        elif part == "..":
            done = done.parent
        elif part != ".":
            done = done / part
    return done


def _mount_point(root: Path, path: str, is_file: bool) -> Path:
    """The mount point inside `root` (the container's own overlay), created if missing."""
    target = root / _resolve(root, path).relative_to("/")
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_file:
            target.touch()
        else:
            target.mkdir()
    return target


def _mount_image(spec: dict[str, object], root: Path) -> None:
    """The image's layers (paths relative to the layer cache, which keeps the option short)
    under the container's writable layer."""
    lower = spec["lower"]
    assert isinstance(lower, list)
    os.chdir(str(spec["layers"]))
    mount("overlay", root, "overlay", MS_NOSUID,
          f"lowerdir={':'.join(str(p) for p in lower)},upperdir={spec['upper']},"
          f"workdir={spec['work']}")
    os.chdir("/")


def _mount_dev(root: Path) -> None:
    dev = _mount_point(root, "/dev", False)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=1m")
    for name in DEVICES:
        if Path(f"/dev/{name}").exists():
            (dev / name).touch()
            mount(f"/dev/{name}", dev / name, None, MS_BIND)
    (dev / "shm").mkdir()
    mount("tmpfs", dev / "shm", "tmpfs", MS_NOSUID, "mode=1777")
    if Path("/dev/pts").is_dir():
        (dev / "pts").mkdir()
        mount("/dev/pts", dev / "pts", None, MS_BIND | MS_REC)
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                       ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        (dev / name).symlink_to(link)


def build_root(spec: dict[str, object]) -> Path:
    root = Path(str(spec["root"]))
    _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    mount(None, Path("/"), None, MS_REC | MS_PRIVATE)
    _mount_image(spec, root)
    for entry in ("proc", "sys"):
        mount(f"/{entry}", _mount_point(root, f"/{entry}", False), None, MS_BIND | MS_REC)
    _mount_dev(root)
    mounts = spec["mounts"]
    assert isinstance(mounts, list)
    for m in sorted(mounts, key=lambda m: str(m["target"]).count("/")):
        target = _mount_point(root, str(m["target"]), bool(m.get("file")))
        mount(str(m["source"]), target, None, MS_BIND | MS_REC)
        if m.get("readOnly"):
            mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    _mount_point(root, str(spec.get("cwd") or "/"), False)  # a runtime creates it too
    if spec.get("readOnlyRoot"):
        # Mount points exist by now; the volumes under the root stay writable.
        mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    return root


def _become(user: dict[str, object]) -> None:
    groups = user["groups"]
    assert isinstance(groups, list)
    os.setgroups([int(g) for g in groups])
    os.setgid(int(str(user["gid"])))
    os.setuid(int(str(user["uid"])))


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    message = Path(str(spec["terminationSource"]))
    try:
        root = build_root(spec)
        os.chroot(root)
        _become(spec["user"])
        os.chdir(str(spec.get("cwd") or "/"))
    except OSError as err:
        text = f"container setup failed: {err}"
        print(text, file=sys.stderr, flush=True)
        message.write_text(text)
        os._exit(EXIT_SETUP_FAILED)
    argv = [str(a) for a in spec["argv"]]
    try:
        os.execvpe(argv[0], argv, {str(k): str(v) for k, v in spec["env"].items()})
    except OSError as err:
        text = f"cannot run {argv[0]}: {err.strerror}"
        print(text, file=sys.stderr, flush=True)
        Path(str(spec["terminationPath"])).write_text(text)
        os._exit(127 if isinstance(err, FileNotFoundError) else 126)


if __name__ == "__main__":
    main(sys.argv[1])
