"""RFC 3339 timestamps as status stores them, and arithmetic on them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def parse_time(value: datetime | str) -> datetime:
    """An aware UTC datetime from an RFC 3339 string or an aware datetime."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone: use UTC, e.g. ...Z")
    return moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z; sub-second digits only when present (intervals go down to
    1 s, so whole seconds alone would blur the schedule)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def after(moment: str, seconds: float) -> datetime:
    return parse_time(moment) + timedelta(seconds=seconds)


def elapsed(since: str, now: datetime) -> float:
    return (now - parse_time(since)).total_seconds()
