"""Build modelship's images from their Containerfiles without a daemon, and export them to
the local image store the node agent reads (`make images`; docs/images.md).

1. The base: mmdebstrap makes a Debian bookworm root filesystem with Python 3.11, imported
   as localhost/modelship/base:bookworm; it is made again only when the mmdebstrap command
   changes (its digest names the cached tarball and labels the image).
2. Each image: `buildah bud --isolation chroot`, tagged localhost/modelship/<name>:<version>
   (the version of its pyproject). An image whose input digest (Containerfile, .dockerignore,
   build arguments, base image, every file the Containerfile copies) matches the
   `modelship.input-digest` label of the existing tag is not built again. pip's downloads
   land in a wheelhouse (~/.cache/modelship/wheels) mounted into every build.
3. Every image is exported to the OCI layout of `imagestore.store_dir()`.

buildah keeps its own storage under ~/.cache/modelship/images/storage, so everything lives
under one folder; `buildah_command()` gives the buildah command line that sees it.
Standard library only.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelship_dev import imagestore
from modelship_dev.nodeagent import rootfs
from modelship_dev.tools import cache_root

REPO = Path(__file__).resolve().parents[3]
PREFIX = "localhost/modelship"
BASE_REF = f"{PREFIX}/base:bookworm"
DIGEST_LABEL = "modelship.input-digest"
# The trainer's 5.9 GB of layers: pushed in 41 s at level 1, 80-95 s at buildah's default.
PUSH_GZIP_LEVEL = 1
# Where the wheelhouse appears in builds (the Containerfiles' WHEELHOUSE; not their cache
# mount, which buildah keeps in /var/tmp), and the host's CA bundle (pip is told to use the
# base's bundle; the host's replaces it during the build, for TLS-inspecting proxies).
WHEELHOUSE_MOUNT = "/var/cache/modelship-wheelhouse"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# libstdc++6: onnxruntime, torch and tritonserver link it; libpython3.11: Triton's Python
# backend stub embeds it. The merged-/usr hook stands in for the usrmerge package (which
# pulls in perl); docs, man pages and translations are left out (about 45 MB).
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "libstdc++6", "libpython3.11")
BASE_COMMAND = (
    "mmdebstrap", "--quiet", "--variant=essential", "--include=" + ",".join(BASE_PACKAGES),
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "info", "locale")),
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "bookworm",
)
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")


@dataclass(frozen=True)
class ImageSpec:
    name: str
    containerfile: str  # relative to the repository root, the build context
    project: str  # the pyproject.toml whose version tags the image

    @property
    def ref(self) -> str:
        return f"{PREFIX}/{self.name}:{project_version(REPO / self.project)}"


IMAGES = (
    ImageSpec("operator", "operator/Containerfile", "pyproject.toml"),
    ImageSpec("trainer", "trainer/Containerfile", "trainer/pyproject.toml"),
    ImageSpec("triton", "hack/images/triton/Containerfile", "hack/pyproject.toml"),
)


def ref(name: str) -> str:
    """The reference of one of modelship's images (operator, trainer, triton)."""
    return next(spec.ref for spec in IMAGES if spec.name == name)


@dataclass(frozen=True)
class Result:
    name: str
    ref: str
    status: str  # "built" or "cached"
    seconds: float
    size_bytes: int
    image_id: str
    input_digest: str


def images_dir() -> Path:
    return cache_root() / "images"


def wheelhouse() -> Path:
    return cache_root() / "wheels"


def buildah_command() -> list[str]:
    """buildah on modelship's own storage (images_dir()/storage)."""
    runtime = Path(os.environ.get("XDG_RUNTIME_DIR") or "/run")
    return ["buildah", "--root", str(images_dir() / "storage"),
            "--runroot", str(runtime / "modelship" / "buildah")]


def buildah(*args: str) -> str:
    proc = subprocess.run([*buildah_command(), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args)} failed:\n{proc.stderr.strip()}")
    return proc.stdout.strip()


