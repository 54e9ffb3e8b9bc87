"""What dates a served version whose profile.json does not reach the operator: the note its
init container leaves (the script itself runs in tests/unit/test_triton_manifests.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from modelship.core.drift import profiles

PROFILE_TIME = "2026-11-01T08:00:00Z"
LINEAGE_TIME = "2026-11-02T08:00:00+01:00"
PUBLISHED = datetime(2026, 11, 3, 8, tzinfo=UTC)


def read(**fields: object) -> profiles.ProfileRead:
    return profiles.parse(json.dumps(fields), 7)


def test_the_best_recorded_time_dates_the_version() -> None:
    at = str(int(PUBLISHED.timestamp()))
    assert read(profileTooLarge=9000, profileDataTime=PROFILE_TIME, lineageDataTime=LINEAGE_TIME,
                publishedAt=at).age_basis == profiles.AgeBasis(
        datetime(2026, 11, 1, 8, tzinfo=UTC), "ProfileDataTime")
    assert read(lineageDataTime=LINEAGE_TIME, publishedAt=at).age_basis == profiles.AgeBasis(
        datetime(2026, 11, 2, 7, tzinfo=UTC), "LineageDataTime")
    only = read(publishedAt=at)
    assert only.age_basis == profiles.AgeBasis(PUBLISHED, "PublishTime")
    assert only.age_basis is not None and not only.age_basis.exact
    assert only.undated == "version 7 has no lineage.json"


def test_a_time_that_is_not_one_leaves_the_next_source() -> None:
    r = read(lineageDataTime="2026-11-02T08:00:00", publishedAt=str(int(PUBLISHED.timestamp())))
    assert r.age_basis == profiles.AgeBasis(PUBLISHED, "PublishTime")
    assert r.undated == ("lineage.json of version 7 records dataTime '2026-11-02T08:00:00', "
                         "not an RFC 3339 time with a zone")


def test_no_publish_time_is_no_age_and_status_says_why() -> None:
    unread = read(publishedAt="")
    assert unread.age_basis is None
    assert unread.undated == ("version 7 has no lineage.json, and its publish time is unknown "
                              "(the modification times of its folder and model file could not "
                              "be read)")
    # Reproducible image builds stamp files with the epoch (or 1980): no publish time.
    assert read(publishedAt="9" * 40).age_basis is None  # no time a clock reads
    for normalized in ("0", "315532800"):
        r = read(publishedAt=normalized)
        assert r.age_basis is None and "is a normalized timestamp, not a publish time" in \
            r.undated
    # The note of an earlier modelship's init container holds the profile's size only.
    old = profiles.parse('{"profileTooLarge": 9000}', 7)
    assert old.age_basis is None and "9000 bytes" in old.missing
    assert "started by an earlier modelship" in old.undated
