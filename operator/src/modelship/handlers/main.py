"""Run the operator: every handler module registered, Kopf's liveness endpoint on."""

from __future__ import annotations

import asyncio
import logging
import re

import kopf

from modelship.handlers import modeldeployment, runtime, trainingrun  # noqa: F401  (handlers)

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def run(namespaces: list[str], liveness: str, verbose: bool = False) -> None:
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
    asyncio.run(kopf.operator(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness or None,
        standalone=True,
    ))
