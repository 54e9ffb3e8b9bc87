"""The Triton model repository: version numbering, the production model, atomic publish.

A version appears complete or not at all: its files are written into a staging directory
inside `<repo>/<model>/` (same filesystem) whose name starts with '.', so neither Triton
(which loads only numeric folders) nor version numbering ever sees it, and then renamed to
`<repo>/<model>/<version>/` with RENAME_NOREPLACE. When two runs pick the same number, the
second rename fails and that run takes the next number; nothing is ever overwritten.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelship_trainer.errors import PublishError, TrainerError

STAGING_PREFIX = ".staging-"
# A staging dir this old belongs to a killed run (a live publish takes seconds).
STALE_AFTER_S = 3600.0
_VERSION = re.compile(r"^[1-9][0-9]*$")  # Triton ignores names starting with 0
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


@dataclass(frozen=True)
class Published:
    version: int
    path: Path


def published_versions(model_dir: Path) -> list[int]:
    """Every numeric entry, in order; empty or partial ones still hold their number."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if _VERSION.match(p.name))


def production_model(model_dir: Path, pinned: int | None) -> tuple[int, Path] | None:
    """(version, model.onnx) of the pinned version, else of the newest; None when none."""
    if pinned is None:
        versions = published_versions(model_dir)
        if not versions:
            return None
        pinned = versions[-1]
    path = model_dir / str(pinned) / "model.onnx"
    if not path.is_file():
        raise TrainerError(f"production version {pinned} of {model_dir.name} has no model.onnx "
                           f"in {model_dir}", "ProductionVersionNotFound")
    return pinned, path


def publish(repo: Path, model: str, fill: Callable[[Path], None],
            model_config: str | None = None) -> Published:
    """Write a version with `fill(staging_dir)` and make it visible under the next number.

    `model_config` is written to `<model>/config.pbtxt` only when that file is absent (plain
    Triton reads only that one; it is never rewritten so served versions keep their config).
    """
    model_dir = repo / model
    model_dir.mkdir(parents=True, exist_ok=True)
    sweep_stale(model_dir)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
    try:
        staging.chmod(0o755)  # mkdtemp makes it 0700; Triton may run as another user
        fill(staging)
        _fsync_tree(staging)
        if model_config is not None:
            write_if_absent(model_dir / "config.pbtxt", model_config)
        for _ in range(1000):
            version = max(published_versions(model_dir), default=0) + 1
            target = model_dir / str(version)
            try:
                rename_noreplace(staging, target)
            except FileExistsError:
                continue  # another run took this number first
            _fsync_dir(model_dir)
            return Published(version, target)
        raise PublishError(f"could not claim a version number in {model_dir}")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def sweep_stale(model_dir: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove staging dirs left by killed runs; returns what was removed."""
    now = time.time()
    removed = []
    for p in model_dir.glob(STAGING_PREFIX + "*"):
        try:
            if now - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
        except FileNotFoundError:
            continue
    return removed


def write_if_absent(path: Path, text: str) -> bool:
    """Create `path` atomically unless it exists (link() refuses to replace)."""
    if path.exists():
        return False
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).chmod(0o644)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        Path(tmp).unlink()


_libc = ctypes.CDLL(None, use_errno=True)


def rename_noreplace(src: Path, dst: Path) -> None:
    """rename(2) that fails with FileExistsError instead of replacing `dst`."""
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is not None:
        rc = renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst),
                       _RENAME_NOREPLACE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), str(dst))
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), str(dst))
    # Filesystems without RENAME_NOREPLACE (some NFS): rename() still refuses a non-empty
    # target, and numbering counts empty numeric dirs, so only a foreign empty dir is at risk.
    if dst.exists():
        raise FileExistsError(errno.EEXIST, "exists", str(dst))
    try:
        src.rename(dst)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(exc.errno, exc.strerror, str(dst)) from exc
        raise


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
