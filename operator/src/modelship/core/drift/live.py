"""Live histograms from Prometheus answers, aligned with the profile's buckets (pure).

A numeric statistic is one query, `sum by (le) (increase(<family>_bucket{...}[w]))`: the
cumulative count per upper edge over the window. It becomes counts per bucket on exactly the
profile's edges. The predicted class is `sum by (class) (increase(...[w]))`; a class the
profile never saw gets a bucket of its own (reference count 0, which smoothing handles).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# How close a Prometheus `le` must be to a profile edge to be that edge: Prometheus prints
# float64 edges in shortest form, the profile stores them rounded to 6 decimals.
_EDGE_TOLERANCE = 1e-9


class BucketMismatchError(ValueError):
    """The live histogram's buckets are not the profile's (a runner exporting other edges)."""


@dataclass(frozen=True)
class Aligned:
    """Reference and live counts over the same buckets, and the live sample size."""

    reference: list[float]
    live: list[float]
    samples: float


def _le(text: str) -> float:
    try:
        return math.inf if text in ("+Inf", "Inf", "inf") else float(text)
    except ValueError as err:
        raise BucketMismatchError(f"a bucket has le={text!r}, not a number") from err


def numeric(edges: Sequence[float], reference: Sequence[float],
            cumulative: Mapping[str, float]) -> Aligned:
    """Counts per bucket of a live Prometheus histogram ({le: cumulative increase}) on the
    profile's `edges` (reference: len(edges) + 1 counts, the last above the last edge).
    increase() extrapolates each series on its own, so a cumulative count can dip below the
    one before it by a fraction: a bucket never counts less than zero."""
    by_edge = sorted((_le(le), value) for le, value in cumulative.items())
    if not by_edge or by_edge[-1][0] != math.inf:
        raise BucketMismatchError("the live histogram has no le=\"+Inf\" bucket")
    found: list[float] = []
    for edge in edges:
        match = [v for le, v in by_edge if abs(le - edge) <= _EDGE_TOLERANCE * max(1.0, abs(edge))]
        if not match:
            raise BucketMismatchError(
                f"the live histogram has no bucket le={edge:g} that the profile has: the "
                "version exports other bucket edges than its profile.json")
        found.append(match[0])
    found.append(by_edge[-1][1])
    live, previous = [], 0.0
    for value in found:
        live.append(max(value - previous, 0.0))
        previous = max(previous, value)
    return Aligned(reference=list(reference), live=live, samples=max(by_edge[-1][1], 0.0))


def categorical(categories: Sequence[str], reference: Sequence[float],
                live: Mapping[str, float]) -> Aligned:
    """Reference and live counts per category; live categories the profile lacks are
    appended with a reference count of 0."""
    extra = sorted(set(live) - set(categories))
    names = [*categories, *extra]
    return Aligned(reference=[*reference, *([0.0] * len(extra))],
                   live=[max(live.get(n, 0.0), 0.0) for n in names],
                   samples=sum(max(v, 0.0) for v in live.values()))


def relative(candidate: Mapping[str, float], stable: Mapping[str, float]) -> Aligned:
    """The candidate's class counts against the stable version's over the same window: the
    stable version stands in for the profile (relative prediction drift needs none)."""
    names = sorted(set(candidate) | set(stable))
    return Aligned(reference=[max(stable.get(n, 0.0), 0.0) for n in names],
                   live=[max(candidate.get(n, 0.0), 0.0) for n in names],
                   samples=sum(max(v, 0.0) for v in candidate.values()))