def inspect(ref: str) -> dict[str, Any] | None:
    """buildah's view of a local image, or None when there is none by that name."""
    proc = subprocess.run([*buildah_command(), "inspect", "--type", "image", ref],
                          capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def labels_of(info: dict[str, Any]) -> dict[str, str]:
    return dict(info["OCIv1"].get("config", {}).get("Labels") or {})


def image_size(info: dict[str, Any]) -> int:
    """Bytes of the image's layers as uncompressed tarballs (what its manifest lists)."""
    manifest = json.loads(str(info["Manifest"]))
    return sum(int(layer["size"]) for layer in manifest["layers"])


def project_version(pyproject: Path) -> str:
    return str(tomllib.loads(pyproject.read_text())["project"]["version"])


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout


def copied_sources(containerfile: str) -> list[str]:
    """Context paths the COPY and ADD instructions read (not those copying from a stage)."""
    sources: list[str] = []
    for line in re.sub(r"\\\n", " ", containerfile).splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        if "[" in line:
            raise ValueError(f"COPY/ADD in JSON form is not supported here: {line}")
        args = words[1:]
        if any(a.startswith("--from") for a in args):
            continue
        sources += [a for a in args if not a.startswith("--")][:-1]
    return sources


def context_files(sources: Sequence[str]) -> list[str]:
    """Tracked and untracked (not ignored) files under `sources`: what the build copies."""
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                 *sources)
    return sorted({f for f in listed.split("\0") if f and (REPO / f).exists()})


def input_digest(spec: ImageSpec, build_args: dict[str, str], base_id: str) -> str:
    text = (REPO / spec.containerfile).read_text()
    entries: list[tuple[str, str]] = [
        ("containerfile", hashlib.sha256(text.encode()).hexdigest()),
        ("ignore", hashlib.sha256((REPO / ".dockerignore").read_bytes()).hexdigest()),
        ("base-id", base_id),
        *((f"arg:{k}", v) for k, v in sorted(build_args.items())),
    ]
    for name in context_files(copied_sources(text)):
        path = REPO / name
        if path.is_symlink():
            entries.append((f"link:{name}", str(path.readlink())))
        else:
            mode = "x" if os.access(path, os.X_OK) else "-"
            entries.append((f"file:{name}:{mode}", hashlib.sha256(path.read_bytes()).hexdigest()))
    return "sha256:" + hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"make images needs {', '.join(missing)}: apt-get install -y "
                         f"{' '.join(missing)} (hack/setup.sh installs them when run as root)")


def run_logged(cmd: Sequence[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}); log {log}:\n{tail}")


def result(name: str, ref: str, status: str, start: float, digest: str) -> Result:
    info = inspect(ref)
    if info is None:
        raise RuntimeError(f"{ref} is not in the local storage after its build")
    return Result(name, ref, status, time.monotonic() - start, image_size(info),
                  str(info["FromImageID"]), digest)


def ensure_base() -> Result:
    start = time.monotonic()
    digest = "sha256:" + hashlib.sha256(json.dumps(BASE_COMMAND).encode()).hexdigest()
    info = inspect(BASE_REF)
    if info is not None and labels_of(info).get(DIGEST_LABEL) == digest:
        return result("base", BASE_REF, "cached", start, digest)
    tarball = images_dir() / "base" / f"{digest.removeprefix('sha256:')[:16]}.tar"
    if not tarball.exists():
        require("mmdebstrap")
        shutil.rmtree(tarball.parent, ignore_errors=True)  # older bases, unfinished ones
        partial = tarball.parent / "partial" / tarball.name  # mmdebstrap wants the .tar suffix
        partial.parent.mkdir(parents=True)
        run_logged([*BASE_COMMAND, str(partial)], images_dir() / "logs" / "base.log")
        partial.rename(tarball)
    container = buildah("from", "scratch")
    try:
        buildah("add", "--quiet", container, str(tarball), "/")
        buildah("config", *(a for e in BASE_ENV for a in ("--env", e)), "--cmd", "/bin/sh",
                "--label", f"{DIGEST_LABEL}={digest}",
                "--label", "org.opencontainers.image.title=modelship-base",
                "--label", "org.opencontainers.image.description=Debian bookworm, Python 3.11 "
                           "(mmdebstrap --variant=essential)",
                container)
        buildah("commit", "--quiet", container, BASE_REF)
    finally:
        subprocess.run([*buildah_command(), "rm", container], capture_output=True)
    return result("base", BASE_REF, "built", start, digest)


