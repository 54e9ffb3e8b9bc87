"""Prometheus instant queries for analysis.

Every failure (HTTP error, timeout, connection refused, an answer that is not one number)
becomes an error text, never an exception, so the state machine calls the check
Inconclusive instead of crashing a reconcile. NaN and infinities are returned as they are:
they are values with no meaning (0/0 when a version served nothing), and the verdict treats
them as Inconclusive too.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from modelship.core.analysis import CheckQuery, Measurement
from modelship.core.analysis.syntax import ParseAnswer
from modelship.core.drift.queries import VectorAnswer, VectorQuery

# Label sets named in the "more than one series" error, enough to see which label differs.
_SHOWN_SERIES = 3
# One HTTP client per event loop, shared by every pass: making one costs tens of ms of CPU
# (its TLS context loads the CA bundle), which 100 canaries analysed every second paid 100
# times a second, starving the operator's loop until Prometheus "did not answer" in time;
# shared, it also keeps its connections to Prometheus open between runs.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = \
    weakref.WeakKeyDictionary()


def shared_client() -> httpx.AsyncClient:
    """The running event loop's client for Prometheus (made on first use)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _clients[loop] = httpx.AsyncClient()
    return client


async def close_shared_client() -> None:
    """Close the running loop's client (the operator's shutdown)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


@dataclass(frozen=True)
class QueryResult:
    """One instant query: `value` None without `error` means the query matched nothing."""

    value: float | None = None
    error: str = ""
    seconds: float = 0.0  # how long Prometheus took to answer (or not)

    @property
    def no_data(self) -> bool:
        return self.value is None and not self.error


class AnswerError(ValueError):
    """Prometheus answered, but not with a single number."""


def _labels(series: Mapping[str, Any]) -> str:
    metric = series.get("metric") or {}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"


def _success_data(status_code: int, body: Any) -> Any:
    """The `data` of a successful /api/v1 answer; AnswerError with Prometheus' words else."""
    if not isinstance(body, dict):
        raise AnswerError(f"HTTP {status_code} without a JSON object")
    if status_code != 200 or body.get("status") != "success":
        kind = body.get("errorType") or "error"
        raise AnswerError(f"HTTP {status_code}, {kind}: {body.get('error', '')}".rstrip(": "))
    return body.get("data")


def parse_answer(status_code: int, body: Any) -> float | None:
    """The number in a /api/v1/query answer; None for an empty vector; AnswerError else."""
    data = _success_data(status_code, body)
    if not isinstance(data, dict):
        raise AnswerError("the answer has no data")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return float(result[1])
    if kind != "vector" or not isinstance(result, list):
        raise AnswerError(f"expected a scalar or an instant vector, got a {kind}")
    if not result:
        return None
    if len(result) > 1:
        shown = ", ".join(_labels(s) for s in result[:_SHOWN_SERIES])
        more = ", ..." if len(result) > _SHOWN_SERIES else ""
        raise AnswerError(f"the query returned {len(result)} series ({shown}{more}); "
                          "it must return one: aggregate it, e.g. sum(...)")
    sample = result[0]
    if "value" not in sample:
        raise AnswerError(f"the sample of {_labels(sample)} is a native histogram, "
                          "not a number")
    return float(sample["value"][1])


def parse_vector(status_code: int, body: Any, by: str) -> dict[str, float]:
    """The samples of a /api/v1/query answer keyed by the value of label `by` ("" for a
    query without grouping); AnswerError for anything but an instant vector."""
    data = _success_data(status_code, body)
    if not isinstance(data, dict) or data.get("resultType") != "vector" \
            or not isinstance(data.get("result"), list):
        raise AnswerError("expected an instant vector")
    out: dict[str, float] = {}
    for sample in data["result"]:
        key = str((sample.get("metric") or {}).get(by, "")) if by else ""
        if key in out:
            raise AnswerError(f"the query returned several series with {by or 'no label'}="
                              f"{key!r}: group it by {by or 'nothing'}")
        out[key] = float(sample["value"][1])
    return out


