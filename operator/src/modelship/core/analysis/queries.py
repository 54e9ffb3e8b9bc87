"""PromQL for analysis checks: Triton-aware built-ins and user templates (pure: strings out).

Built-in checks read Triton's own per-model counters, selected by the `model` and `version`
labels Triton puts on them. Every query returns one sample or none; a query over a version
that served no requests yields no sample or NaN, which the verdict treats as Inconclusive,
so a candidate that nobody called can never look healthy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from modelship.core import names
from modelship.core.durations import parse_duration
from modelship.core.releases import Release
from modelship_api.modeldeployment import Analysis, Check

TRITON_SUCCESS = "nv_inference_request_success"
TRITON_FAILURE = "nv_inference_request_failure"
TRITON_DURATION_US = "nv_inference_request_duration_us"
# Triton's latency summary (`--metrics-config summary_latencies=true`, rendered by
# core.triton_manifests): quantiles over Triton's own sliding window, not over `window`.
TRITON_SUMMARY_US = "nv_inference_request_summary_us"
P99 = "0.99"
# How far back Triton's summary quantiles reach: prometheus-cpp's default max_age, which
# Triton 2.51 does not let anyone change (measured: a quantile turns NaN ~60 s after the
# last request).
TRITON_SUMMARY_WINDOW_S = 60.0
# Exported by modelship's Python-backend runner through Triton's custom-metrics API.
RUNNER_ERRORS = "modelship_runner_errors_total"

# Checks scored against a profile (or the stable version's predictions) from histograms: no
# single PromQL answers them; the operator queries their live statistics itself
# (core.drift.checks).
DISTANCE_BUILTINS = frozenset({"inputDrift", "predictionDrift"})
NONFINITE_OUTPUTS = "modelship_nonfinite_outputs_total"

PLACEHOLDERS = ("model", "candidate", "stable", "namespace", "window", "pods")
ANY_POD = ".+"  # {{pods}} where the ModelDeployment's name is not known
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")

DEFAULT_CHECKS = (
    Check(name="error-ratio", builtin="errorRatio", max=0.01),
    Check(name="mean-latency", builtin="meanLatency", max=1.5, relative_to_stable=True),
)


class Regex(str):
    """A label matcher value matched as a regular expression (`=~`), not literally."""

    __slots__ = ()


def release_matchers(deployment: str, release: Release,
                     other: Release | None) -> dict[str, str]:
    """Matchers that keep the series of `release` apart from those of `other` when both are
    revisions of one version (same model and version labels): the pod names of the
    ModelDeployment `deployment` (the `pod` label that Kubernetes service discovery and the
    chart's PodMonitor put on Triton's series). None are needed otherwise."""
    if not deployment or other is None or other == release or other.version != release.version:
        return {}
    return {"pod": Regex(names.release_pods(deployment, release))}


class TemplateError(ValueError):
    """A user check's PromQL template cannot be filled in."""


@dataclass(frozen=True)
class QueryContext:
    """What the queries of one rollout are about."""

    model: str
    namespace: str
    candidate: int
    stable: int | None
    window: str
    # Extra label matchers for built-in checks, e.g. {"namespace": ns} when the scrape
    # configuration attaches the pod's namespace to Triton's series.
    matchers: Mapping[str, str] = field(default_factory=dict)
    # Sample-size queries are made only when the analysis asks for a minimum.
    min_requests: int = 0
    # Extra matchers of the candidate's and the stable's built-in queries: when both are
    # revisions of one version, Triton's `version` label cannot tell them apart and their
    # pod names do (core.names.release_pods).
    candidate_matchers: Mapping[str, str] = field(default_factory=dict)
    stable_matchers: Mapping[str, str] = field(default_factory=dict)
    # {{pods}} of user templates: a regular expression of the judged release's pod names,
    # the only label that tells two revisions of one version apart.
    candidate_pods: str = ANY_POD
    stable_pods: str = ANY_POD


@dataclass(frozen=True)
class CheckQuery:
    """The queries of one check: the candidate's, and the stable version's when the check is
    relative to stable."""

    check: Check
    candidate: str
    stable: str | None = None
    # Requests served in the window: the candidate's, and the stable version's for a check
    # relative to stable. None when the analysis sets no minimum.
    candidate_requests: str | None = None
    stable_requests: str | None = None

    @property
    def name(self) -> str:
        return self.check.name


