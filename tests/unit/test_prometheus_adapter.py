"""The Prometheus adapter against a real HTTP server on 127.0.0.1 that answers /api/v1/query
the way Prometheus does (shapes taken from Prometheus' HTTP API)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from modelship.adapters import prometheus as prometheus_adapter
from modelship.adapters.prometheus import (
    PrometheusClient,
    QueryResult,
    measure_checks,
    parse_queries,
)
from modelship.core.analysis import CheckQuery, Measurement, verdict
from modelship.core.analysis.syntax import ParseAnswer
from modelship_api.modeldeployment import Check

SLOW_S = 8.0  # the slow answer; every timeout below is far shorter


def _vector(*values: str) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"pod": f"triton-{i}"}, "value": [1700000000.0, v]}
        for i, v in enumerate(values)]}}


ANSWERS: dict[str, tuple[int, Any]] = {
    "scalar": (200, {"status": "success",
                     "data": {"resultType": "scalar", "result": [1700000000.0, "0.25"]}}),
    "one": (200, _vector("0.125")),
    "empty": (200, _vector()),
    "two": (200, _vector("1", "2")),
    "five": (200, _vector("1", "2", "3", "4", "5")),
    "nan": (200, _vector("NaN")),
    "inf": (200, _vector("+Inf")),
    "matrix": (200, {"status": "success", "data": {"resultType": "matrix", "result": []}}),
    "garbage": (200, _vector("not-a-number")),
    "bad_query": (400, {"status": "error", "errorType": "bad_data",
                        "error": "invalid parameter \"query\": 1:5: parse error"}),
    "http500": (500, "<html>internal error</html>"),
}


class FakePrometheus:
    """A threaded HTTP server answering POST /api/v1/query from ANSWERS, by query text."""

    def __init__(self) -> None:
        self.released = threading.Event()  # lets the slow handler finish at teardown
        self.requests: list[dict[str, list[str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                fake.requests.append(form)
                promql = form.get("query", [""])[0]
                if self.path != "/api/v1/query":
                    self._send(404, "not found")
                elif promql == "slow":
                    fake.released.wait(SLOW_S)
                    self._send(*ANSWERS["one"])
                else:
                    self._send(*ANSWERS[promql])

            def _send(self, code: int, body: Any) -> None:
                raw = (body if isinstance(body, str) else json.dumps(body)).encode()
                kind = "text/html" if isinstance(body, str) else "application/json"
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                # The client may have given up already (timeout test).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    server = FakePrometheus()
    server.thread.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that is bound but not listening: connecting is refused at once."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def query(url: str, promql: str, timeout_s: float = 2.0) -> QueryResult:
    async def go() -> QueryResult:
        async with PrometheusClient(url) as client:
            return await client.query(promql, timeout_s)
    return asyncio.run(go())


def test_scalar_is_a_number(fake: FakePrometheus) -> None:
    assert query(fake.url, "scalar").value == 0.25
    assert fake.requests[0]["timeout"] == ["2"]  # Prometheus is told the limit too


def test_vector_of_one_sample_is_a_number(fake: FakePrometheus) -> None:
    result = query(fake.url, "one")
    assert (result.value, result.error, result.no_data) == (0.125, "", False)


def test_empty_vector_is_no_data(fake: FakePrometheus) -> None:
    result = query(fake.url, "empty")
    assert (result.value, result.error, result.no_data) == (None, "", True)


@pytest.mark.parametrize(("promql", "count"), [("two", 2), ("five", 5)])
def test_more_than_one_series_is_an_error_naming_the_count(fake: FakePrometheus, promql: str,
                                                           count: int) -> None:
    result = query(fake.url, promql)
    assert result.value is None
    assert f"returned {count} series" in result.error
    assert '{pod="triton-0"}' in result.error and '{pod="triton-1"}' in result.error
    assert (", ...)" in result.error) == (count > 3)


def test_nan_and_inf_are_passed_through_and_inconclusive(fake: FakePrometheus) -> None:
    nan, inf = query(fake.url, "nan"), query(fake.url, "inf")
    assert nan.value is not None and math.isnan(nan.value) and not nan.error
    assert inf.value == math.inf and not inf.error
    check = Check(name="error-ratio", builtin="errorRatio", max=0.01)
    for value in (nan.value, inf.value):
        assert verdict(check, Measurement(value=value)).result == "Inconclusive"


@pytest.mark.parametrize(("promql", "expected"), [
    ("http500", "HTTP 500 without JSON: <html>internal error</html>"),
    ("bad_query", "HTTP 400, bad_data: invalid parameter"),
    ("matrix", "expected a scalar or an instant vector, got a matrix"),
    ("garbage", "unexpected answer from Prometheus: ValueError"),
])
def test_bad_answers_are_error_texts(fake: FakePrometheus, promql: str, expected: str) -> None:
    result = query(fake.url, promql)
    assert result.value is None and expected in result.error


def test_slow_answer_beyond_the_timeout_is_an_error_in_time(fake: FakePrometheus) -> None:
    started = time.monotonic()
    result = query(fake.url, "slow", timeout_s=0.3)
    took = time.monotonic() - started
    assert result.value is None and "did not answer within 0.3s" in result.error
    assert took < 2.0, took
    assert result.seconds >= 0.3


def test_connection_refused_is_an_error(refused_url: str) -> None:
    result = query(refused_url, "one")
    assert result.value is None and "unreachable: ConnectError" in result.error


def test_invalid_address_is_an_error() -> None:
    assert "unreachable" in query("http://127.0.0.1:notaport", "one").error


def test_measure_checks_runs_candidate_and_stable_queries(fake: FakePrometheus) -> None:
    absolute = Check(name="errors", builtin="errorRatio", max=0.01)
    relative = Check(name="latency", builtin="meanLatency", max=1.5, relative_to_stable=True)
    queries = [
        CheckQuery(absolute, candidate="one"),
        CheckQuery(relative, candidate="one", stable="scalar"),  # 0.5x stable
        CheckQuery(Check(name="no-data", query="x", max=1), candidate="empty"),
        CheckQuery(relative.model_copy(update={"name": "stable-down"}), candidate="one",
                   stable="http500"),
        CheckQuery(Check(name="slow", query="x", max=1), candidate="slow"),
    ]
    started = time.monotonic()
    got = asyncio.run(measure_checks(fake.url, queries, timeout_s=2.0))
    assert time.monotonic() - started < SLOW_S / 2  # concurrent, each bounded
    assert got["errors"] == Measurement(value=0.125)
    assert got["latency"] == Measurement(value=0.125, stable=0.25)
    assert got["no-data"] == Measurement()
    assert got["stable-down"].value == 0.125
    assert got["stable-down"].error.startswith("stable version: Prometheus answered HTTP 500")
    assert "did not answer" in got["slow"].error
    results = {name: verdict(q.check, got[name]).result
               for name, q in zip(got, queries, strict=True)}
    assert results == {"errors": "Failed", "latency": "Successful", "no-data": "Inconclusive",
                       "stable-down": "Inconclusive", "slow": "Inconclusive"}


def test_measure_checks_with_prometheus_gone(refused_url: str) -> None:
    check = Check(name="errors", builtin="errorRatio", max=0.01)
    got = asyncio.run(measure_checks(refused_url, [CheckQuery(check, candidate="one")], 1.0))
    assert got["errors"].value is None and "unreachable" in got["errors"].error
    assert verdict(check, got["errors"]).result == "Inconclusive"


def test_without_parse_query_an_instant_query_gives_the_parsers_verdict(
        fake: FakePrometheus) -> None:
    """A server that does not serve /api/v1/parse_query (this one answers 404, as an older or
    a Prometheus-compatible server may): the instant query's bad_data is the parse error,
    and anything but a verdict leaves the question open. A real Prometheus answers
    /api/v1/parse_query itself (tests/integration/test_promql_check.py)."""
    answers = asyncio.run(parse_queries(fake.url, ["one", "bad_query", "http500", "slow"], 0.5))
    assert answers[0] == ParseAnswer()
    assert answers[1] == ParseAnswer(error='invalid parameter "query": 1:5: parse error')
    assert "HTTP 500 without a JSON object" in answers[2].unavailable
    assert "did not answer within 0.5s" in answers[3].unavailable
    asked = sorted(r.get("query", [""])[0] for r in fake.requests)
    # Each: /api/v1/parse_query (404), then the instant query.
    assert asked == sorted(["bad_query", "http500", "one", "slow"] * 2)


def test_a_vector_answer_is_keyed_by_the_grouping_label() -> None:
    from modelship.adapters.prometheus import AnswerError, parse_vector
    body = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"le": "0.1"}, "value": [1, "4"]},
        {"metric": {"le": "+Inf"}, "value": [1, "9.5"]}]}}
    assert parse_vector(200, body, "le") == {"0.1": 4.0, "+Inf": 9.5}
    empty = {"status": "success", "data": {"resultType": "vector", "result": []}}
    assert parse_vector(200, empty, "class") == {}
    with pytest.raises(AnswerError, match=r"several series with le='0\.1'"):
        parse_vector(200, {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"le": "0.1", "pod": "a"}, "value": [1, "1"]},
            {"metric": {"le": "0.1", "pod": "b"}, "value": [1, "2"]}]}}, "le")
    with pytest.raises(AnswerError, match="bad_data"):
        parse_vector(400, {"status": "error", "errorType": "bad_data", "error": "x"}, "le")


def test_vector_queries_that_fail_are_error_texts(refused_url: str) -> None:
    from modelship.adapters.prometheus import query_vectors
    from modelship.core.drift.queries import VectorQuery
    answers = asyncio.run(query_vectors(refused_url, [VectorQuery("a", "up", "le")], 2.0))
    assert answers["a"].values == {} and "unreachable" in answers["a"].error


def test_passes_share_one_http_client_per_event_loop(fake: FakePrometheus,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Making a client loads the CA bundle (tens of ms of CPU): 100 canaries analysed every
    # second made 100 a second and starved the operator's loop. Counted, not replaced.
    made: list[httpx.AsyncClient] = []
    real = httpx.AsyncClient

    def counting(*args: Any, **kwargs: Any) -> httpx.AsyncClient:
        made.append(real(*args, **kwargs))
        return made[-1]
    monkeypatch.setattr(prometheus_adapter.httpx, "AsyncClient", counting)
    check = Check(name="c", query="one", max=1)

    async def passes() -> list[Measurement]:
        out = []
        for _ in range(3):
            out.append((await measure_checks(fake.url, [CheckQuery(check, candidate="one")],
                                             2.0))["c"])
            await parse_queries(fake.url, ["one"], 2.0)
        await prometheus_adapter.close_shared_client()
        return out

    assert [m.value for m in asyncio.run(passes())] == [0.125] * 3
    assert len(made) == 1 and made[0].is_closed
    asyncio.run(passes())  # another loop (a restarted operator): a client of its own
    assert len(made) == 2
