"""What is asked of Prometheus' parser about the user checks, and what its answers mean."""

from __future__ import annotations

from modelship.core.analysis import syntax
from modelship.core.analysis.syntax import ParseAnswer, UserQuery
from modelship_api.modeldeployment import Check
from tests.unit.rollout.sim import analysis

ADDRESS = "http://prometheus:9090"
CHECKS = [
    Check(name="errors", builtin="errorRatio", max=0.01),
    Check(name="tail", query='histogram_quantile(0.99, sum by (le) (rate(x{model="{{model}}",'
          'version="{{candidate}}",ns="{{namespace}}"}[{{window}}])))', max=1.5,
          relative_to_stable=True),
    Check(name="typo", query="sum(rate(y[{{window}}])", max=1),
]


def queries() -> list[UserQuery]:
    return syntax.user_queries(analysis(checks=CHECKS, window="1m"), "resnet", "prod")


def test_user_queries_are_filled_in_and_named_by_their_field() -> None:
    assert queries() == [
        UserQuery("spec.rollout.analysis.checks[1].query", "tail",
                  'histogram_quantile(0.99, sum by (le) (rate(x{model="resnet",version="1",'
                  'ns="prod"}[60s])))'),
        UserQuery("spec.rollout.analysis.checks[2].query", "typo", "sum(rate(y[60s])"),
    ]
    assert syntax.user_queries(analysis(), "resnet", "prod") == []  # the built-in defaults


def test_parse_errors_name_the_field_check_prometheus_and_the_fix() -> None:
    answers = [ParseAnswer(), ParseAnswer(error='invalid parameter "query": 1:17: parse error: '
                                               "unclosed left parenthesis")]
    check = syntax.record(ADDRESS, queries(), answers, "2026-12-02T13:00:00Z")
    assert check is not None and check.checked_at == "2026-12-02T13:00:00Z"
    assert [str(e) for e in syntax.parse_errors(check)] == [
        "spec.rollout.analysis.checks[2].query: check typo: Prometheus at "
        "http://prometheus:9090 cannot parse it (placeholders filled in): 1:17: parse error: "
        "unclosed left parenthesis; fix the PromQL"]


def test_queries_that_parse_are_recorded_without_errors() -> None:
    check = syntax.record(ADDRESS, queries(), [ParseAnswer(), ParseAnswer()], "t")
    assert check is not None and check.errors is None
    assert syntax.parse_errors(check) == [] and syntax.parse_errors(None) == []
    assert syntax.known(check, ADDRESS, queries())


def test_no_verdict_records_nothing_so_the_spec_stays_valid_and_is_asked_again() -> None:
    answers = [ParseAnswer(error="1:1: parse error"),
               ParseAnswer(unavailable="Prometheus at x unreachable: ConnectError")]
    assert syntax.record(ADDRESS, queries(), answers, "t") is None
    assert syntax.unanswered(answers) == "Prometheus at x unreachable: ConnectError"
    assert syntax.unanswered([ParseAnswer()]) == ""


def test_a_changed_query_or_address_is_asked_about_again() -> None:
    check = syntax.record(ADDRESS, queries(), [ParseAnswer(), ParseAnswer()], "t")
    assert not syntax.known(None, ADDRESS, queries())
    assert not syntax.known(check, "http://other:9090", queries())
    changed = syntax.user_queries(analysis(checks=CHECKS, window="2m"), "resnet", "prod")
    assert not syntax.known(check, ADDRESS, changed)
