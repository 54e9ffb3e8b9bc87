"""Leader election on a coordination.k8s.io/v1 Lease: the timing rules, as pure functions.

Expiry is judged on the observer's own monotonic clock, from when it last saw the Lease
change (as client-go does), never by comparing the holder's renewTime with the local wall
clock: two nodes' wall clocks may disagree, but elapsed time agrees.

The holder stops acting once `renew_deadline_s` has passed since it sent its last renewal
that succeeded. A standby takes over no earlier than `duration_s` after it *saw* that
renewal, which is later still, so the holder has stopped `renew_period_s` before anyone
else can start: there are never two actors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class LeaseTiming:
    """How long a Lease lasts without renewal, and how often it is renewed (or, by a
    standby, read)."""

    duration_s: int = 8
    renew_period_s: float = 2.0

    def __post_init__(self) -> None:
        if self.renew_period_s <= 0:
            raise ValueError(f"--lease-renew-period must be positive, got {self.renew_period_s}")
        if self.duration_s <= 2 * self.renew_period_s:
            raise ValueError(
                f"--lease-duration ({self.duration_s}s) must be more than twice "
                f"--lease-renew-period ({self.renew_period_s}s): the leader must get several "
                "tries at renewing before it has to stop")

    @property
    def renew_deadline_s(self) -> float:
        """A leader that has not renewed for this long stops acting (one renew period
        before anyone else may take the Lease)."""
        return self.duration_s - self.renew_period_s

    @property
    def retry_period_s(self) -> float:
        """How often a standby reads the Lease, and a leader retries a failed renewal
        (a few times per renew period)."""
        return self.renew_period_s


@dataclass(frozen=True)
class LeaseRecord:
    """The parts of a Lease that election reads; `version` is its resourceVersion."""

    holder: str  # "" when released
    duration_s: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int
    version: str

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration_s=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            version=str((lease.get("metadata") or {}).get("resourceVersion") or ""),
        )


@dataclass(frozen=True)
class Sighting:
    """A version of the Lease and when (observer's monotonic seconds) it was first seen."""

    record: LeaseRecord
    at: float


def sight(previous: Sighting | None, record: LeaseRecord | None, now: float) -> Sighting | None:
    """The sighting after reading `record` at `now`: the clock restarts only when the Lease
    changed (a renewal, a new holder), so a dead holder's Lease ages."""
    if record is None:
        return None
    if previous is not None and previous.record.version == record.version:
        return previous
    return Sighting(record, now)


def may_acquire(sighting: Sighting | None, identity: str, now: float) -> bool:
    """True when `identity` may write itself as the holder: no Lease yet, a released one,
    its own, or one not renewed for its whole duration as seen from here."""
    if sighting is None:
        return True
    record = sighting.record
    return (not record.holder or record.holder == identity
            or now >= sighting.at + record.duration_s)


def expires_in(sighting: Sighting, now: float) -> float:
    """Seconds until the sighted holder's Lease runs out as seen from here (≤ 0: expired)."""
    return sighting.at + sighting.record.duration_s - now


def micro_time(when: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def held_spec(record: LeaseRecord | None, identity: str, timing: LeaseTiming,
              now: datetime) -> dict[str, Any]:
    """The Lease spec that makes `identity` the holder: an acquisition (a new acquireTime,
    one more transition when the holder changes) or a renewal of its own Lease."""
    ours = record is not None and record.holder == identity
    stamp = micro_time(now)
    transitions = 0 if record is None else record.transitions + (0 if ours else 1)
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": timing.duration_s,
        "acquireTime": record.acquire_time if ours and record is not None else stamp,
        "renewTime": stamp,
        "leaseTransitions": transitions,
    }


def released_spec(record: LeaseRecord, now: datetime) -> dict[str, Any]:
    """The Lease spec a leader writes when it stops on purpose: no holder, so a standby
    takes over at its next read instead of waiting for the Lease to run out."""
    stamp = micro_time(now)
    return {"leaseDurationSeconds": 1, "acquireTime": stamp, "renewTime": stamp,
            "leaseTransitions": record.transitions}


def renew_budget(renewed_at: float, now: float, timing: LeaseTiming) -> float:
    """Seconds the leader may still act without a new renewal (≤ 0: it must stop now).
    `renewed_at` is when it *sent* its last renewal that succeeded."""
    return renewed_at + timing.renew_deadline_s - now
