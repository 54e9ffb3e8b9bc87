"""The user a container runs as: the image's `User` ("uid", "uid:gid", names looked up in
the image's /etc/passwd and /etc/group), overridden by securityContext runAsUser and
runAsGroup, with supplementalGroups and fsGroup as extra groups; runAsNonRoot checked as the
kubelet checks it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelship_dev.imagestore import Image
from modelship_dev.nodeagent.rootfs import find_file


class UserError(Exception):
    """The user cannot be determined, or runAsNonRoot forbids it."""


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    groups: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"uid": self.uid, "gid": self.gid, "groups": list(self.groups)}


def _table(lowers: list[Path], path: str) -> list[list[str]]:
    found = find_file(lowers, path)
    if found is None or not found.is_file():
        return []
    return [line.split(":") for line in found.read_text(errors="replace").splitlines()
            if line and not line.startswith("#")]


def _lookup_user(lowers: list[Path], name: str, image: str) -> tuple[int, int | None]:
    """(uid, its primary gid or None) of a name or number."""
    for row in _table(lowers, "/etc/passwd"):
        if len(row) >= 4 and (row[0] == name or row[2] == name):
            return int(row[2]), int(row[3])
    if name.isdigit():
        return int(name), None
    raise UserError(f"image {image}: user {name!r} is not in the image's /etc/passwd")


def _lookup_group(lowers: list[Path], name: str, image: str) -> int:
    if name.isdigit():
        return int(name)
    for row in _table(lowers, "/etc/group"):
        if len(row) >= 3 and row[0] == name:
            return int(row[2])
    raise UserError(f"image {image}: group {name!r} is not in the image's /etc/group")


def resolve(image: Image, lowers: list[Path], context: dict[str, Any]) -> User:
    """The uid, gid and extra groups of a container of `image` with securityContext
    `context` (the pod's and the container's merged)."""
    user_text, _, group_text = (image.user or "0").partition(":")
    run_as_user = context.get("runAsUser")
    if run_as_user is not None:
        uid, primary = int(run_as_user), None
        for row in _table(lowers, "/etc/passwd"):
            if len(row) >= 4 and row[2] == str(uid):
                primary = int(row[3])
    else:
        if context.get("runAsNonRoot") and not user_text.isdigit():
            raise UserError(f"container has runAsNonRoot and image {image.ref} has non-numeric "
                            f"user ({user_text}), cannot verify user is non-root")
        uid, primary = _lookup_user(lowers, user_text, image.ref)
    if context.get("runAsGroup") is not None:
        gid = int(context["runAsGroup"])
    elif group_text and run_as_user is None:
        gid = _lookup_group(lowers, group_text, image.ref)
    else:
        gid = primary if primary is not None else 0
    if context.get("runAsNonRoot") and uid == 0:
        raise UserError(f"container has runAsNonRoot and image {image.ref} will run as root")
    extra = [int(g) for g in context.get("supplementalGroups") or []]
    if context.get("fsGroup") is not None:
        extra.append(int(context["fsGroup"]))
    return User(uid, gid, tuple(dict.fromkeys([gid, *extra])))
