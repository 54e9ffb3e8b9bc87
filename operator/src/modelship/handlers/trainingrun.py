"""Kopf handlers for TrainingRun: the run, its Job and its pods all lead to one reconcile."""

from __future__ import annotations

from typing import Any

import kopf

from modelship import constants
from modelship.adapters import metrics
from modelship.handlers import runtime
from modelship.handlers.tr_reconcile import reconcile

# Kopf's label filter type is private; a plain annotation keeps mypy and Kopf both content.
_LABELS: dict[str, Any] = {constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
                           constants.LABEL_TRAINING_RUN: kopf.PRESENT}


@kopf.on.resume(constants.GROUP, constants.VERSION, constants.TRAINING_RUN_PLURAL)
@kopf.on.create(constants.GROUP, constants.VERSION, constants.TRAINING_RUN_PLURAL)
@kopf.timer(constants.GROUP, constants.VERSION, constants.TRAINING_RUN_PLURAL,
            interval=runtime.RESYNC_SECONDS, initial_delay=runtime.RESYNC_SECONDS)
async def on_training_run(name: str, namespace: str | None, **_: Any) -> None:
    assert namespace is not None  # TrainingRuns are namespaced
    await reconcile(runtime.kube(), namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels=_LABELS)
@kopf.on.event("", "v1", "pods", labels=_LABELS)
async def on_training_child(body: kopf.Body, **_: Any) -> None:
    """The Job or its pod moved (scheduled, started, finished): update the run now."""
    meta = body["metadata"]
    await reconcile(runtime.kube(), meta["namespace"],
                    meta["labels"][constants.LABEL_TRAINING_RUN])


@kopf.on.event(constants.GROUP, constants.VERSION, constants.TRAINING_RUN_PLURAL)
async def on_training_run_event(name: str, namespace: str | None, type: str | None,
                                **_: Any) -> None:
    """Deleted: its series leave /metrics at once (a pass that finds it gone does the same)."""
    if namespace is not None and type == "DELETED":
        metrics.forget_training_run(namespace, name)
