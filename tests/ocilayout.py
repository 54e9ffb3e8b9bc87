"""Local image stores for tests: an OCI layout of its own (the node agent reads the one
$MODELSHIP_IMAGE_STORE names), holding some of `make images`' images (blobs hard-linked, no
copies) and images derived from them with another config, the way a Containerfile that only
sets ENTRYPOINT, CMD, ENV, WORKDIR or USER would make them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from modelship_dev import images, imagestore


def _link_blob(digest: str, store: Path) -> None:
    target = imagestore.blob_path(digest, store)
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    source = imagestore.blob_path(digest)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def new_store(store: Path, refs: list[str]) -> Path:
    """An OCI layout at `store` holding `refs` from the local image store."""
    store.mkdir(parents=True)
    (store / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    known = imagestore.index()
    for ref in refs:
        descriptor = known[ref]
        manifest = json.loads(imagestore.blob_path(descriptor["digest"]).read_text())
        for digest in [descriptor["digest"], manifest["config"]["digest"],
                       *(layer["digest"] for layer in manifest["layers"])]:
            _link_blob(digest, store)
    images.write_index(store, [known[ref] for ref in refs])
    return store


def derive(store: Path, ref: str, base: str, **config: Any) -> None:
    """Tag in `store` an image with `base`'s layers and its config changed by `config`
    (Entrypoint, Cmd, Env, WorkingDir, User: the OCI config's own keys)."""
    descriptor = imagestore.index(store)[base]
    manifest = json.loads(imagestore.blob_path(descriptor["digest"], store).read_text())
    image_config = json.loads(imagestore.blob_path(manifest["config"]["digest"], store)
                              .read_text())
    image_config["config"] = {**image_config.get("config", {}), **config}
    manifest["config"] = {**manifest["config"], **images.write_blob(
        store, json.dumps(image_config).encode())}
    entry = {"mediaType": imagestore.MANIFEST_MEDIA_TYPE,
             **images.write_blob(store, json.dumps(manifest).encode()),
             "annotations": {imagestore.REF_ANNOTATION: ref}}
    others = [d for r, d in imagestore.index(store).items() if r != ref]
    images.write_index(store, [*others, entry])
