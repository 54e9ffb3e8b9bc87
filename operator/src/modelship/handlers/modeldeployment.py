"""Kopf handlers for ModelDeployment.

One daemon per resource runs `reconcile` in a loop and sleeps exactly until time alone could
change the decision (the next analysis run, the end of a pause), capped by the resync
period. A change of the resource or of one of its children, seen by the watch caches, wakes
it at once. The loop keeps nothing that matters in memory: its wake-ups only shorten a sleep.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from modelship import constants
from modelship.adapters import smoke
from modelship.handlers import runtime
from modelship.handlers.md_reconcile import reconcile


@kopf.daemon(constants.GROUP, constants.VERSION, constants.MODEL_DEPLOYMENT_PLURAL,
             cancellation_timeout=10)
async def model_deployment_loop(name: str, namespace: str | None, stopped: kopf.DaemonStopped,
                                logger: logging.Logger | logging.LoggerAdapter[Any],
                                **_: Any) -> None:
    assert namespace is not None  # ModelDeployments are namespaced
    try:
        await runtime.reconcile_loop(constants.MODEL_DEPLOYMENT_KIND, namespace, name,
                                     stopped, logger, reconcile)
    finally:  # deleted, or this replica stopped leading: its smoke load ends with the loop
        smoke.stop((namespace, name))
