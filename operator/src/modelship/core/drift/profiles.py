"""How the operator gets a served version's profile.json (pure: pod status in, profile out).

The operator has no access to the model repository: it is a PersistentVolumeClaim (often
ReadWriteOnce) or a hostPath on the serving nodes, mounted by the Triton pods only. The pod
that serves a version reads its folder anyway: its init container (core.triton_manifests'
view script) copies profile.json into its termination message, which the kubelet keeps in
the pod's status (at most 4096 bytes), where the operator's pod cache already has it.

When the profile cannot travel whole (the version has none, or it is larger than a message
carries), the message is a note of what else dates the version, so that its model age is
still known: the profile's size and its dataTime, lineage.json's dataTime, and the publish
time (the older of the version folder's and its model file's modification times). Versions
published before profiles (or before lineage.json recorded a dataTime) have only the
publish time: the training data is older than the version, so that time bounds the data's
from above and the age it gives is a lower bound.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelship_api.monitoring import AgeSource
from modelship_api.profile import PROFILE_FILE, Profile
from modelship_api.trainingrun import LINEAGE_DATA_TIME, LINEAGE_FILE

# The init container that builds the pod's repository view (core.triton_manifests).
INIT_CONTAINER = "select-version"
# The kubelet keeps at most this much of a termination message.
MAX_MESSAGE_BYTES = 4096
# The note's keys (all but the first absent from notes of pods rendered by an earlier
# modelship): the profile's size in bytes and its dataTime ("" when it records none),
# lineage.json's dataTime ("" when the file records none; absent without the file), and the
# publish time in seconds since the epoch ("" when it could not be read).
TOO_LARGE_KEY = "profileTooLarge"
PROFILE_TIME_KEY = "profileDataTime"
LINEAGE_TIME_KEY = "lineageDataTime"
PUBLISHED_KEY = "publishedAt"
# The longest time value the note carries (an RFC 3339 time is at most 35 characters): the
# note stays far below MAX_MESSAGE_BYTES whatever a version folder holds.
MAX_TIME_CHARS = 64
# An earlier modification time is a normalized timestamp (reproducible image builds,
# some archives), not a publish time.
EARLIEST_PUBLISH = datetime(2000, 1, 1, tzinfo=UTC)
SOURCE_TEXT: dict[AgeSource, str] = {
    "ProfileDataTime": f"{PROFILE_FILE} dataTime",
    "LineageDataTime": f"{LINEAGE_FILE} {LINEAGE_DATA_TIME}",
    "PublishTime": "publish time",
}


@dataclass(frozen=True)
class AgeBasis:
    """The time a version's age counts from, and where it comes from: the newest training
    data's time, or (PublishTime) the version's publish time, which is later than its data's
    time, so the age it gives is a lower bound."""

    at: datetime
    source: AgeSource

    @property
    def exact(self) -> bool:
        return self.source != "PublishTime"


@dataclass(frozen=True)
class ProfileRead:
    """The version's profile, or why there is none (`missing`); without it, what dates the
    version (`dated`), and why its data time is unknown (`undated`, when `dated` is None or
    only the publish time)."""

    profile: Profile | None = None
    missing: str = ""
    digest: str | None = None
    dated: AgeBasis | None = None
    undated: str = ""

    @property
    def age_basis(self) -> AgeBasis | None:
        if self.profile is not None:
            return AgeBasis(self.profile.data_time, "ProfileDataTime")
        return self.dated


def _init_message(pod: Mapping[str, Any]) -> str | None:
    """The select-version container's termination message once it exited 0, else None."""
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if status.get("name") != INIT_CONTAINER:
            continue
        terminated = (status.get("state") or {}).get("terminated") or {}
        if terminated.get("exitCode") == 0:
            return str(terminated.get("message") or "")
    return None


def _time(value: object) -> datetime | None:
    """An RFC 3339 time with a zone, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def _epoch(value: object) -> datetime | None:
    """Seconds since the epoch (what `stat -c %Y` prints), else None."""
    text = str(value).strip()
    if not text.isdigit():
        return None
    try:
        return datetime.fromtimestamp(int(text), UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _earlier(version: int) -> str:
    return (f"the pods of version {version} were started by an earlier modelship, whose init "
            f"container carries {PROFILE_FILE} only: the version's next revision carries "
            "what else dates it")


def dating(note: Mapping[str, object], version: int) -> tuple[AgeBasis | None, str]:
    """What dates a version whose profile did not travel, best first (the profile's dataTime,
    lineage.json's, the publish time), and why its data time is unknown when it is."""
    found = _time(note.get(PROFILE_TIME_KEY))
    if found is not None:
        return AgeBasis(found, "ProfileDataTime"), ""
    lineage = note.get(LINEAGE_TIME_KEY)
    found = _time(lineage)
    if found is not None:
        return AgeBasis(found, "LineageDataTime"), ""
    if lineage is None:
        why = f"version {version} has no {LINEAGE_FILE}"
    elif lineage == "":
        why = f"{LINEAGE_FILE} of version {version} records no {LINEAGE_DATA_TIME}"
    else:
        why = (f"{LINEAGE_FILE} of version {version} records {LINEAGE_DATA_TIME} "
               f"{str(lineage)[:MAX_TIME_CHARS]!r}, not an RFC 3339 time with a zone")
    if PUBLISHED_KEY not in note:
        return None, _earlier(version)
    published = _epoch(note.get(PUBLISHED_KEY))
    if published is None:
        return None, (f"{why}, and its publish time is unknown (the modification times of "
                      "its folder and model file could not be read)")
    if published < EARLIEST_PUBLISH:
        return None, (f"{why}, and the modification time of its folder and model file "
                      f"({published.strftime('%Y-%m-%dT%H:%M:%SZ')}) is a normalized "
                      "timestamp, not a publish time")
    return AgeBasis(published, "PublishTime"), why


def parse(message: str, version: int) -> ProfileRead:
    """The profile in one init container's termination message, or the note of what dates
    the version without it."""
    absent = (f"version {version} has no {PROFILE_FILE} (published before profiles, or by a "
              "recipe that writes none)")
    if not message.strip():
        # What the init container of an earlier modelship left without a profile.
        return ProfileRead(missing=absent, undated=_earlier(version))
    try:
        note = json.loads(message)
    except ValueError:
        note = None
    if isinstance(note, dict) and (TOO_LARGE_KEY in note or PUBLISHED_KEY in note):
        dated, undated = dating(note, version)
        missing = (f"{PROFILE_FILE} of version {version} is {note[TOO_LARGE_KEY]} bytes, more "
                   f"than the {MAX_MESSAGE_BYTES} a pod's termination message carries to "
                   "the operator") if TOO_LARGE_KEY in note else absent
        return ProfileRead(missing=missing, dated=dated, undated=undated)
    try:
        profile = Profile.loads(message)
    except ValueError as err:
        first = str(err).splitlines()
        detail = "; ".join(line.strip() for line in first[:3])
        return ProfileRead(missing=f"{PROFILE_FILE} of version {version} is not a valid "
                           f"profile: {detail}")
    return ProfileRead(profile=profile, digest=profile.digest())


def from_pods(pods: Iterable[Mapping[str, Any]], version: int) -> ProfileRead:
    """The profile carried by any pod of `version` whose init container has finished."""
    for pod in pods:
        message = _init_message(pod)
        if message is not None:
            return parse(message, version)
    return ProfileRead(missing=f"no pod of version {version} has read its version folder yet")
