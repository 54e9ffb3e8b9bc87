"""Kopf handlers for TrainingRun: one daemon per run reconciles it, woken by the watch
caches when the run, its Job or its pod changes, and at least every resync period."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from modelship import constants
from modelship.adapters.kube import Kube
from modelship.handlers import runtime
from modelship.handlers.tr_reconcile import reconcile


async def _pass(kube: Kube, namespace: str, name: str) -> float | None:
    await reconcile(kube, namespace, name)
    return None  # nothing in a run waits on time alone: events and the resync suffice


@kopf.daemon(constants.GROUP, constants.VERSION, constants.TRAINING_RUN_PLURAL,
             cancellation_timeout=10)
async def training_run_loop(name: str, namespace: str | None, stopped: kopf.DaemonStopped,
                            logger: logging.Logger | logging.LoggerAdapter[Any],
                            **_: Any) -> None:
    assert namespace is not None  # TrainingRuns are namespaced
    await runtime.reconcile_loop(constants.TRAINING_RUN_KIND, namespace, name, stopped,
                                 logger, _pass)
