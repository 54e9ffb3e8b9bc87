"""Projected volumes (the service account volume every pod gets by default): files written
into a per-pod folder from a TokenRequest, ConfigMaps and the pod's own fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from lightkube.models.authentication_v1 import BoundObjectReference, TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, ServiceAccountToken


class ProjectionError(Exception):
    """A projected source cannot be materialized."""


def _field(pod: dict[str, Any], path: str) -> str:
    meta = pod["metadata"]
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta[path.split(".")[1]])
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ProjectionError(f"downwardAPI field {path} is not supported by the local node")


def write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)


async def contents(client: AsyncClient, pod: dict[str, Any],
                   volume: dict[str, Any]) -> dict[str, str]:
    """The projected volume's files: path inside the volume -> content."""
    meta = pod["metadata"]
    files: dict[str, str] = {}
    for source in volume["projected"].get("sources") or []:
        if "serviceAccountToken" in source:
            sat = source["serviceAccountToken"]
            spec = TokenRequestSpec(
                audiences=[sat["audience"]] if sat.get("audience") else [],
                expirationSeconds=sat.get("expirationSeconds", 3607),
                boundObjectRef=BoundObjectReference(kind="Pod", apiVersion="v1",
                                                    name=meta["name"], uid=meta["uid"]))
            token = await client.create(ServiceAccountToken(metadata=ObjectMeta(), spec=spec),
                                        pod["spec"].get("serviceAccountName", "default"),
                                        namespace=meta["namespace"])
            if token.status is None or not token.status.token:
                raise ProjectionError("the token request returned no token")
            files[sat["path"]] = token.status.token
        elif "configMap" in source:
            ref = source["configMap"]
            cm = await client.get(ConfigMap, ref["name"], namespace=meta["namespace"])
            data = cm.data or {}
            for item in ref.get("items") or [{"key": k, "path": k} for k in data]:
                files[item["path"]] = data[item["key"]]
        elif "downwardAPI" in source:
            for item in source["downwardAPI"].get("items") or []:
                files[item["path"]] = _field(pod, item["fieldRef"]["fieldPath"])
        else:
            kind = next(iter(source), "unknown")
            raise ProjectionError(f"projected {kind} is not supported by the local node")
    return files
