"""Run the operator: every handler module registered, Kopf's liveness endpoint on, and, with
leader election, Kopf's handlers only while this replica holds the Lease."""

from __future__ import annotations

import asyncio
import logging
import re

import kopf
from kopf._core.engines.peering import Identity
from prometheus_client import start_http_server

from modelship.adapters import metrics
from modelship.adapters.leader import LeaseElector, LeaseSettings, default_identity
from modelship.handlers import (  # noqa: F401  (handlers)
    login,
    modeldeployment,
    runtime,
    trainingrun,
)

log = logging.getLogger(__name__)
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


async def _operate(namespaces: list[str], liveness: str, identity: str) -> None:
    # Kopf's own peering stays off: the Lease decides who acts (docs/architecture.md).
    # The identity is given: Kopf's default looks the user up in /etc/passwd, where the
    # image's numeric user (or an arbitrary UID a cluster assigns) has no entry.
    await kopf.operator(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness or None,
        standalone=True,
        identity=Identity(identity),
    )


async def _serve(namespaces: list[str], liveness: str, lease: LeaseSettings | None) -> None:
    if lease is None:
        await _operate(namespaces, liveness, default_identity())
        return
    elector = LeaseElector(lease)
    try:
        if not await elector.wait_until_leader(liveness):
            log.info("stopped while standing by")
            return
        async with elector.leading():
            await _operate(namespaces, liveness, lease.identity)
    finally:
        await elector.close()


def run(namespaces: list[str], liveness: str, verbose: bool = False,
        lease: LeaseSettings | None = None) -> None:
    """Run until stopped; `lease` None runs without leader election (a single process)."""
    # The watch caches list each namespace by name (as the chart's Roles grant them), so
    # Kopf's namespace patterns are refused here rather than failing later on every list.
    for namespace in namespaces:
        if not _NAMESPACE.match(namespace):
            raise SystemExit(f"--namespace {namespace!r}: give the exact name of a namespace "
                             "(a DNS label: lowercase letters, digits and '-')")
    runtime.NAMESPACES = tuple(namespaces)
    kopf.configure(verbose=verbose)
    # One line per API request drowns what matters; Kopf's own log says what was handled.
    for name in ("httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    # Standbys serve metrics too (modelship_leader says which replica leads), so a scrape of
    # every replica never reports one of them down.
    if runtime.METRICS_PORT:
        metrics.set_info()
        start_http_server(runtime.METRICS_PORT)
        log.info("metrics on :%d/metrics", runtime.METRICS_PORT)
    asyncio.run(_serve(namespaces, liveness, lease))
