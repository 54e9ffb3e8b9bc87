"""Kopf handlers for ModelDeployment.

One daemon per resource runs `reconcile` in a loop and sleeps exactly until time alone could
change the decision (the next analysis run, the end of a pause), capped by the resync
period. Any change of the resource or of its Triton Deployments wakes it at once. The loop
keeps nothing that matters in memory: its wake-up events only shorten a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf
from lightkube import ApiError

from modelship import constants
from modelship.adapters import metrics
from modelship.handlers import runtime
from modelship.handlers.md_reconcile import reconcile

_wakeups: dict[tuple[str, str], asyncio.Event] = {}
RETRY_SECONDS = 5.0


def wake(namespace: str, name: str) -> None:
    event = _wakeups.get((namespace, name))
    if event is not None:
        event.set()


@kopf.daemon(constants.GROUP, constants.VERSION, constants.MODEL_DEPLOYMENT_PLURAL,
             cancellation_timeout=10)
async def model_deployment_loop(name: str, namespace: str | None, stopped: kopf.DaemonStopped,
                                logger: logging.Logger | logging.LoggerAdapter[Any],
                                **_: Any) -> None:
    assert namespace is not None  # ModelDeployments are namespaced
    key = (namespace, name)
    woken = _wakeups.setdefault(key, asyncio.Event())
    try:
        while not stopped:
            woken.clear()
            try:
                delay = await reconcile(runtime.kube(), namespace, name)
            except ApiError as err:
                logger.warning("reconcile failed, retrying in %ss: %s", RETRY_SECONDS,
                               err.status.message)
                delay = RETRY_SECONDS
            except Exception:
                logger.exception("reconcile failed, retrying in %ss", RETRY_SECONDS)
                delay = RETRY_SECONDS
            sleep = runtime.RESYNC_SECONDS if delay is None else min(delay,
                                                                     runtime.RESYNC_SECONDS)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=max(0.05, sleep))
    finally:
        _wakeups.pop(key, None)


@kopf.on.event(constants.GROUP, constants.VERSION, constants.MODEL_DEPLOYMENT_PLURAL)
async def on_model_deployment_event(name: str, namespace: str | None, type: str | None,
                                    **_: Any) -> None:
    """Spec, annotation (manual commands) or status changed: decide again now. Deleted: its
    series leave /metrics at once (a pass that finds it gone does the same)."""
    if namespace is None:
        return
    if type == "DELETED":
        metrics.forget_model_deployment(namespace, name)
    wake(namespace, name)


@kopf.on.event("apps", "v1", "deployments",
               labels={constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
                       constants.LABEL_DEPLOYMENT: kopf.PRESENT})
async def on_child_deployment(body: kopf.Body, **_: Any) -> None:
    """A Triton Deployment changed (pods became ready, or not): wake its owner's loop rather
    than wait for the next resync."""
    wake(body["metadata"]["namespace"], body["metadata"]["labels"][constants.LABEL_DEPLOYMENT])
