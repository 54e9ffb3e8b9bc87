"""PromQL builders and user check templates."""

from __future__ import annotations

import pytest

from modelship.core.analysis import (
    DEFAULT_CHECKS,
    QueryContext,
    TemplateError,
    analysis_checks,
    check_errors,
    check_query,
    error_ratio_query,
    mean_latency_query,
    p99_latency_query,
    render_template,
    template_errors,
)
from modelship.core.analysis.queries import label_selector, promql_duration
from modelship_api.modeldeployment import Check
from tests.unit.rollout.sim import analysis

CTX = QueryContext(model="resnet", namespace="prod", candidate=2, stable=1, window="1m")


def test_error_ratio_counts_failures_from_triton_and_the_runner_without_double_counting() -> None:
    query = error_ratio_query("resnet", 2, "1m")
    sel = '{model="resnet",version="2"}'
    triton = f"(sum(increase(nv_inference_request_failure{sel}[60s])) or vector(0))"
    runner = f"(sum(increase(modelship_runner_errors_total{sel}[60s])) or vector(0))"
    assert query == (
        f'max(label_replace({triton}, "source", "triton", "", "") or '
        f'label_replace({runner}, "source", "runner", "", "")) / '
        f"(sum(increase(nv_inference_request_success{sel}[60s])) + {triton})"
    )


def test_error_ratio_denominator_has_no_fallback_so_no_traffic_is_no_data() -> None:
    # Only the failure terms default to 0: a version with no success series yields no
    # sample, and zero requests 0/0 = NaN, both Inconclusive.
    query = error_ratio_query("resnet", 2, "30s")
    denominator = query.split(" / ", 1)[1]
    assert denominator.startswith("(sum(increase(nv_inference_request_success")
    assert "nv_inference_request_success" not in denominator.split(" + ", 1)[1]


def test_mean_latency_is_duration_over_successes_in_milliseconds() -> None:
    assert mean_latency_query("resnet", 3, "90s") == (
        'sum(increase(nv_inference_request_duration_us{model="resnet",version="3"}[90s])) / '
        'sum(increase(nv_inference_request_success{model="resnet",version="3"}[90s])) / 1000'
    )


def test_p99_latency_is_the_slowest_pods_summary_quantile_in_milliseconds() -> None:
    assert p99_latency_query("resnet", 3, {"namespace": "prod"}) == (
        'max(nv_inference_request_summary_us{model="resnet",version="3",namespace="prod",'
        'quantile="0.99"}) / 1000'
    )


def test_p99_check_relative_to_stable_counts_requests_like_the_others() -> None:
    check = Check(name="tail", builtin="p99Latency", max=2, relative_to_stable=True)
    ctx = QueryContext(model="resnet", namespace="prod", candidate=2, stable=1, window="1m",
                       min_requests=10)
    queries = check_query(check, ctx)
    assert queries.candidate == p99_latency_query("resnet", 2)
    assert queries.stable == p99_latency_query("resnet", 1)
    mean = check_query(DEFAULT_CHECKS[1], ctx)
    assert queries.candidate_requests == mean.candidate_requests is not None
    assert queries.stable_requests == mean.stable_requests is not None


def test_extra_matchers_and_quoting() -> None:
    assert label_selector("m", 1, {"namespace": 'a"b\\'}) == (
        '{model="m",version="1",namespace="a\\"b\\\\"}'
    )
    assert 'namespace="prod"' in error_ratio_query("m", 1, "1m", {"namespace": "prod"})


@pytest.mark.parametrize(("text", "promql"), [
    ("1m", "60s"), ("1m30s", "90s"), ("1.5m", "90s"), ("500ms", "500ms"), ("1h", "3600s"),
    ("1.5s", "1500ms"),
])
def test_windows_become_durations_promql_accepts(text: str, promql: str) -> None:
    assert promql_duration(text) == promql


def test_zero_window_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 0"):
        promql_duration("0s")


def test_template_fills_every_placeholder() -> None:
    template = ('sum(rate(x{model="{{model}}",version="{{candidate}}",ns="{{namespace}}"}'
                '[{{ window }}])) / sum(rate(x{version="{{stable}}"}[{{window}}]))')
    assert render_template(template, {"model": "m", "candidate": "2", "stable": "1",
                                      "namespace": "prod", "window": "60s"}) == (
        'sum(rate(x{model="m",version="2",ns="prod"}[60s])) / '
        'sum(rate(x{version="1"}[60s]))'
    )


def test_unknown_placeholder_is_rejected_with_the_allowed_ones() -> None:
    with pytest.raises(TemplateError) as err:
        render_template("x{v='{{version}}'}", {})
    assert "unknown placeholder {{version}}" in str(err.value)
    assert "{{candidate}}" in str(err.value)


def test_unbalanced_braces_are_rejected() -> None:
    assert template_errors("x{v='{{candidate}'}") == [
        "unbalanced '{{' or '}}': placeholders are written {{name}}"
    ]
    assert template_errors('x{a="b"}') == []


def test_relative_user_check_asks_the_same_question_of_the_stable_version() -> None:
    check = Check(name="p99", query='q{version="{{candidate}}"}', max=1.2,
                  relative_to_stable=True)
    queries = check_query(check, CTX)
    assert queries.candidate == 'q{version="2"}'
    assert queries.stable == 'q{version="1"}'
    assert check_query(check.model_copy(update={"relative_to_stable": False}), CTX).stable is None


def test_builtin_relative_latency_queries_both_versions() -> None:
    queries = check_query(DEFAULT_CHECKS[1], CTX)
    assert queries.candidate == mean_latency_query("resnet", 2, "1m")
    assert queries.stable == mean_latency_query("resnet", 1, "1m")


def test_defaults_apply_when_no_checks_are_listed() -> None:
    assert [c.name for c in analysis_checks(analysis())] == ["error-ratio", "mean-latency"]
    own = Check(name="own", builtin="errorRatio", max=0.05)
    assert analysis_checks(analysis(checks=[own])) == [own]


def test_check_errors_name_the_check_and_duplicates() -> None:
    bad = analysis(checks=[
        Check(name="a", query="{{nope}}", max=1),
        Check(name="a", builtin="errorRatio", max=1),
    ])
    errors = check_errors(bad)
    assert errors[0].startswith("check a: unknown placeholder {{nope}}")
    assert errors[1] == "check name 'a' is used more than once"
    assert check_errors(analysis()) == []
