"""Bless or veto: a pure function of the gate spec, this run's metrics and production's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from modelship_api.trainingrun import Gate, GateCheck, GateSlice, GateStatus
from modelship_trainer.slices import SliceMetrics

# Metrics are means over a finite split; without slack, 0.95 - 0.90 >= 0.05 can be False.
EPSILON = 1e-9


@dataclass(frozen=True)
class Production:
    """The version now in production, evaluated by this run on the same held-out split
    (and on each gate slice of it)."""

    version: int
    metrics: Mapping[str, float]
    slices: Mapping[str, SliceMetrics] = field(default_factory=dict)


def decide(gate: Gate | None, metrics: Mapping[str, float], production: Production | None,
           slices: Mapping[str, SliceMetrics] | None = None) -> GateStatus:
    """`slices`: the candidate's metrics on each of gate.slices (by name)."""
    checks: list[GateCheck] = []
    for t in (gate.thresholds or []) if gate else []:
        value = metrics.get(t.metric)
        if t.min is not None:
            checks.append(_bound(f"{t.metric}>={t.min:g}", value, t.min, lower=True))
        if t.max is not None:
            checks.append(_bound(f"{t.metric}<={t.max:g}", value, t.max, lower=False))
    if gate and gate.baseline:
        checks.append(_baseline(gate, metrics, production))
    for s in (gate.slices or []) if gate else []:
        checks += _slice(s, (slices or {}).get(s.name), production)
    failed = [c for c in checks if not c.passed]
    if failed:
        return GateStatus(verdict="Rejected", reason="; ".join(c.message for c in failed),
                          checks=checks)
    reason = f"all {len(checks)} checks passed" if checks else "no gate rules"
    return GateStatus(verdict="Blessed", reason=reason, checks=checks or None)


def _bound(name: str, value: float | None, bound: float, *, lower: bool,
           prefix: str = "") -> GateCheck:
    metric = name.removeprefix(prefix).split("<")[0].split(">")[0]
    if value is None:
        return GateCheck(name=name, passed=False, message=f"{prefix}{metric} was not measured")
    ok = value >= bound - EPSILON if lower else value <= bound + EPSILON
    word = "below the minimum" if lower else "above the maximum"
    message = "" if ok else f"{prefix}{metric} {value:.4f} is {word} {bound:g}"
    return GateCheck(name=name, passed=ok, value=value, message=message)


def _slice(s: GateSlice, found: SliceMetrics | None,
           production: Production | None) -> list[GateCheck]:
    """A slice too small to judge fails (never blesses); then its min and its regression."""
    prefix = f"slice {s.name}: "
    samples = found.samples if found else 0
    if samples < s.min_samples:
        return [GateCheck(
            name=f"{prefix}samples>={s.min_samples}", passed=False, value=float(samples),
            message=f"{prefix}{samples} samples, fewer than minSamples {s.min_samples}; "
                    "add (reviewed) samples to the slice or lower minSamples")]
    assert found is not None
    value = found.metrics.get(s.metric)
    checks: list[GateCheck] = []
    if s.min is not None:
        op = ">=" if s.higher_is_better else "<="
        checks.append(_bound(f"{prefix}{s.metric}{op}{s.min:g}", value, s.min,
                             lower=s.higher_is_better, prefix=prefix))
    if s.max_regression is not None:
        checks.append(_slice_regression(s, value, production))
    return checks


def _slice_regression(s: GateSlice, value: float | None,
                      production: Production | None) -> GateCheck:
    prefix = f"slice {s.name}: "
    if value is None:
        return GateCheck(name=f"{prefix}{s.metric} vs production", passed=False,
                         message=f"{prefix}{s.metric} was not measured")
    if production is None:
        return GateCheck(name=f"{prefix}{s.metric} vs production", passed=True, value=value,
                         message=f"{prefix}no version in production; nothing to compare")
    name = f"{prefix}{s.metric} vs v{production.version}"
    theirs = production.slices.get(s.name)
    prod = theirs.metrics.get(s.metric) if theirs else None
    if prod is None:
        return GateCheck(name=name, passed=False, value=value,
                         message=f"{prefix}{s.metric} of production v{production.version} "
                                 "was not measured")
    gain = value - prod if s.higher_is_better else prod - value  # > 0 means better
    assert s.max_regression is not None
    ok = gain >= -s.max_regression - EPSILON
    message = (f"{prefix}{s.metric} {value:.4f} vs production v{production.version} "
               f"{prod:.4f} (change {gain:+.4f}, may regress at most {s.max_regression:g})")
    return GateCheck(name=name, passed=ok, value=value, message=message)


def _baseline(gate: Gate, metrics: Mapping[str, float],
              production: Production | None) -> GateCheck:
    b = gate.baseline
    assert b is not None
    name = f"{b.metric} vs production"
    value = metrics.get(b.metric)
    if value is None:
        return GateCheck(name=name, passed=False, message=f"{b.metric} was not measured")
    if production is None:
        return GateCheck(name=name, passed=True, value=value,
                         message="no version in production; nothing to compare")
    prod = production.metrics.get(b.metric)
    if prod is None:
        return GateCheck(name=name, passed=False, value=value,
                         message=f"{b.metric} of production v{production.version} "
                                 "was not measured")
    gain = value - prod if b.higher_is_better else prod - value  # > 0 means better
    name = f"{b.metric} vs v{production.version}"
    if b.max_regression is not None:
        ok = gain >= -b.max_regression - EPSILON
        rule = f"may regress at most {b.max_regression:g}"
    else:
        ok = gain >= b.min_improvement - EPSILON
        rule = f"must improve by at least {b.min_improvement:g}"
    message = (f"{b.metric} {value:.4f} vs production v{production.version} {prod:.4f} "
               f"(change {gain:+.4f}, {rule})")
    return GateCheck(name=name, passed=ok, value=value, message=message)
