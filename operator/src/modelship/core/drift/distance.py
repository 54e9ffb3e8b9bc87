"""Distances between two histograms over the same buckets (pure Python, no numpy).

The operator's runtime imports no numpy (the import contract in pyproject.toml keeps its
image small), and both distances are a few lines over bucket counts: PSI and the
Jensen-Shannon distance of the bucket proportions. Empty buckets are smoothed with a
pseudo-count so that a bucket the profile never saw gives a large, finite score instead of
an infinite one (log 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Added to every bucket's count before taking proportions (Laplace-style smoothing). Half a
# sample keeps an empty bucket's weight below that of any observed one.
PSEUDO_COUNT = 0.5


def proportions(counts: Sequence[float], pseudo_count: float = PSEUDO_COUNT) -> list[float]:
    """Smoothed bucket proportions; counts must be non-negative and not all absent."""
    if not counts:
        raise ValueError("a histogram needs at least one bucket")
    if any(c < 0 or not math.isfinite(c) for c in counts):
        raise ValueError(f"bucket counts must be finite and non-negative: {list(counts)}")
    total = sum(counts) + pseudo_count * len(counts)
    if total <= 0:
        raise ValueError("a histogram with no samples and no smoothing has no proportions")
    return [(c + pseudo_count) / total for c in counts]


def _check(reference: Sequence[float], live: Sequence[float]) -> None:
    if len(reference) != len(live):
        raise ValueError(f"histograms differ in buckets: {len(reference)} and {len(live)}")


def psi(reference: Sequence[float], live: Sequence[float],
        pseudo_count: float = PSEUDO_COUNT) -> float:
    """Population stability index: sum over buckets of (l - r) * ln(l / r). 0 for equal
    distributions; 0.1 is commonly read as a moderate shift and 0.25 as a major one."""
    _check(reference, live)
    r = proportions(reference, pseudo_count)
    q = proportions(live, pseudo_count)
    return sum((b - a) * math.log(b / a) for a, b in zip(r, q, strict=True))


def js_distance(reference: Sequence[float], live: Sequence[float],
                pseudo_count: float = PSEUDO_COUNT) -> float:
    """Jensen-Shannon distance in bits: the square root of the JS divergence with base-2
    logarithms, between 0 (equal) and 1 (disjoint). A metric, symmetric, always finite."""
    _check(reference, live)
    r = proportions(reference, pseudo_count)
    q = proportions(live, pseudo_count)
    divergence = 0.0
    for a, b in zip(r, q, strict=True):
        m = (a + b) / 2
        divergence += 0.5 * a * math.log2(a / m) + 0.5 * b * math.log2(b / m)
    return math.sqrt(max(divergence, 0.0))
