"""Operator process settings: Kopf configuration, the shared API client and its watch
caches, the metrics endpoint, and the per-resource reconcile loops that cache events wake."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import kopf
from lightkube import ApiError, AsyncClient

from modelship import constants
from modelship.adapters import metrics, prometheus
from modelship.adapters.cache import Caches
from modelship.adapters.kube import WATCHED, Kube, StatusConflictError, counted
from modelship.adapters.loop_watchdog import LoopWatchdog
from modelship.handlers import refusals
from modelship_api.retraining import LABEL_RETRAINED_FOR

# How often every resource is re-reconciled even without events (level-based safety net).
RESYNC_SECONDS = float(os.environ.get("MODELSHIP_RESYNC_SECONDS", "10"))
METRICS_PORT = int(os.environ.get("MODELSHIP_METRICS_PORT", "8080"))
# How long startup waits for the caches' first lists; reads of a kind not yet listed go
# to the API server meanwhile.
CACHE_SYNC_SECONDS = 60.0
RETRY_SECONDS = 5.0
# A pass waits only on the API server and Prometheus, each with its own timeout; a pass that
# still does not end is cancelled, said with where it waited, and the loop goes on (one stuck
# await once froze a ModelDeployment's status for minutes with nothing logged).
PASS_TIMEOUT_SECONDS = float(os.environ.get("MODELSHIP_PASS_TIMEOUT_SECONDS", "60"))
CANCEL_GRACE_S = 5.0
# The event loop not turning for this long is logged with its stack (adapters/loop_watchdog).
LOOP_STALL_SECONDS = float(os.environ.get("MODELSHIP_LOOP_STALL_SECONDS", "10"))
# Passes that run at once (as controller-runtime's MaxConcurrentReconciles): a thousand
# resources created together queue here instead of flooding the API server.
MAX_CONCURRENT_PASSES = int(os.environ.get("MODELSHIP_MAX_CONCURRENT_RECONCILES", "16"))
# The namespaces the operator serves (empty: the whole cluster); set before Kopf starts.
NAMESPACES: tuple[str, ...] = ()

_kube: Kube | None = None
_wakeups: dict[tuple[str, str, str], asyncio.Event] = {}
_passes: asyncio.Semaphore | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = constants.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=constants.KOPF_ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=constants.KOPF_ANNOTATION_PREFIX, key="last-handled-configuration")
    # Watches are re-established before load balancers cut idle streams; requests fail fast.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    # modelship writes its own, typed events; Kopf's per-handler ones would only be noise.
    settings.posting.enabled = False
    settings.execution.max_workers = 8


def wake(kind: str, namespace: str, name: str) -> None:
    event = _wakeups.get((kind, namespace, name))
    if event is not None:
        event.set()


def _on_change(kind: str, event: str, obj: Mapping[str, Any]) -> None:
    """A resource changed, or a child of one did: its loop decides again now. A deleted
    resource's series leave /metrics at once (a pass that finds it gone does the same)."""
    meta = obj["metadata"]
    if event == "DELETED" and kind == constants.MODEL_DEPLOYMENT_KIND:
        metrics.forget_model_deployment(meta["namespace"], meta["name"])
    elif event == "DELETED" and kind == constants.TRAINING_RUN_KIND:
        metrics.forget_training_run(meta["namespace"], meta["name"])
    labels = meta.get("labels") or {}
    if kind in (constants.MODEL_DEPLOYMENT_KIND, constants.TRAINING_RUN_KIND):
        wake(kind, meta["namespace"], meta["name"])
        if LABEL_RETRAINED_FOR in labels:  # its ModelDeployment's retraining follows it
            wake(constants.MODEL_DEPLOYMENT_KIND, meta["namespace"],
                 labels[LABEL_RETRAINED_FOR])
        return
    for label, owner_kind in ((constants.LABEL_DEPLOYMENT, constants.MODEL_DEPLOYMENT_KIND),
                              (constants.LABEL_TRAINING_RUN, constants.TRAINING_RUN_KIND)):
        if label in labels:
            wake(owner_kind, meta["namespace"], labels[label])


class PassTimeoutError(Exception):
    """A reconcile pass ran past PASS_TIMEOUT_SECONDS and was cancelled."""


