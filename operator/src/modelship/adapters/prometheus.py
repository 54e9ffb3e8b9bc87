"""Prometheus instant queries for analysis: every failure becomes an error text, never an
exception, so the state machine can call the result Inconclusive."""

from __future__ import annotations

import asyncio
import math

import httpx

from modelship.core.analysis import CheckQuery, Measurement


async def query(client: httpx.AsyncClient, address: str, promql: str,
                timeout_s: float) -> tuple[float | None, str]:
    """(value, error): value None with no error means "no data"."""
    try:
        resp = await client.get(f"{address.rstrip('/')}/api/v1/query",
                                params={"query": promql}, timeout=timeout_s)
    except httpx.TimeoutException:
        return None, f"Prometheus did not answer within {timeout_s:g}s"
    except httpx.HTTPError as err:
        return None, f"Prometheus unreachable: {type(err).__name__}: {err}"
    try:
        body = resp.json()
    except ValueError:
        return None, f"Prometheus answered HTTP {resp.status_code} without JSON"
    if resp.status_code != 200 or body.get("status") != "success":
        return None, f"Prometheus error ({resp.status_code}): {body.get('error', '')}"
    data = body.get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        return float(result[1]), ""
    if data.get("resultType") != "vector":
        return None, f"expected a number, got a {data.get('resultType')}"
    if not isinstance(result, list) or not result:
        return None, ""
    if len(result) > 1:
        return None, f"the query returned {len(result)} series; it must return one"
    value = float(result[0]["value"][1])
    return (value if not math.isnan(value) else math.nan), ""


async def _measure(client: httpx.AsyncClient, address: str, q: CheckQuery,
                   timeout_s: float) -> Measurement:
    value, error = await query(client, address, q.candidate, timeout_s)
    stable: float | None = None
    if not error and q.stable is not None:
        stable, error = await query(client, address, q.stable, timeout_s)
    return Measurement(value=value, stable=stable, error=error)


async def measure_checks(address: str, queries: list[CheckQuery],
                         timeout_s: float) -> dict[str, Measurement]:
    """Run every check's queries concurrently: {check name: Measurement}."""
    async with httpx.AsyncClient() as client:
        results = await asyncio.gather(*(_measure(client, address, q, timeout_s)
                                         for q in queries))
    return {q.name: m for q, m in zip(queries, results, strict=True)}