class PrometheusClient:
    """Instant queries against one Prometheus. Reuses one HTTP connection pool; give it an
    httpx.AsyncClient to share one, or use it as an async context manager."""

    def __init__(self, address: str, client: httpx.AsyncClient | None = None) -> None:
        self.address = address.rstrip("/")
        self._client = client or httpx.AsyncClient()
        self._owns_client = client is None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def _post(self, path: str, form: dict[str, str], timeout_s: float
                    ) -> httpx.Response | str:
        """The response, or why there is none. POST: generated queries can outgrow a URL;
        Prometheus accepts both."""
        try:
            return await asyncio.wait_for(
                self._client.post(f"{self.address}{path}", data=form, timeout=timeout_s),
                timeout=timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            return f"Prometheus at {self.address} did not answer within {timeout_s:g}s"
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            return f"Prometheus at {self.address} unreachable: {type(err).__name__}: {err}"

    async def query(self, promql: str, timeout_s: float) -> QueryResult:
        """Evaluate `promql` now. Bounded by `timeout_s` in all (connect, wait, read), and
        Prometheus is told the same limit so it abandons the evaluation too."""
        started = time.monotonic()

        def failed(error: str) -> QueryResult:
            return QueryResult(error=error, seconds=time.monotonic() - started)

        resp = await self._post("/api/v1/query",
                                {"query": promql, "timeout": f"{timeout_s:g}"}, timeout_s)
        if isinstance(resp, str):
            return failed(resp)
        try:
            body = resp.json()
        except ValueError:
            snippet = resp.text[:200].strip()
            return failed(f"Prometheus answered HTTP {resp.status_code} without JSON: {snippet}")
        try:
            value = parse_answer(resp.status_code, body)
        except AnswerError as err:
            return failed(str(err))
        except (KeyError, IndexError, TypeError, ValueError) as err:
            return failed(f"unexpected answer from Prometheus: {type(err).__name__}: {err}")
        return QueryResult(value=value, seconds=time.monotonic() - started)

    async def vector(self, query: VectorQuery, timeout_s: float) -> VectorAnswer:
        """One query whose samples are told apart by the label `query.by` (a histogram's
        buckets, a counter's classes). Failures are an error text, never an exception."""
        resp = await self._post("/api/v1/query",
                                {"query": query.promql, "timeout": f"{timeout_s:g}"}, timeout_s)
        if isinstance(resp, str):
            return VectorAnswer(error=resp)
        try:
            return VectorAnswer(parse_vector(resp.status_code, resp.json(), query.by))
        except AnswerError as err:
            return VectorAnswer(error=str(err))
        except (KeyError, IndexError, TypeError, ValueError) as err:
            return VectorAnswer(error=f"unexpected answer from Prometheus at {self.address}: "
                                f"{type(err).__name__}: {err}")

    async def parse(self, promql: str, timeout_s: float) -> ParseAnswer:
        """Prometheus' own parser's verdict on `promql`, without evaluating it:
        /api/v1/parse_query (served by Prometheus 2.x and 3.x for its UI). Where it is not
        served (HTTP 404: an older or a Prometheus-compatible server), an instant query
        stands in: Prometheus parses before it evaluates, and a parse error is `bad_data`
        either way, while an error of evaluation means the query parsed."""
        resp = await self._post("/api/v1/parse_query", {"query": promql}, timeout_s)
        if not isinstance(resp, str) and resp.status_code == 404:
            resp = await self._post("/api/v1/query",
                                    {"query": promql, "timeout": f"{timeout_s:g}"}, timeout_s)
        if isinstance(resp, str):
            return ParseAnswer(unavailable=resp)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return ParseAnswer(unavailable=f"Prometheus at {self.address} answered HTTP "
                               f"{resp.status_code} without a JSON object")
        if resp.status_code == 200 and body.get("status") == "success":
            return ParseAnswer()
        if resp.status_code == 400 and body.get("errorType") == "bad_data":
            return ParseAnswer(error=str(body.get("error", "")))
        if resp.status_code == 422 and body.get("errorType") == "execution":
            return ParseAnswer()  # it parsed; evaluating it failed (the instant query)
        return ParseAnswer(unavailable=f"Prometheus at {self.address} answered HTTP "
                           f"{resp.status_code}, {body.get('errorType') or 'error'}: "
                           f"{body.get('error', '')}")

    async def measure(self, query: CheckQuery, timeout_s: float) -> Measurement:
        """One check: its queries (candidate, stable, sample sizes) concurrently."""
        return (await self.measure_all([query], timeout_s))[query.name]

    async def measure_all(self, queries: Sequence[CheckQuery],
                          timeout_s: float) -> dict[str, Measurement]:
        """Every check concurrently: {check name: Measurement}, as Observations expects.
        A query that several checks share (the sample-size ones) is sent once."""
        texts = list(dict.fromkeys(
            text for q in queries
            for text in (q.candidate, q.stable, q.candidate_requests, q.stable_requests)
            if text is not None))
        answers = dict(zip(texts, await asyncio.gather(
            *(self.query(text, timeout_s) for text in texts)), strict=True))
        none = QueryResult()

        def answer(text: str | None) -> QueryResult:
            return none if text is None else answers[text]

        out = {}
        for q in queries:
            candidate, stable = answer(q.candidate), answer(q.stable)
            requests, stable_requests = answer(q.candidate_requests), answer(q.stable_requests)
            error = candidate.error or next(
                (f"{what}: {r.error}" for what, r in (("stable version", stable),
                                                       ("request count", requests),
                                                       ("stable request count",
                                                        stable_requests)) if r.error), "")
            out[q.name] = Measurement(value=candidate.value, stable=stable.value, error=error,
                                      requests=requests.value,
                                      stable_requests=stable_requests.value)
        return out


async def measure_checks(address: str, queries: Sequence[CheckQuery],
                         timeout_s: float) -> dict[str, Measurement]:
    """Run every check's queries concurrently against the Prometheus at `address`."""
    async with PrometheusClient(address, shared_client()) as prometheus:
        return await prometheus.measure_all(queries, timeout_s)


async def query_vectors(address: str, queries: Sequence[VectorQuery],
                        timeout_s: float) -> dict[str, VectorAnswer]:
    """Every query concurrently: {query key: answer}."""
    async with PrometheusClient(address, shared_client()) as prometheus:
        answers = await asyncio.gather(*(prometheus.vector(q, timeout_s) for q in queries))
    return {q.key: a for q, a in zip(queries, answers, strict=True)}


async def parse_queries(address: str, queries: Sequence[str],
                        timeout_s: float) -> list[ParseAnswer]:
    """Prometheus' parser's verdict on each query, asked concurrently, in order."""
    async with PrometheusClient(address, shared_client()) as prometheus:
        return list(await asyncio.gather(*(prometheus.parse(q, timeout_s) for q in queries)))