async def bounded_pass(pass_: Coroutine[Any, Any, float | None],
                       limit_s: float | None = None) -> float | None:
    """Run one pass, cancelled after `limit_s` (PASS_TIMEOUT_SECONDS) with the chain of
    awaits it was stuck in; its errors are the caller's. A pass that does not stop when
    cancelled (an await that swallows the cancellation) is left behind after CANCEL_GRACE_S,
    so the loop never waits on it."""
    limit = limit_s or PASS_TIMEOUT_SECONDS
    task = asyncio.ensure_future(pass_)
    done, _ = await asyncio.wait({task}, timeout=limit)
    if done:
        return task.result()
    where = awaiting(pass_)
    task.cancel()
    stopped, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
    if stopped:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()
    raise PassTimeoutError(
        f"the pass did not end within {limit:g}s; cancelled while awaiting {where}"
        + ("" if stopped else f"; it did not stop within {CANCEL_GRACE_S:g}s of being "
           "cancelled and was left behind"))


def awaiting(coro: Any) -> str:
    """Where a suspended coroutine waits: its chain of awaits, outermost first."""
    where = []
    for _ in range(64):  # bounded: a chain is a few dozen deep at most
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        where.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename.rsplit('/', 1)[-1]}"
                     f":{frame.f_lineno})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " > ".join(where) or "an unknown place"


async def reconcile_loop(kind: str, namespace: str, name: str, stopped: kopf.DaemonStopped,
                         logger: logging.Logger | logging.LoggerAdapter[Any],
                         reconcile: Callable[[Kube, str, str], Coroutine[Any, Any, float | None]]
                         ) -> None:
    """Reconcile until stopped; sleep until the pass's requeue time (capped by the resync
    period) or until a cache event about the resource or its children wakes the loop."""
    global _passes
    if _passes is None:
        _passes = asyncio.Semaphore(MAX_CONCURRENT_PASSES)
    key = (kind, namespace, name)
    woken = _wakeups.setdefault(key, asyncio.Event())
    try:
        while not stopped:
            try:
                async with _passes:
                    woken.clear()
                    delay = await bounded_pass(reconcile(kube(), namespace, name))
            except StatusConflictError as err:
                logger.info("%s: reading again and deciding anew", err)
                delay = 0  # the status this pass decided from is stale, not wrong
            except ApiError as err:
                logger.warning("reconcile failed, retrying in %ss: %s", RETRY_SECONDS,
                               err.status.message)
                metrics.RECONCILES.labels(kind=kind, result="error").inc()
                delay = RETRY_SECONDS
                try:
                    await refusals.report(kube(), kind, namespace, name, err)
                except Exception:
                    logger.exception("could not report the refused request on the resource")
            except PassTimeoutError as err:
                logger.error("reconcile stuck, retrying at once: %s", err)
                metrics.RECONCILES.labels(kind=kind, result="timeout").inc()
                delay = 0
            except Exception:
                logger.exception("reconcile failed, retrying in %ss", RETRY_SECONDS)
                delay = RETRY_SECONDS
            sleep = RESYNC_SECONDS if delay is None else min(delay, RESYNC_SECONDS)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=max(0.05, sleep))
    finally:
        _wakeups.pop(key, None)
        refusals.forget(kind, namespace, name)


_watchdog: LoopWatchdog | None = None


@kopf.on.startup()
async def watch_the_loop(**_: Any) -> None:
    global _watchdog
    _watchdog = LoopWatchdog(asyncio.get_running_loop(), threading.get_ident(),
                             LOOP_STALL_SECONDS, on_stall=metrics.EVENT_LOOP_STALLS.inc)
    _watchdog.start()


@kopf.on.startup()
async def start_caches(logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any) -> None:
    """Fill the watch caches before the first reconcile, so passes read from memory."""
    client = kube()
    # A client of their own: long-lived watch streams must not take the connections that
    # the reconciles' requests queue for.
    client.caches = Caches(counted(AsyncClient()), WATCHED, NAMESPACES,
                           on_change=_on_change)
    if await client.caches.start(CACHE_SYNC_SECONDS):
        logger.info("watch caches synced: %s", ", ".join(
            f"{store.kind.name} {len(store)}" for store in client.caches.stores.values()))
    else:
        logger.warning("watch caches not synced after %.0fs; reading from the API server "
                       "until they are", CACHE_SYNC_SECONDS)


@kopf.on.cleanup()
async def close_client(**_: Any) -> None:
    global _kube, _watchdog
    if _watchdog is not None:
        _watchdog.stop()
        _watchdog = None
    await prometheus.close_shared_client()
    if _kube is not None:
        if _kube.caches is not None:
            await _kube.caches.stop()
        await _kube.close()
        _kube = None