def build(spec: ImageSpec, base: Result, revision: str) -> Result:
    start = time.monotonic()
    ref = spec.ref
    build_args = {"BASE": base.ref, "VERSION": ref.rsplit(":", 1)[1], "REVISION": revision,
                  "WHEELHOUSE": WHEELHOUSE_MOUNT}
    digest = input_digest(spec, build_args, base.image_id)
    info = inspect(ref)
    if info is not None and labels_of(info).get(DIGEST_LABEL) == digest:
        return result(spec.name, ref, "cached", start, digest)
    wheelhouse().mkdir(parents=True, exist_ok=True)
    created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    cmd = [*buildah_command(), "bud", "--isolation", "chroot", "--layers", "--pull=never",
           "--file", spec.containerfile, "--tag", ref, "--label", f"{DIGEST_LABEL}={digest}",
           *(a for k, v in {**build_args, "CREATED": created}.items()
             for a in ("--build-arg", f"{k}={v}")),
           "--volume", f"{wheelhouse()}:{WHEELHOUSE_MOUNT}"]
    if Path(CA_BUNDLE).is_file():
        cmd += ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    run_logged([*cmd, "."], images_dir() / "logs" / f"{spec.name}.log")
    return result(spec.name, ref, "built", start, digest)


def export(result: Result) -> str:
    """Put the image into the OCI layout: "present" (nothing to do), "relabelled" (its layers
    were in the store already, as after a commit that only changes the revision label) or
    "pushed"."""
    store = imagestore.store_dir()
    drop_dangling(store)
    try:
        if imagestore.resolve(result.ref, store).config_digest == f"sha256:{result.image_id}":
            return "present"
    except LookupError:
        pass
    store.mkdir(parents=True, exist_ok=True)
    info = inspect(result.ref)
    assert info is not None, result.ref
    if write_with_stored_layers(result.ref, info, store):
        status = "relabelled"
    else:
        # buildah's oci: destination gzips every layer again, even one the store holds
        # (--disable-compression does not apply to it); at gzip's fastest level.
        buildah("push", "--quiet", "--format", "oci", "--compression-format", "gzip",
                "--compression-level", str(PUSH_GZIP_LEVEL), result.ref,
                f"oci:{store}:{result.ref}")
        status = "pushed"
    collect_garbage(store)
    return status


def write_blob(store: Path, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = imagestore.blob_path(digest, store)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        partial.replace(path)
    return {"digest": digest, "size": len(data)}


def write_index(store: Path, manifests: list[dict[str, Any]]) -> None:
    path = store / "index.json"
    partial = path.with_name(".index.json.partial")
    partial.write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    partial.replace(path)


def write_with_stored_layers(ref: str, info: dict[str, Any], store: Path) -> bool:
    """Write the image's config and manifest by hand when every one of its layers is in the
    store already (found by uncompressed digest through the stored images' configs)."""
    config = str(info["Config"])  # the exact bytes: their digest is the image ID
    stored: dict[str, dict[str, Any]] = {}
    for descriptor in imagestore.index(store).values():
        manifest = json.loads(imagestore.blob_path(descriptor["digest"], store).read_text())
        diff_ids = json.loads(imagestore.blob_path(manifest["config"]["digest"], store)
                              .read_text())["rootfs"]["diff_ids"]
        stored.update(zip(diff_ids, manifest["layers"], strict=True))
    wanted = json.loads(config)["rootfs"]["diff_ids"]
    if not all(d in stored for d in wanted):
        return False
    manifest = {
        "schemaVersion": 2,
        "mediaType": imagestore.MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": imagestore.CONFIG_MEDIA_TYPE,
                   **write_blob(store, config.encode())},
        "layers": [stored[d] for d in wanted],
    }
    descriptor = {"mediaType": imagestore.MANIFEST_MEDIA_TYPE,
                  **write_blob(store, json.dumps(manifest).encode()),
                  "annotations": {imagestore.REF_ANNOTATION: ref}}
    others = [d for r, d in imagestore.index(store).items() if r != ref]
    write_index(store, [*others, descriptor])
    return True


