"""Leader election's timing rules (modelship.core.leadership): who may take the Lease and
when, what is written, and when a leader must stop."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelship.core.leadership import (
    LeaseRecord,
    LeaseTiming,
    expires_in,
    held_spec,
    may_acquire,
    micro_time,
    released_spec,
    renew_budget,
    sight,
)

TIMING = LeaseTiming(duration_s=8, renew_period_s=2)
NOW = datetime(2026, 12, 2, 13, 10, 52, 123456, tzinfo=UTC)


def record(holder: str = "a-1", version: str = "1", transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder=holder, duration_s=8, acquire_time="2026-12-02T13:00:00.000000Z",
                       renew_time="2026-12-02T13:10:00.000000Z", transitions=transitions,
                       version=version)


def test_defaults_fail_over_well_under_15_seconds() -> None:
    # The slowest takeover: the standby read just before the last renewal, saw it one retry
    # period later, and sees the expiry one retry period late.
    worst = TIMING.duration_s + 2 * TIMING.retry_period_s
    assert worst <= 12
    assert TIMING.renew_deadline_s == 6


@pytest.mark.parametrize(("duration", "renew"), [(4, 2), (3, 2), (8, 0), (8, -1)])
def test_timing_that_leaves_no_room_to_renew_is_refused_naming_the_flags(
        duration: int, renew: float) -> None:
    with pytest.raises(ValueError, match="--lease-"):
        LeaseTiming(duration_s=duration, renew_period_s=renew)


def test_a_lease_read_from_the_api_server() -> None:
    rec = LeaseRecord.from_lease({
        "metadata": {"resourceVersion": "42"},
        "spec": {"holderIdentity": "op-0-ab12cd", "leaseDurationSeconds": 8,
                 "renewTime": "2026-12-02T13:10:00.000000Z", "leaseTransitions": 3}})
    assert (rec.holder, rec.duration_s, rec.transitions, rec.version) == (
        "op-0-ab12cd", 8, 3, "42")
    released = LeaseRecord.from_lease({"metadata": {"resourceVersion": "43"}, "spec": {}})
    assert released.holder == "" and released.transitions == 0


def test_no_lease_or_a_released_one_is_taken_at_once() -> None:
    assert may_acquire(sight(None, None, 100.0), "b-2", 100.0)
    released = sight(None, record(holder=""), 100.0)
    assert may_acquire(released, "b-2", 100.0)


def test_a_held_lease_is_taken_only_after_a_whole_duration_unchanged_as_seen_here() -> None:
    seen = sight(None, record(version="5"), 100.0)
    assert seen is not None
    assert not may_acquire(seen, "b-2", 107.9)
    assert expires_in(seen, 104.0) == pytest.approx(4.0)
    # The same version read again: the clock keeps running from the first sighting.
    again = sight(seen, record(version="5"), 106.0)
    assert again == seen
    assert may_acquire(again, "b-2", 108.0)


def test_a_renewal_restarts_the_clock_whatever_the_wall_clocks_say() -> None:
    seen = sight(None, record(version="5"), 100.0)
    renewed = sight(seen, record(version="6"), 107.0)
    assert renewed is not None and renewed.at == 107.0
    assert not may_acquire(renewed, "b-2", 110.0)
    assert may_acquire(renewed, "b-2", 115.0)


def test_own_lease_is_always_ours() -> None:
    assert may_acquire(sight(None, record(holder="b-2"), 0.0), "b-2", 0.0)


def test_acquiring_counts_a_transition_and_stamps_acquire_time() -> None:
    spec = held_spec(record(holder="a-1", transitions=4), "b-2", TIMING, NOW)
    assert spec == {"holderIdentity": "b-2", "leaseDurationSeconds": 8,
                    "acquireTime": "2026-12-02T13:10:52.123456Z",
                    "renewTime": "2026-12-02T13:10:52.123456Z", "leaseTransitions": 5}
    first = held_spec(None, "b-2", TIMING, NOW)
    assert first["leaseTransitions"] == 0


def test_renewing_keeps_acquire_time_and_transitions() -> None:
    spec = held_spec(record(holder="b-2", transitions=5), "b-2", TIMING, NOW)
    assert spec["acquireTime"] == "2026-12-02T13:00:00.000000Z"
    assert spec["renewTime"] == micro_time(NOW)
    assert spec["leaseTransitions"] == 5


def test_release_names_no_holder() -> None:
    spec = released_spec(record(holder="b-2", transitions=5), NOW)
    assert "holderIdentity" not in spec
    assert spec["leaseTransitions"] == 5 and spec["leaseDurationSeconds"] == 1


def test_the_leader_stops_a_renew_period_before_anyone_may_take_over() -> None:
    renewed_sent = 100.0
    assert renew_budget(renewed_sent, 105.9, TIMING) > 0
    assert renew_budget(renewed_sent, 106.0, TIMING) <= 0
    # A standby saw that renewal no earlier than it was sent.
    seen = sight(None, record(version="9"), renewed_sent)
    assert seen is not None
    must_stop_by = renewed_sent + TIMING.renew_deadline_s
    may_take_at = seen.at + seen.record.duration_s
    assert may_take_at - must_stop_by == TIMING.renew_period_s


def test_the_operator_command_refuses_a_lease_too_short_to_renew() -> None:
    from click.testing import CliRunner

    from modelship.cli import main

    result = CliRunner().invoke(main, ["operator", "--lease-duration=4",
                                       "--lease-renew-period=2"])
    assert result.exit_code == 2
    assert "--lease-duration (4s) must be more than twice --lease-renew-period (2.0s)" \
        in result.output
