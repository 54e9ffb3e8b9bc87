"""make images' export into the local OCI store: an image whose blobs are gone is forgotten
(and so exported again), never a crash of every later build."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from modelship_dev import images, imagestore


def test_images_whose_blobs_are_gone_are_forgotten_and_exported_again(tmp_path: Path) -> None:
    store = tmp_path / "oci"

    def image(ref: str, layer: bytes) -> dict[str, Any]:
        config = images.write_blob(store, json.dumps({"config": {"Cmd": ["x"]}, "rootfs": {
            "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]}}).encode())
        manifest = {"schemaVersion": 2, "mediaType": imagestore.MANIFEST_MEDIA_TYPE,
                    "config": {"mediaType": imagestore.CONFIG_MEDIA_TYPE, **config},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                **images.write_blob(store, layer)}]}
        return {"mediaType": imagestore.MANIFEST_MEDIA_TYPE,
                **images.write_blob(store, json.dumps(manifest).encode()),
                "annotations": {imagestore.REF_ANNOTATION: ref}}

    whole, broken = image("localhost/a:1", b"a"), image("localhost/b:1", b"b")
    images.write_index(store, [whole, broken])
    manifest = json.loads(imagestore.blob_path(broken["digest"], store).read_text())
    imagestore.blob_path(manifest["layers"][0]["digest"], store).unlink()
    images.drop_dangling(store)
    assert list(imagestore.index(store)) == ["localhost/a:1"]
    imagestore.blob_path(whole["digest"], store).unlink()
    images.drop_dangling(store)
    assert imagestore.index(store) == {}