def analysis_checks(analysis: Analysis) -> list[Check]:
    """The checks to run: the spec's, or the defaults when it lists none."""
    return list(analysis.checks) if analysis.checks else list(DEFAULT_CHECKS)


def promql_duration(text: str) -> str:
    """A Go duration as PromQL accepts it: PromQL has no fractional units ("1.5m")."""
    millis = round(parse_duration(text) * 1000)
    if millis <= 0:
        raise ValueError(f"window {text!r} must be longer than 0")
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def label_selector(model: str, version: int, matchers: Mapping[str, str] | None = None) -> str:
    labels = {"model": model, "version": str(version), **(matchers or {})}
    return "{" + ",".join(f"{k}{'=~' if isinstance(v, Regex) else '='}{_quote(v)}"
                          for k, v in labels.items()) + "}"


def _increase(metric: str, selector: str, window: str) -> str:
    return f"sum(increase({metric}{selector}[{window}]))"


def error_ratio_query(model: str, version: int, window: str,
                      matchers: Mapping[str, str] | None = None) -> str:
    """Failed / all requests of one version over `window`.

    Failures are the larger of Triton's failure counter and the runner's own error counter.
    Triton 2.51 counts an error response returned by a Python-backend model's `execute()` as
    a *success* unless the model registered a custom metric family, and as a failure
    (reason BACKEND) when it did; the runner counts every error it returns either way. Taking
    the maximum (not the sum) never counts one error twice; a missing runner counter (other
    backends) or a missing failure series counts as zero. All requests are Triton's
    successes plus failures, which holds in both cases. No successes series gives no
    sample, and zero requests give 0/0 = NaN: both are Inconclusive, never Successful.
    """
    sel = label_selector(model, version, matchers)
    win = promql_duration(window)
    triton_failures = f"({_increase(TRITON_FAILURE, sel, win)} or vector(0))"
    runner_failures = f"({_increase(RUNNER_ERRORS, sel, win)} or vector(0))"
    # Distinct labels keep both samples through `or`, so max() sees both.
    failures = (
        f'max(label_replace({triton_failures}, "source", "triton", "", "") or '
        f'label_replace({runner_failures}, "source", "runner", "", ""))'
    )
    total = f"({_increase(TRITON_SUCCESS, sel, win)} + {triton_failures})"
    return f"{failures} / {total}"


def request_count_query(model: str, version: int, window: str,
                        matchers: Mapping[str, str] | None = None) -> str:
    """Requests one version answered (successes and failures) over `window`: the sample a
    run judges. No series gives no sample, which counts as zero requests."""
    sel = label_selector(model, version, matchers)
    win = promql_duration(window)
    return (f"{_increase(TRITON_SUCCESS, sel, win)} + "
            f"({_increase(TRITON_FAILURE, sel, win)} or vector(0))")


def mean_latency_query(model: str, version: int, window: str,
                       matchers: Mapping[str, str] | None = None) -> str:
    """Mean duration of successful requests of one version in milliseconds over `window`.

    Zero successes give 0/0 = NaN (Inconclusive)."""
    sel = label_selector(model, version, matchers)
    win = promql_duration(window)
    return (f"{_increase(TRITON_DURATION_US, sel, win)} / "
            f"{_increase(TRITON_SUCCESS, sel, win)} / 1000")


def p99_latency_query(model: str, version: int,
                      matchers: Mapping[str, str] | None = None) -> str:
    """99th percentile duration of successful requests of one version in milliseconds.

    Triton computes the quantile itself, over a sliding window of the last 60 s (prometheus-cpp's
    default: 5 buckets that rotate every 12 s; Triton 2.51 offers no setting for it), as of
    the last scrape; the analysis window plays no part. Quantiles of several pods cannot be
    merged, so this is the slowest pod's. A pod that served nothing in its window reports
    NaN, which max() passes over; all NaN (or no series) is Inconclusive.
    """
    sel = label_selector(model, version, {**(matchers or {}), "quantile": P99})
    return f"max({TRITON_SUMMARY_US}{sel}) / 1000"


