"""Manual rollout controls and the status view, for the CLI: they write an annotation, never
the spec, so a GitOps sync cannot undo them."""

from __future__ import annotations

from datetime import UTC, datetime

from lightkube.types import PatchType

from modelship import constants
from modelship.adapters.kube import Kube, ModelDeploymentRes
from modelship.core import status_view
from modelship_api.modeldeployment import ModelDeployment


async def send(namespace: str, name: str, action: str) -> str:
    """Annotate the resource with `<action>@<now>`; the operator acts on it once."""
    value = f"{action}@{datetime.now(UTC).isoformat(timespec='milliseconds')}"
    kube = Kube()
    try:
        await kube.client.patch(
            ModelDeploymentRes, name,
            {"metadata": {"annotations": {constants.ANNOTATION_COMMAND: value}}},
            namespace=namespace, patch_type=PatchType.MERGE)
    finally:
        await kube.close()
    return value


async def describe(namespace: str, name: str) -> str:
    kube = Kube()
    try:
        body = await kube.get(constants.API_VERSION, constants.MODEL_DEPLOYMENT_KIND, name,
                              namespace)
    finally:
        await kube.close()
    if body is None:
        raise SystemExit(f"modeldeployment {namespace}/{name} not found")
    return status_view.render(ModelDeployment.model_validate(body))
