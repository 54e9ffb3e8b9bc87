"""How much evidence a run needs: a minimum sample per window, and failures judged on
windows that do not overlap, so one slow moment cannot roll a good version back."""

from __future__ import annotations

from modelship.core.analysis import CheckQuery, Measurement, QueryContext, check_query, verdict
from modelship_api.modeldeployment import Canary, CanaryStep, Check, Rollout
from tests.unit.rollout.sim import Sim, analysis, healthy, make_spec, phase, serving, slow

ERRORS = Check(name="errors", builtin="errorRatio", max=0.01)
LATENCY = Check(name="latency", builtin="meanLatency", max=1.5, relative_to_stable=True)
P99 = Check(name="p99", builtin="p99Latency", max=3, relative_to_stable=True)


def canary(**analysis_kwargs: object) -> Sim:
    rollout = Rollout(canary=Canary(steps=[CanaryStep(weight=10, pause="10s")]),
                      analysis=analysis(**analysis_kwargs), scale_down_delay="1m")
    sim = serving(make_spec(rollout))
    sim.desired = 2
    return sim


def test_few_requests_are_inconclusive_never_successful() -> None:
    got = verdict(ERRORS, Measurement(value=0.0, requests=3), min_requests=20)
    assert got.result == "Inconclusive"
    assert got.requests == 3
    assert got.message == "candidate served 3 requests in the window, fewer than minRequests 20"


def test_few_requests_are_inconclusive_never_failed() -> None:
    got = verdict(ERRORS, Measurement(value=1.0, requests=2), min_requests=20)
    assert got.result == "Inconclusive"


def test_no_request_series_counts_as_zero() -> None:
    got = verdict(ERRORS, Measurement(value=0.0, requests=None), min_requests=5)
    assert (got.result, got.requests) == ("Inconclusive", 0)


def test_enough_requests_are_judged() -> None:
    assert verdict(ERRORS, Measurement(value=0.0, requests=20), min_requests=20).result == (
        "Successful")
    got = verdict(ERRORS, Measurement(value=0.5, requests=400), min_requests=20)
    assert (got.result, got.requests) == ("Failed", 400)


def test_a_relative_check_needs_a_stable_sample_too() -> None:
    got = verdict(LATENCY, Measurement(value=30.0, stable=10.0, requests=50, stable_requests=4),
                  min_requests=20)
    assert got.result == "Inconclusive"
    assert got.message.startswith("stable version served 4 requests")
    assert verdict(LATENCY, Measurement(value=30.0, stable=10.0, requests=50,
                                        stable_requests=50), min_requests=20).result == "Failed"


def test_zero_min_requests_turns_the_minimum_off() -> None:
    got = verdict(ERRORS, Measurement(value=0.0), min_requests=0)
    assert got.result == "Successful" and got.requests is None


def test_sample_queries_are_asked_only_with_a_minimum() -> None:
    ctx = QueryContext(model="m", namespace="ns", candidate=2, stable=1, window="30s")
    plain = check_query(LATENCY, ctx)
    assert plain.candidate_requests is None and plain.stable_requests is None
    counted = check_query(LATENCY, QueryContext(**{**ctx.__dict__, "min_requests": 10}))
    assert counted.candidate_requests is not None and counted.stable_requests is not None
    assert 'nv_inference_request_success{model="m",version="2"}[30s]' in (
        counted.candidate_requests)
    assert 'version="1"' in counted.stable_requests
    absolute = check_query(ERRORS, QueryContext(**{**ctx.__dict__, "min_requests": 10}))
    assert absolute.candidate_requests is not None and absolute.stable_requests is None


def test_a_step_never_promotes_on_a_handful_of_requests() -> None:
    sim = canary(min_requests=20, inconclusive_limit=1000)
    sim.requests = 3
    sim.run(120)
    assert sim.status.stable_version == 1 and sim.status.candidate_version == 2
    checks = sim.status.analysis.checks or []  # type: ignore[union-attr]
    assert {c.result for c in checks} == {"Inconclusive"}
    sim.requests = 50
    sim.run_until(lambda s: s.status.stable_version == 2, limit=30)


def test_one_slow_moment_does_not_fail_two_runs() -> None:
    """A stall that lands in one window: runs one interval apart would all see it (their
    windows overlap). After a failed run the next run waits a whole window, so it judges
    requests the failed run never saw, and the good version promotes."""
    sim = canary(window="4s", interval="1s", failure_limit=2)
    sim.run_until(lambda s: (s.status.weights or None) is not None
                  and s.status.weights.candidate == 10)
    stall = sim.now
    # Every window that contains the stall measures the candidate slow.
    def stalled(query: CheckQuery) -> Measurement:
        return slow(query) if (sim.now - stall).total_seconds() < 4 else healthy(query)
    sim.measure = stalled
    sim.run_until(lambda s: s.status.phase in ("Ready", "RolledBack"), limit=60)
    assert phase(sim) == "Ready" and sim.status.stable_version == 2
    assert not (sim.status.history or [])[0].reason.startswith("mean-latency")


def seconds_from_first_failure_to_rollback(sim: Sim, limit: float) -> float:
    """Tick 1 s at a time until RolledBack; the rollback never comes later than `limit`
    seconds after the first failed run."""
    first_failure = None
    while phase(sim) != "RolledBack":
        sim.tick(1)
        analysis_status = sim.status.analysis
        if first_failure is None and analysis_status and analysis_status.consecutive_failures:
            first_failure = sim.now
        assert first_failure is None or (sim.now - first_failure).total_seconds() <= limit
    assert first_failure is not None
    return (sim.now - first_failure).total_seconds()


def test_a_persistently_slow_version_still_rolls_back_after_a_window() -> None:
    sim = canary(window="4s", interval="1s", failure_limit=2)
    sim.run_until(lambda s: (s.status.weights or None) is not None
                  and s.status.weights.candidate == 10)
    sim.measure = slow
    assert seconds_from_first_failure_to_rollback(sim, limit=4) == 4


def tail(query: CheckQuery) -> Measurement:
    """Mean within bounds, p99 8x stable's."""
    if query.check.builtin == "p99Latency":
        return Measurement(value=220.0, stable=27.0)
    return healthy(query)


def test_a_failed_p99_waits_for_tritons_window_before_the_next_counted_run() -> None:
    """Triton's p99 covers its own last 60 s whatever `window` says: a cold start stays in
    it for a minute, so the run that may count a second failure comes 60 s later."""
    sim = canary(window="4s", interval="1s", failure_limit=2, checks=[LATENCY, P99])
    sim.run_until(lambda s: (s.status.weights or None) is not None
                  and s.status.weights.candidate == 10)
    sim.measure = tail
    assert seconds_from_first_failure_to_rollback(sim, limit=60) == 60
    assert (sim.status.history or [])[0].reason.startswith("p99=")


def test_one_slow_minute_of_p99_does_not_roll_a_good_version_back() -> None:
    sim = canary(window="4s", interval="1s", failure_limit=2, checks=[LATENCY, P99])
    sim.run_until(lambda s: (s.status.weights or None) is not None
                  and s.status.weights.candidate == 10)
    cold = sim.now
    # Every run within Triton's minute after the cold start sees it in the p99.
    sim.measure = lambda q: tail(q) if (sim.now - cold).total_seconds() < 60 else healthy(q)
    sim.run_until(lambda s: s.status.phase in ("Ready", "RolledBack"), limit=300)
    assert phase(sim) == "Ready" and sim.status.stable_version == 2