def judged_seconds(check: Check, window: str) -> float:
    """How far back one run of `check` looks: the analysis window, and for p99Latency at
    least Triton's own summary window, whatever the analysis window says."""
    seconds = parse_duration(window)
    return max(seconds, TRITON_SUMMARY_WINDOW_S) if check.builtin == "p99Latency" else seconds


def template_errors(template: str) -> list[str]:
    """Why `template` cannot be filled in: unknown placeholders or stray braces."""
    errors = [
        f"unknown placeholder {{{{{name}}}}}: use "
        + ", ".join(f"{{{{{p}}}}}" for p in PLACEHOLDERS)
        for name in dict.fromkeys(_PLACEHOLDER.findall(template))
        if name not in PLACEHOLDERS
    ]
    rest = _PLACEHOLDER.sub("", template)
    if "{{" in rest or "}}" in rest:
        errors.append("unbalanced '{{' or '}}': placeholders are written {{name}}")
    return errors


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill the placeholders of a user check; TemplateError names what is wrong."""
    errors = template_errors(template)
    if errors:
        raise TemplateError("; ".join(errors))
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def check_errors(analysis: Analysis) -> list[str]:
    """Problems the API server cannot catch at admission, one message per problem."""
    out = []
    try:
        promql_duration(analysis.window)
    except ValueError as err:
        out.append(f"spec.rollout.analysis.window: {err}")
    for check in analysis_checks(analysis):
        if check.query is not None:
            out += [f"check {check.name}: {e}" for e in template_errors(check.query)]
    names = [c.name for c in analysis_checks(analysis)]
    out += [f"check name {n!r} is used more than once" for n in dict.fromkeys(names)
            if names.count(n) > 1]
    return out


def _template_values(ctx: QueryContext, version: int, pods: str) -> dict[str, str]:
    return {
        "model": ctx.model,
        "candidate": str(version),
        "stable": "" if ctx.stable is None else str(ctx.stable),
        "namespace": ctx.namespace,
        "window": promql_duration(ctx.window),
        "pods": pods,
    }


def _query_for(check: Check, ctx: QueryContext, version: int,
               side: Mapping[str, str], pods: str) -> str:
    matchers = {**ctx.matchers, **side}
    if check.builtin == "errorRatio":
        return error_ratio_query(ctx.model, version, ctx.window, matchers)
    if check.builtin == "meanLatency":
        return mean_latency_query(ctx.model, version, ctx.window, matchers)
    if check.builtin == "p99Latency":
        return p99_latency_query(ctx.model, version, matchers)
    if check.builtin == "nonFinite":
        # No series (a runner that does not count them) is no sample: Inconclusive.
        return _increase(NONFINITE_OUTPUTS, label_selector(ctx.model, version, matchers),
                         promql_duration(ctx.window))
    assert check.query is not None  # the CRD's CEL rule: exactly one of builtin or query
    return render_template(check.query, _template_values(ctx, version, pods))


def check_query(check: Check, ctx: QueryContext) -> CheckQuery:
    """The queries one check needs. For a check relative to stable, the stable query is the
    same query about the stable version (a user template is filled in with the stable
    version as {{candidate}}). A distance check has no PromQL of its own (candidate "")."""
    if check.builtin in DISTANCE_BUILTINS:
        return CheckQuery(check=check, candidate="")
    stable = stable_requests = candidate_requests = None
    relative = check.relative_to_stable and ctx.stable is not None
    if relative:
        assert ctx.stable is not None
        stable = _query_for(check, ctx, ctx.stable, ctx.stable_matchers, ctx.stable_pods)
    if ctx.min_requests > 0:
        candidate_requests = request_count_query(
            ctx.model, ctx.candidate, ctx.window, {**ctx.matchers, **ctx.candidate_matchers})
        if relative:
            assert ctx.stable is not None
            stable_requests = request_count_query(
                ctx.model, ctx.stable, ctx.window, {**ctx.matchers, **ctx.stable_matchers})
    return CheckQuery(check=check,
                      candidate=_query_for(check, ctx, ctx.candidate, ctx.candidate_matchers,
                                           ctx.candidate_pods),
                      stable=stable,
                      candidate_requests=candidate_requests, stable_requests=stable_requests)
