"""A pass the Kubernetes API refused, reported on the resource: condition ReconcileError
with the API server's message and a Warning event, once per distinct error. A missing RBAC
verb thus reads on `kubectl describe` (which verb, which resource, which account) instead of
stalling the resource silently; the next pass that completes removes the condition."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from lightkube import ApiError

from modelship import constants
from modelship.adapters.kube import Kube, StatusConflictError
from modelship.core.api_errors import refused
from modelship.core.conditions import get_condition, set_condition
from modelship_api.modeldeployment import ModelDeploymentStatus
from modelship_api.trainingrun import TrainingRunStatus

log = logging.getLogger(__name__)
_STATUS: dict[str, type[ModelDeploymentStatus] | type[TrainingRunStatus]] = {
    constants.MODEL_DEPLOYMENT_KIND: ModelDeploymentStatus,
    constants.TRAINING_RUN_KIND: TrainingRunStatus,
}
# The last error posted as an event per resource, for when its status cannot be written
# either (the refused request was the status write, or the resource changed meanwhile).
_posted: dict[tuple[str, str, str], str] = {}


def forget(kind: str, namespace: str, name: str) -> None:
    _posted.pop((kind, namespace, name), None)


async def report(kube: Kube, kind: str, namespace: str, name: str, err: ApiError) -> None:
    body = await kube.get(constants.API_VERSION, kind, name, namespace)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    meta = body["metadata"]
    condition = refused(err.status.code or 0, err.status.reason or "",
                        err.status.message or str(err), meta.get("generation"))
    old = _STATUS[kind].model_validate(body.get("status") or {})
    new = old.model_copy(deep=True)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    new.conditions = set_condition(new.conditions, condition, now)
    key = (kind, namespace, name)
    try:
        await kube.patch_status(constants.API_VERSION, kind, name, namespace, old.to_api(),
                                new.to_api(), body)
    except (ApiError, StatusConflictError) as status_err:
        log.warning("%s %s/%s: cannot record the error in status either: %s", kind,
                    namespace, name, status_err)
    else:
        before = get_condition(old.conditions, condition.type)
        if before is not None and before.message == condition.message:
            _posted[key] = condition.message  # posted before (by this or an earlier process)
    if _posted.get(key) != condition.message:
        _posted[key] = condition.message
        await kube.event(body, "Warning", condition.reason, condition.message)
