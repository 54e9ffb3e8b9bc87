"""The local image store: the images `make images` builds, read without a daemon.

The store is one OCI image layout (https://github.com/opencontainers/image-spec/blob/main/
image-layout.md) at `store_dir()`, ~/.cache/modelship/images/oci by default:

    oci-layout                  {"imageLayoutVersion": "1.0.0"}
    index.json                  one manifest per image; its annotation
                                org.opencontainers.image.ref.name is the full reference,
                                e.g. localhost/modelship/operator:0.1.0
    blobs/sha256/<hex>          manifests, image configs and layers (gzip-compressed tar)

`resolve(ref)` gives what a kubelet needs to start a container from an image: the config
(Entrypoint, Cmd, Env, WorkingDir, User) and the layers in order, bottom first. Whoever
unpacks the layers applies OCI whiteouts (`.wh.<name>` deletes <name>, `.wh..wh..opq` empties
its folder). docs/images.md describes the store. Standard library only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelship_dev.tools import cache_root

REF_ANNOTATION = "org.opencontainers.image.ref.name"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"


STORE_ENV = "MODELSHIP_IMAGE_STORE"


def store_dir() -> Path:
    """The OCI layout `make images` exports to ($MODELSHIP_CACHE/images/oci), or the one
    $MODELSHIP_IMAGE_STORE names (a node agent reading another store, in tests)."""
    override = os.environ.get(STORE_ENV)
    return Path(override) if override else cache_root() / "images" / "oci"


@dataclass(frozen=True)
class Layer:
    digest: str  # sha256:<hex>
    media_type: str  # ...layer.v1.tar or ...layer.v1.tar+gzip
    size: int
    path: Path  # the blob in the store


@dataclass(frozen=True)
class Image:
    ref: str
    manifest_digest: str
    config_digest: str  # equals the image ID buildah reports (sha256:<hex>)
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]  # KEY=VALUE, in the image's order
    working_dir: str
    user: str  # "uid", "uid:gid", or names; empty means root
    labels: dict[str, str] = field(default_factory=dict)
    layers: tuple[Layer, ...] = ()

    @property
    def environment(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.env if "=" in e)


def blob_path(digest: str, store: Path | None = None) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    return (store or store_dir()) / "blobs" / algorithm / hexdigest


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def index(store: Path | None = None) -> dict[str, dict[str, Any]]:
    """Reference name -> manifest descriptor, for every image in the store."""
    path = (store or store_dir()) / "index.json"
    if not path.exists():
        return {}
    descriptors = _read_json(path).get("manifests", [])
    return {d["annotations"][REF_ANNOTATION]: d for d in descriptors
            if REF_ANNOTATION in d.get("annotations", {})}


def resolve(ref: str, store: Path | None = None) -> Image:
    """The config and layers of `ref` (e.g. localhost/modelship/operator:0.1.0)."""
    store = store or store_dir()
    refs = index(store)
    if ref not in refs:
        known = ", ".join(sorted(refs)) or "none"
        raise LookupError(f"image {ref} is not in the local store {store} (it has: {known}); "
                          "make images builds and exports modelship's images")
    manifest_digest = refs[ref]["digest"]
    manifest = _read_json(blob_path(manifest_digest, store))
    if manifest.get("mediaType") == INDEX_MEDIA_TYPE or "manifests" in manifest:
        raise ValueError(f"{ref} is a multi-platform index; the local store holds single images")
    config_digest = manifest["config"]["digest"]
    config = _read_json(blob_path(config_digest, store)).get("config", {})
    layers = tuple(Layer(d["digest"], d["mediaType"], d["size"], blob_path(d["digest"], store))
                   for d in manifest["layers"])
    return Image(
        ref=ref,
        manifest_digest=manifest_digest,
        config_digest=config_digest,
        entrypoint=tuple(config.get("Entrypoint") or ()),
        cmd=tuple(config.get("Cmd") or ()),
        env=tuple(config.get("Env") or ()),
        working_dir=config.get("WorkingDir") or "/",
        user=config.get("User") or "",
        labels=dict(config.get("Labels") or {}),
        layers=layers,
    )


def referenced_blobs(store: Path | None = None) -> set[str]:
    """Digests of every blob some image in the store needs (its manifest, config, layers)."""
    store = store or store_dir()
    needed: set[str] = set()
    for descriptor in index(store).values():
        needed.add(descriptor["digest"])
        manifest = _read_json(blob_path(descriptor["digest"], store))
        needed.add(manifest["config"]["digest"])
        needed.update(layer["digest"] for layer in manifest["layers"])
    return needed
