"""The rollout checks inputDrift, predictionDrift (absolute and relative to stable) and
nonFinite: what they query and how they are judged."""

from __future__ import annotations

from modelship.core.analysis.queries import QueryContext, check_query
from modelship.core.analysis.verdicts import verdict
from modelship.core.drift import checks, monitor, profiles
from modelship.core.drift.queries import VectorAnswer
from modelship_api.modeldeployment import Check
from modelship_api.monitoring import Monitoring
from tests.unit.drift.fixtures import answers, profile

CANDIDATE = monitor.Target("defects", 4, {"namespace": "prod"})
STABLE = monitor.Target("defects", 3, {"namespace": "prod"})
SPEC = Monitoring(min_samples=200)


def read() -> profiles.ProfileRead:
    p = profile()
    return profiles.ProfileRead(profile=p, digest=p.digest())


def judge(check: Check, ans: dict[str, VectorAnswer], r: profiles.ProfileRead | None = None,
          has_stable: bool = True, min_requests: int = 10) -> tuple[str, float | None, str]:
    m = checks.measure(check, SPEC, r or read(), has_stable, ans)
    result = verdict(check, m, min_requests=min_requests)
    return result.result, result.value, result.message


def prefixed(ans: dict[str, VectorAnswer], prefix: str = checks.CANDIDATE
             ) -> dict[str, VectorAnswer]:
    return {prefix + k: v for k, v in ans.items()}


INPUT = Check(name="inputs", builtin="inputDrift", max=0.25)
OUTPUTS = Check(name="outputs", builtin="predictionDrift", max=0.25)
RELATIVE = Check(name="vs-stable", builtin="predictionDrift", max=0.25, relative_to_stable=True)


def test_input_drift_is_the_worst_input_statistics_psi() -> None:
    p = profile()
    result, value, _ = judge(INPUT, prefixed(answers(p)))
    assert result == "Successful" and value is not None and value < 0.1
    result, value, message = judge(INPUT, prefixed(answers(p, dark=True)))
    assert result == "Failed" and value is not None and value > 1, message


def test_a_candidate_predicting_one_class_fails_prediction_drift_both_ways() -> None:
    p = profile()
    collapsed = answers(p, classes={"ok": 1000.0})
    assert judge(OUTPUTS, prefixed(collapsed))[0] == "Failed"
    stable = {"classes": VectorAnswer({"ok": 800.0, "scratch": 100.0, "dent": 100.0})}
    relative = {checks.CANDIDATE + "classes": VectorAnswer({"ok": 1000.0}),
                checks.STABLE + "classes": stable["classes"]}
    result, value, message = judge(RELATIVE, relative)
    assert result == "Failed" and value is not None and value > 0.25, message
    assert "psi vs stable" in verdict(RELATIVE, checks.measure(
        RELATIVE, SPEC, read(), True, relative)).threshold
    same = {checks.CANDIDATE + "classes": VectorAnswer({"ok": 780.0, "scratch": 110.0,
                                                        "dent": 110.0}),
            checks.STABLE + "classes": stable["classes"]}
    assert judge(RELATIVE, same)[0] == "Successful"


def test_relative_prediction_drift_needs_no_profile_and_absolute_says_it_cannot_run() -> None:
    missing = profiles.ProfileRead(missing="version 4 has no profile.json (published before "
                                   "profiles, or by a recipe that writes none)")
    assert checks.plan(OUTPUTS, SPEC, missing, CANDIDATE, STABLE, "1m") == []
    result, _, message = judge(OUTPUTS, {}, missing)
    assert result == "Inconclusive"
    assert message == ("cannot run: version 4 has no profile.json (published before "
                       "profiles, or by a recipe that writes none)")
    keys = [q.key for q in checks.plan(RELATIVE, SPEC, missing, CANDIDATE, STABLE, "1m")]
    assert keys == ["candidate:classes", "stable:classes"]
    relative = {checks.CANDIDATE + "classes": VectorAnswer({"ok": 1000.0}),
                checks.STABLE + "classes": VectorAnswer({"ok": 800.0, "dent": 200.0})}
    assert judge(RELATIVE, relative, missing)[0] == "Failed"


def test_too_few_samples_are_inconclusive_never_a_failure() -> None:
    p = profile()
    result, _, message = judge(INPUT, prefixed(answers(p, scale=0.1, dark=True)))
    assert result == "Inconclusive" and "fewer than minSamples 200" in message
    thin = {checks.CANDIDATE + "classes": VectorAnswer({"ok": 1000.0}),
            checks.STABLE + "classes": VectorAnswer({"ok": 50.0, "dent": 10.0})}
    result, _, message = judge(RELATIVE, thin)
    assert result == "Inconclusive" and "stable" in message


def test_queries_per_check() -> None:
    keys = {q.key for q in checks.plan(INPUT, SPEC, read(), CANDIDATE, STABLE, "1m")}
    assert keys == {"candidate:input_brightness", "candidate:input_contrast",
                    "candidate:input_saturated_fraction"}
    ctx = QueryContext(model="defects", namespace="prod", candidate=4, stable=3, window="1m",
                       matchers={"namespace": "prod"}, min_requests=10)
    assert check_query(INPUT, ctx).candidate == ""  # measured by the operator, not PromQL
    nonfinite = check_query(Check(name="nan", builtin="nonFinite", max=0), ctx)
    assert nonfinite.candidate == (
        'sum(increase(modelship_nonfinite_outputs_total{model="defects",version="4",'
        'namespace="prod"}[60s]))')
