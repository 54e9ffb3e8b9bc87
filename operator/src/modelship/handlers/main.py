"""Run the operator: every handler module registered, Kopf's liveness endpoint on."""

from __future__ import annotations

import asyncio

import kopf

from modelship.handlers import modeldeployment, runtime  # noqa: F401  (registers handlers)


def run(namespaces: list[str], liveness: str, verbose: bool = False) -> None:
    kopf.configure(verbose=verbose)
    asyncio.run(kopf.operator(
        clusterwide=not namespaces,
        namespaces=namespaces or None,
        liveness_endpoint=liveness or None,
        standalone=True,
    ))
