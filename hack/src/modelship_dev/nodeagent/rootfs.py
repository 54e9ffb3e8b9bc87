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
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from modelship_dev.imagestore import Image, Layer
from modelship_dev.tools import cache_root

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20
# A layer unpacked this recently is kept even when no image names it: a node agent may have
# resolved an image that `make images` replaced, and not mounted its layers yet.
GC_GRACE_S = 600
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


def mounted_layers(proc: Path = Path("/proc")) -> set[str]:
    """Names (digest hex) of the layers some overlay on this machine has as a lower layer,
    in any mount namespace: launch.py mounts them relative to the layer cache, so mountinfo
    shows `lowerdir=<hex>:<hex>...`."""
    names: set[str] = set()
    seen: set[int] = set()
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            namespace = (pid / "ns" / "mnt").stat().st_ino
            if namespace in seen:
                continue
            text = (pid / "mountinfo").read_text()
        except OSError:  # gone, or not ours to read
            continue
        seen.add(namespace)
        for line in text.splitlines():
            _, _, after = line.partition(" - ")
            fields = after.split(" ")
            if len(fields) < 3 or fields[0] != "overlay":
                continue
            for option in fields[2].split(","):
                if option.startswith("lowerdir="):
                    names.update(Path(p).name for p in option[len("lowerdir="):].split(":"))
    return names


def collect_garbage(referenced: Iterable[str], in_use: set[str] | None = None,
                    now: float | None = None) -> list[str]:
    """Remove unpacked layers that no image of the store names (`referenced`: digests), no
    container has mounted and nothing unpacked in the last GC_GRACE_S; the folders removed.
    Each superseded image would otherwise leave its layers here for good."""
    root = layers_dir()
    if not root.is_dir():
        return []
    keep = {d.partition(":")[2] for d in referenced}
    mounted = mounted_layers() if in_use is None else in_use
    now = time.time() if now is None else now
    removed = []
    for entry in sorted(root.iterdir()):
        name = entry.name.removesuffix(".partial")
        if entry.name.startswith(".") or name in keep or name in mounted:
            continue
        with _locked(f"sha256:{name}"):  # not while a node agent unpacks it
            try:
                if now - entry.stat().st_mtime < GC_GRACE_S:
                    continue
            except FileNotFoundError:
                continue
            shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    return removed
