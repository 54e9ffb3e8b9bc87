"""Sends the smoke load (`core.smoke` decides when, how fast and until when).

One asyncio task per ModelDeployment posts the sample request to Triton's KServe v2 HTTP
endpoint (port 8000) of the candidate's ready pods, in turn, at the planned rate, and
ends at the plan's deadline, when a pass plans none (promoted, rolled back, aborted, the
candidate given client traffic) or when the resource's loop ends. Why HTTP to the pods and
not gRPC through the gateway: the gateway's route is gRPC, and the operator's image has no
gRPC client (no grpcio, no tritonclient); Triton counts HTTP and gRPC requests in the same
nv_inference_* series, which is all the analysis reads, and the pods are what the
candidate's Service `<name>-v<N>` selects.

The task is the only thing kept in memory, and nothing depends on it: a restarted operator's
first pass plans the same load again from spec and status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from modelship.adapters import metrics
from modelship.core.smoke import SmokePlan

log = logging.getLogger(__name__)
Key = tuple[str, str]  # namespace, name


@dataclass(frozen=True)
class SmokeTarget:
    """A plan bound to where it goes: `urls` of the candidate's ready pods, `body` the
    sample request as JSON."""

    plan: SmokePlan
    urls: tuple[str, ...]
    body: str


_tasks: dict[Key, tuple[SmokeTarget, asyncio.Task[None]]] = {}


def ensure(key: Key, target: SmokeTarget | None) -> None:
    """Make the load of `key` what `target` says: start, restart with new pods or a new
    plan, or stop (None)."""
    running = _tasks.get(key)
    if running is not None and running[0] == target and not running[1].done():
        return
    stop(key)
    if target is not None:
        _tasks[key] = (target, asyncio.create_task(_send(key, target),
                                                   name=f"smoke-load {key[0]}/{key[1]}"))


def stop(key: Key) -> None:
    running = _tasks.pop(key, None)
    if running is not None:
        running[1].cancel()


async def _send(key: Key, target: SmokeTarget) -> None:
    namespace, name = key
    plan = target.plan
    period = 1.0 / plan.rate
    loop = asyncio.get_running_loop()
    headers = {"content-type": "application/json"}
    sent = 0
    async with httpx.AsyncClient(timeout=plan.timeout) as client:
        started = loop.time()
        while datetime.now(UTC) < plan.until:
            result = "failed"
            if target.urls:
                url = target.urls[sent % len(target.urls)]
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.post(url, content=target.body, headers=headers)
                    result = "ok" if response.status_code == 200 else "failed"
            metrics.SMOKE_REQUESTS.labels(namespace=namespace, name=name, result=result).inc()
            sent += 1
            # Paced from the start, so a slow answer does not lower the rate below the plan
            # (nor a burst raise it above: one request at a time).
            await asyncio.sleep(max(0.0, started + sent * period - loop.time()))
    log.info("%s/%s: smoke load to %s ended at its deadline after %d requests",
             namespace, name, plan.release, sent)


def body_json(body: dict[str, object]) -> str:
    return json.dumps(body, separators=(",", ":"))
