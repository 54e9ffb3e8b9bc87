"""One statistic of one version scored against a reference (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from modelship.core.drift import live
from modelship.core.drift.distance import js_distance, psi
from modelship.core.drift.queries import VectorAnswer
from modelship_api.profile import CategoricalStatistic, NumericStatistic


@dataclass(frozen=True)
class Score:
    """PSI and JS distance over `samples` live samples; `inconclusive` or `unavailable` say
    why there is no score to judge."""

    psi: float | None = None
    js: float | None = None
    samples: float = 0.0
    inconclusive: str = ""
    unavailable: str = ""


def judge(aligned: live.Aligned, min_samples: int, what: str) -> Score:
    """The distances, or Inconclusive under `min_samples` live samples (and with no
    reference samples at all)."""
    samples = aligned.samples
    if samples < min_samples:
        return Score(samples=samples, inconclusive=f"{what}: {samples:.0f} samples in the "
                     f"window, fewer than minSamples {min_samples}")
    if sum(aligned.reference) <= 0:
        return Score(samples=samples, inconclusive=f"{what}: the reference has no samples")
    return Score(psi=psi(aligned.reference, aligned.live),
                 js=js_distance(aligned.reference, aligned.live), samples=samples)


def against_profile(name: str, statistic: NumericStatistic | CategoricalStatistic,
                    answer: VectorAnswer | None, min_samples: int) -> Score:
    """A statistic's live histogram (its query's answer) against the profile's."""
    if answer is None:
        return Score(inconclusive=f"{name}: not queried")
    if answer.error:
        return Score(inconclusive=f"{name}: query failed: {answer.error}")
    if not answer.values:
        return Score(inconclusive=f"{name}: no live series yet (no traffic, or the version "
                     "does not export it)")
    try:
        if isinstance(statistic, NumericStatistic):
            aligned = live.numeric(statistic.edges, statistic.counts, answer.values)
        else:
            aligned = live.categorical(statistic.categories, statistic.counts, answer.values)
    except live.BucketMismatchError as err:
        return Score(unavailable=f"{name}: {err}")
    return judge(aligned, min_samples, name)


def relative(candidate: VectorAnswer | None, stable: VectorAnswer | None,
             min_samples: int) -> Score:
    """The candidate's class distribution against stable's over the same window."""
    for who, answer in (("candidate", candidate), ("stable version", stable)):
        if answer is None or answer.error:
            why = answer.error if answer is not None else "not queried"
            return Score(inconclusive=f"{who} predictions: {why}")
    assert candidate is not None and stable is not None
    aligned = live.relative(candidate.values, stable.values)
    stable_samples = sum(max(v, 0.0) for v in stable.values.values())
    if stable_samples < min_samples:
        return Score(samples=aligned.samples, inconclusive=f"stable version: "
                     f"{stable_samples:.0f} predictions in the window, fewer than "
                     f"minSamples {min_samples}")
    return judge(aligned, min_samples, "candidate predictions")
