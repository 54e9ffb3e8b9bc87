"""PSI and Jensen-Shannon distance over bucket counts, live histograms aligned with the
profile's buckets, and the hysteresis that raises and clears a drift."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelship.core.drift import hysteresis, live
from modelship.core.drift.distance import js_distance, proportions, psi

counts = st.lists(st.integers(min_value=0, max_value=10_000), min_size=2, max_size=30)


@given(counts)
def test_a_histogram_is_at_distance_zero_from_itself_and_any_rescaling(c: list[int]) -> None:
    assert psi(c, c) == pytest.approx(0.0, abs=1e-12)
    assert js_distance(c, c) == pytest.approx(0.0, abs=1e-6)


@given(st.data())
def test_distances_are_finite_non_negative_and_js_is_symmetric_and_bounded(
        data: st.DataObject) -> None:
    a = data.draw(counts)
    b = data.draw(st.lists(st.integers(0, 10_000), min_size=len(a), max_size=len(a)))
    assert math.isfinite(psi(a, b)) and psi(a, b) >= -1e-12
    assert psi(a, b) == pytest.approx(psi(b, a))  # PSI is symmetric in its two arguments
    assert 0.0 <= js_distance(a, b) <= 1.0
    assert js_distance(a, b) == pytest.approx(js_distance(b, a))


def test_an_empty_bucket_gives_a_large_finite_score_not_infinity() -> None:
    reference = [0, 0, 500, 500]
    shifted = [500, 500, 0, 0]
    assert math.isfinite(psi(reference, shifted)) and psi(reference, shifted) > 5
    assert js_distance(reference, shifted) > 0.95


def test_known_values() -> None:
    # Two buckets, 50/50 against 90/10 (no smoothing): PSI = 0.4 ln 1.8 + 0.4 ln 5.
    assert psi([50, 50], [90, 10], pseudo_count=0) == pytest.approx(
        0.4 * math.log(1.8) + 0.4 * math.log(5))
    assert js_distance([1, 0], [0, 1], pseudo_count=0 + 1e-12) == pytest.approx(1.0, abs=1e-6)


def test_sampling_noise_of_the_same_distribution_stays_under_the_default_thresholds() -> None:
    reference = [100, 300, 800, 1200, 800, 300, 100, 50, 20, 10]
    scale = sum(reference)
    # 400 live samples in the same proportions, rounded: noise-free, well under the band.
    live_counts = [round(c * 400 / scale) for c in reference]
    assert psi(reference, live_counts) < 0.1 and js_distance(reference, live_counts) < 0.1


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in buckets"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        proportions([1, -1])


def test_a_cumulative_prometheus_histogram_becomes_counts_on_the_profiles_edges() -> None:
    aligned = live.numeric([0.1, 0.2, 0.3], [1, 2, 3, 4],
                           {"0.1": 5.0, "0.2": 12.0, "0.30000000000000004": 12.0,
                            "+Inf": 20.0})
    assert aligned.live == [5.0, 7.0, 0.0, 8.0]
    assert aligned.reference == [1, 2, 3, 4] and aligned.samples == 20.0


def test_increase_extrapolation_never_makes_a_bucket_negative() -> None:
    aligned = live.numeric([1.0], [1, 1], {"1": 10.2, "+Inf": 10.1})
    assert aligned.live == [10.2, 0.0]


def test_other_bucket_edges_than_the_profiles_are_a_mismatch_named() -> None:
    with pytest.raises(live.BucketMismatchError, match=r"no bucket le=0\.2"):
        live.numeric([0.1, 0.2], [1, 1, 1], {"0.1": 1.0, "0.25": 2.0, "+Inf": 3.0})
    with pytest.raises(live.BucketMismatchError, match=r"\+Inf"):
        live.numeric([0.1], [1, 1], {"0.1": 1.0})


def test_a_class_the_profile_never_saw_gets_a_bucket_of_its_own() -> None:
    aligned = live.categorical(["ok", "scratch"], [90, 10], {"ok": 5.0, "dent": 3.0})
    assert aligned.reference == [90, 10, 0.0]
    assert aligned.live == [5.0, 0.0, 3.0] and aligned.samples == 8.0


def _run(directions: list[hysteresis.Direction], raise_after: int = 2,
         clear_after: int = 3) -> list[bool]:
    state, out = hysteresis.State(), []
    for i, d in enumerate(directions):
        state = hysteresis.advance(state, d, raise_after, clear_after, f"t{i}")
        out.append(state.drifted)
    return out


def test_hysteresis_raises_after_consecutive_evaluations_and_clears_after_more() -> None:
    assert _run(["raise", "raise", "hold", "clear", "clear", "clear"]) == \
        [False, True, True, True, True, False]


def test_one_high_score_or_an_inconclusive_gap_does_not_raise() -> None:
    assert _run(["raise", "clear", "raise", "none", "raise"]) == [False] * 5


def test_the_band_between_clear_and_raise_holds_a_drift() -> None:
    assert _run(["raise", "raise", *(["hold"] * 10)]) == [False] + [True] * 11
    assert hysteresis.direction(0.2, 0.05, 0.25, 0.1, 0.2, 0.1) == "hold"
    assert hysteresis.direction(0.05, 0.25, 0.25, 0.1, 0.2, 0.1) == "raise"
    assert hysteresis.direction(0.05, 0.05, 0.25, 0.1, 0.2, 0.1) == "clear"


def test_since_marks_the_transition() -> None:
    state = hysteresis.State()
    for i in range(3):
        state = hysteresis.advance(state, "raise", 3, 1, f"t{i}")
    assert state.drifted and state.since == "t2" and state.streak == 0
