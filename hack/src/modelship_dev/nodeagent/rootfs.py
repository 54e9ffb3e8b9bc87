"""Image layers unpacked once per node, as overlayfs lower layers.

Each layer of the local image store is unpacked into `layers_dir()/<hex of its digest>`
(~/.cache/modelship/images/layers), checked against its digest while it streams into `tar`,
and shared by every image and container that uses it. OCI whiteouts become overlayfs ones:
`.wh.<name>` turns into a 0/0 character device `<name>`, `.wh..wh..opq` into the
`trusted.overlay.opaque` attribute of its folder. A container's root is then an overlay of
its image's layers with a writable layer of its own (launch.py mounts it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from modelship_dev.imagestore import Image, Layer
from modelship_dev.tools import cache_root

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20
TAR_FLAGS = {"application/vnd.oci.image.layer.v1.tar": [],
             "application/vnd.oci.image.layer.v1.tar+gzip": ["-z"],
             "application/vnd.oci.image.layer.v1.tar+zstd": ["--zstd"],
             "application/vnd.docker.image.rootfs.diff.tar.gzip": ["-z"]}


class UnpackError(Exception):
    """A layer cannot be unpacked (corrupt, unknown media type, no space)."""


def layers_dir() -> Path:
    return cache_root() / "images" / "layers"


def layer_path(digest: str) -> Path:
    return layers_dir() / digest.partition(":")[2]


@contextlib.contextmanager
def _locked(digest: str) -> Iterator[None]:
    """One unpacker per layer on this machine (agents of several clusters share the cache)."""
    lock_dir = layers_dir() / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / digest.partition(":")[2]).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _convert_whiteouts(root: Path) -> None:
    """OCI whiteouts to overlayfs whiteouts (needs root: mknod, trusted.* attributes)."""
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.startswith(WHITEOUT):
                continue
            entry = Path(folder) / name
            entry.unlink()
            if name == OPAQUE:
                os.setxattr(folder, "trusted.overlay.opaque", b"y")
            else:
                os.mknod(Path(folder) / name[len(WHITEOUT):], stat.S_IFCHR | 0o600,
                         os.makedev(0, 0))


def _extract(layer: Layer, into: Path) -> None:
    if layer.media_type not in TAR_FLAGS:
        raise UnpackError(f"layer {layer.digest}: unsupported media type {layer.media_type}")
    algorithm, _, expected = layer.digest.partition(":")
    digest = hashlib.new(algorithm)
    tar = subprocess.Popen(["tar", "-x", *TAR_FLAGS[layer.media_type], "--numeric-owner",
                            "--same-owner", "--same-permissions", "--xattrs",
                            "--xattrs-include=*", "-f", "-", "-C", str(into)],
                           stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert tar.stdin is not None and tar.stderr is not None
    try:
        with layer.path.open("rb") as blob:
            while chunk := blob.read(CHUNK):
                digest.update(chunk)
                tar.stdin.write(chunk)
        tar.stdin.close()
    except BrokenPipeError:
        pass
    errors = tar.stderr.read().decode(errors="replace").strip()
    if tar.wait() != 0:
        raise UnpackError(f"layer {layer.digest}: tar failed: {errors[-500:]}")
    if digest.hexdigest() != expected:
        raise UnpackError(f"layer {layer.digest}: the blob's digest is "
                          f"{algorithm}:{digest.hexdigest()} (corrupt store)")


def unpack(layer: Layer) -> Path:
    """The unpacked layer, unpacked now unless an earlier container did it already."""
    target = layer_path(layer.digest)
    if target.is_dir():
        return target
    with _locked(layer.digest):
        if target.is_dir():
            return target
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            _extract(layer, partial)
            _convert_whiteouts(partial)
        except OSError as err:
            shutil.rmtree(partial, ignore_errors=True)
            raise UnpackError(f"layer {layer.digest}: {err}") from err
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        partial.rename(target)
    return target


def unpack_image(image: Image) -> list[Path]:
    """Every layer of `image` unpacked; overlayfs' lowerdir order (top layer first)."""
    return [unpack(layer) for layer in reversed(image.layers)]


def find_file(lowers: list[Path], path: str) -> Path | None:
    """`path` as the image's root shows it (top layer first, whiteouts hide), or None."""
    relative = path.lstrip("/")
    for lower in lowers:
        candidate = lower / relative
        try:
            info = candidate.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
            return None  # deleted by this layer
        return candidate
    return None
