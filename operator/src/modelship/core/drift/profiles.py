"""How the operator gets a served version's profile.json (pure: pod status in, profile out).

The operator has no access to the model repository: it is a PersistentVolumeClaim (often
ReadWriteOnce) or a hostPath on the serving nodes, mounted by the Triton pods only. The pod
that serves a version reads its folder anyway: its init container (core.triton_manifests'
view script) copies profile.json into its termination message, which the kubelet keeps in
the pod's status (at most 4096 bytes), where the operator's pod cache already has it. A
version folder without profile.json leaves the message empty; a larger profile leaves a
note of its size instead of a truncated copy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelship_api.profile import PROFILE_FILE, Profile

# The init container that builds the pod's repository view (core.triton_manifests).
INIT_CONTAINER = "select-version"
# The kubelet keeps at most this much of a termination message.
MAX_MESSAGE_BYTES = 4096
TOO_LARGE_KEY = "profileTooLarge"


@dataclass(frozen=True)
class ProfileRead:
    """The version's profile, or why there is none (`missing`)."""

    profile: Profile | None = None
    missing: str = ""
    digest: str | None = None


def _init_message(pod: Mapping[str, Any]) -> str | None:
    """The select-version container's termination message once it exited 0, else None."""
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if status.get("name") != INIT_CONTAINER:
            continue
        terminated = (status.get("state") or {}).get("terminated") or {}
        if terminated.get("exitCode") == 0:
            return str(terminated.get("message") or "")
    return None


def parse(message: str, version: int) -> ProfileRead:
    """The profile in one init container's termination message."""
    if not message.strip():
        return ProfileRead(missing=f"version {version} has no {PROFILE_FILE} (published "
                           "before profiles, or by a recipe that writes none)")
    try:
        note = json.loads(message)
    except ValueError:
        note = None
    if isinstance(note, dict) and TOO_LARGE_KEY in note:
        return ProfileRead(missing=f"{PROFILE_FILE} of version {version} is "
                           f"{note[TOO_LARGE_KEY]} bytes, more than the {MAX_MESSAGE_BYTES} "
                           "a pod's termination message carries to the operator")
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
