"""Turn a check and what Prometheus answered into Successful, Failed or Inconclusive."""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelship_api.modeldeployment import Check, CheckResult


@dataclass(frozen=True)
class Measurement:
    """What the queries of one check returned.

    `value` is the candidate's sample (None: no sample), `stable` the stable version's for
    checks relative to stable, `error` why Prometheus gave no answer (unreachable, timeout,
    bad query). NaN and infinities are kept as returned: they mean "no meaningful value"."""

    value: float | None = None
    stable: float | None = None
    error: str = ""
    # Requests served in the window (None: not measured, the analysis sets no minimum).
    requests: float | None = None
    stable_requests: float | None = None
    # Why there is no value to judge, when it is not a query's failure (a distance check
    # with too few samples, or a version without profile.json).
    inconclusive: str = ""


def _ratio(check: Check) -> bool:
    """Relative checks compare candidate / stable, except predictionDrift, whose relative
    value is already a distance between the two."""
    return check.relative_to_stable and check.builtin != "predictionDrift"


def threshold_text(check: Check) -> str:
    unit = "x stable" if _ratio(check) else (
        " psi vs stable" if check.relative_to_stable else "")
    parts = []
    if check.min is not None:
        parts.append(f"min {check.min:g}{unit}")
    if check.max is not None:
        parts.append(f"max {check.max:g}{unit}")
    return ", ".join(parts)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _stored(value: float | None) -> float | None:
    # The API server stores JSON, which has no NaN or infinity.
    return value if _finite(value) else None


def _describe(value: float | None) -> str:
    if value is None:
        return "no data"
    return "NaN (no requests in the window?)" if math.isnan(value) else f"{value:g}"


def _count(value: float | None) -> int:
    """A request count as stored: no sample (no series yet) is zero requests."""
    return round(value) if _finite(value) and value is not None else 0


def _too_few(check: Check, measurement: Measurement, min_requests: int) -> str:
    """Why the window holds too small a sample to judge, or ''."""
    if min_requests <= 0:
        return ""
    served = _count(measurement.requests)
    if served < min_requests:
        return (f"candidate served {served} requests in the window, fewer than minRequests "
                f"{min_requests}")
    if check.relative_to_stable:
        stable = _count(measurement.stable_requests)
        if stable < min_requests:
            return (f"stable version served {stable} requests in the window, fewer than "
                    f"minRequests {min_requests}")
    return ""


def verdict(check: Check, measurement: Measurement, at: str | None = None,
            min_requests: int = 0) -> CheckResult:
    """The result of one check. Anything short of a finite measured value is Inconclusive;
    a relative check also needs a finite, positive stable value, except that 0 against 0
    counts as equal. With `min_requests`, a window in which the candidate (or, for a relative
    check, the stable version) served fewer requests is Inconclusive: a handful of requests
    proves neither health nor failure."""
    result = CheckResult(name=check.name, result="Inconclusive", threshold=threshold_text(check),
                         at=at, stable_value=_stored(measurement.stable))
    if measurement.error:
        result.message = f"query failed: {measurement.error}"
        return result
    if measurement.inconclusive:
        result.message = measurement.inconclusive
        result.requests = _count(measurement.requests) if min_requests > 0 else None
        return result
    if min_requests > 0:
        result.requests = _count(measurement.requests)
        result.message = _too_few(check, measurement, min_requests)
        if result.message:
            return result
    if not _finite(measurement.value):
        result.message = f"candidate: {_describe(measurement.value)}"
        return result
    assert measurement.value is not None
    value = measurement.value
    if _ratio(check):
        stable = measurement.stable
        if not _finite(stable) or stable is None or stable < 0:
            result.message = f"stable version: {_describe(stable)}"
            return result
        if stable == 0:
            if value != 0:
                # x / 0 is unbounded (no value to store): above any max, never below a min.
                failed = check.max is not None
                result.result = "Failed" if failed else "Successful"
                result.message = f"candidate {value:g} against stable 0" if failed else ""
                return result
            value = 1.0
        else:
            value = value / stable
    result.value = value
    if check.max is not None and value > check.max:
        result.result = "Failed"
        result.message = f"{value:g} is above max {check.max:g}"
    elif check.min is not None and value < check.min:
        result.result = "Failed"
        result.message = f"{value:g} is below min {check.min:g}"
    else:
        result.result = "Successful"
    return result