def drop_dangling(store: Path) -> None:
    """Forget images whose manifest, config or layers are missing (a run killed between
    writing index.json and its blobs, or blobs deleted by hand): they are exported again."""
    kept = []
    for descriptor in imagestore.index(store).values():
        try:
            manifest = json.loads(imagestore.blob_path(descriptor["digest"], store).read_text())
            digests = [manifest["config"]["digest"], *(d["digest"] for d in manifest["layers"])]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if all(imagestore.blob_path(d, store).is_file() for d in digests):
            kept.append(descriptor)
    if len(kept) != len(imagestore.index(store)):
        write_index(store, kept)


def collect_garbage(store: Path) -> None:
    """Keep only named images in index.json (buildah leaves the one it renamed, unnamed) and
    only the blobs they need."""
    write_index(store, list(imagestore.index(store).values()))
    needed = imagestore.referenced_blobs(store)
    for blob in (store / "blobs" / "sha256").iterdir():
        if f"sha256:{blob.name}" not in needed:
            blob.unlink()


def collect_garbage_outside_store(results: Sequence[Result],
                                  log: Callable[[str], None]) -> None:
    """A rebuilt image leaves its predecessor in buildah's storage, untagged, and its
    predecessor's layers unpacked for the node agent: without this, every change to an
    image's inputs grows ~/.cache for good (the trainer's by up to 6 GB)."""
    if any(r.status == "built" for r in results):
        # Dangling images only: the intermediate images `bud --layers` reuses have children.
        buildah("rmi", "--prune")
    removed = rootfs.collect_garbage(imagestore.referenced_blobs(imagestore.store_dir()))
    if removed:
        log(f"removed {len(removed)} unpacked layers no stored image names")


@contextmanager
def locked() -> Iterator[None]:
    images_dir().mkdir(parents=True, exist_ok=True)
    with (images_dir() / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def disk_usage(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out else 0


def build_all(names: Sequence[str] = (), log: Callable[[str], None] = print) -> list[Result]:
    """Build (or find cached) the base and the named images (all by default), export them."""
    unknown = set(names) - {s.name for s in IMAGES}
    if unknown:
        raise SystemExit(f"unknown images {sorted(unknown)}; known: {[s.name for s in IMAGES]}")
    require("buildah")
    revision = git("rev-parse", "HEAD").strip()
    results = []
    with locked():
        # A build that failed (a full disk, say) leaves its working container behind, the
        # size of its unfinished layer; under the lock no build is running, so none is live.
        buildah("rm", "--all")
        base = ensure_base()
        log(line(base))
        for spec in IMAGES:
            if names and spec.name not in names:
                continue
            result = build(spec, base, revision)
            start = time.monotonic()
            exported = export(result)
            note = "" if exported == "present" else (
                f"; {exported} in the store in {time.monotonic() - start:.1f} s")
            log(line(result) + note)
            results.append(result)
        collect_garbage_outside_store(results, log)
    log(f"store: {imagestore.store_dir()} ({disk_usage(imagestore.store_dir()) / 1e6:.0f} MB); "
        f"{images_dir()}: {disk_usage(images_dir()) / 1e6:.0f} MB; "
        f"wheelhouse {wheelhouse()}: {disk_usage(wheelhouse()) / 1e6:.0f} MB")
    return results


def line(r: Result) -> str:
    return (f"{r.name:<9} {r.status:<7} {r.seconds:7.1f} s {r.size_bytes / 1e6:8.0f} MB  "
            f"{r.ref}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelship_dev.images",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"images ({', '.join(s.name for s in IMAGES)})")
    args = parser.parse_args(argv)
    try:
        build_all(args.names)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
