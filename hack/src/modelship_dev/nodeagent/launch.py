"""Start one container: runs inside the pod's network namespace (via `ip netns exec`), builds
the container's own root in a private mount namespace, then execs the container's command.

The root is a tmpfs holding the host's top-level folders bind-mounted (so commands resolve as
on the host), with private /tmp, /run and /dev (its own /dev/shm: Triton's Python backend
names its shared memory regions without regard for other servers), the pod's volumes at their
mount paths and the container's termination message file. Standard library only: it runs
with `python -S` before the command replaces it (same process, so the agent's process group
is the command's).
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
PRIVATE_TOP = {"dev", "proc", "sys", "tmp", "run"}
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
    """The mount point inside `root`, created if missing, but never on a host folder."""
    inside = _resolve(root, path)
    target = root / inside.relative_to("/")
    if target.exists():
        return target
    top = inside.parts[1] if len(inside.parts) > 1 else ""
    if (Path("/") / top).exists() and top not in PRIVATE_TOP:
        raise OSError(f"mount point {path} does not exist and would have to be created in "
                      f"the host's /{top}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_file:
        target.touch()
    else:
        target.mkdir()
    return target


def build_root(spec: dict[str, object]) -> Path:
    root = Path(str(spec["root"]))
    _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    mount(None, Path("/"), None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID, "mode=755,size=16m")
    for host in sorted(Path("/").iterdir()):
        inside = root / host.name
        if host.name in PRIVATE_TOP:
            continue
        if host.is_symlink():
            inside.symlink_to(host.readlink())
        elif host.is_dir():
            inside.mkdir()
            mount(str(host), inside, None, MS_BIND | MS_REC)
        elif host.is_file():
            inside.touch()
            mount(str(host), inside, None, MS_BIND)
    for entry in ("proc", "sys"):
        (root / entry).mkdir()
        mount(f"/{entry}", root / entry, None, MS_BIND | MS_REC)
    (root / "run").mkdir()
    mount("tmpfs", root / "run", "tmpfs", MS_NOSUID, "mode=755,size=16m")
    (root / "tmp").mkdir()
    mount(str(spec["tmp"]), root / "tmp", None, MS_BIND)
    dev = root / "dev"
    dev.mkdir()
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
    mounts = spec["mounts"]
    assert isinstance(mounts, list)
    for m in sorted(mounts, key=lambda m: str(m["target"]).count("/")):
        target = _mount_point(root, str(m["target"]), bool(m.get("file")))
        mount(str(m["source"]), target, None, MS_BIND | MS_REC)
        if m.get("readOnly"):
            mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    return root


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    message = Path(str(spec["terminationSource"]))
    try:
        root = build_root(spec)
        os.chroot(root)
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
