"""Operator process settings: Kopf configuration, the shared API client, metrics endpoint."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf
from prometheus_client import start_http_server

from modelship import constants
from modelship.adapters import metrics
from modelship.adapters.kube import Kube

# How often every resource is re-reconciled even without events (level-based safety net).
RESYNC_SECONDS = float(os.environ.get("MODELSHIP_RESYNC_SECONDS", "10"))
METRICS_PORT = int(os.environ.get("MODELSHIP_METRICS_PORT", "8080"))

_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings,
                    logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any) -> None:
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
    if METRICS_PORT:
        metrics.set_info()
        start_http_server(METRICS_PORT)
        logger.info("metrics on :%d/metrics", METRICS_PORT)


@kopf.on.cleanup()
async def close_client(**_: Any) -> None:
    global _kube
    if _kube is not None:
        await _kube.close()
        _kube = None
