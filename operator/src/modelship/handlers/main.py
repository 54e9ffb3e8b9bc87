"""Run the operator: every handler module registered, Kopf's liveness endpoint on."""

from __future__ import annotations

import asyncio
import logging

import kopf

from modelship.handlers import modeldeployment, runtime, trainingrun  # noqa: F401  (handlers)


def run(namespaces: list[str], liveness: str, verbose: bool = False) -> None:
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
