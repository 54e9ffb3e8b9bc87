"""Process groups identified safely: a pid is only signalled while its start time is the one
recorded when it was started, so a recycled pid is never hit."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def start_time(pid: int) -> int | None:
    """The process' start time in clock ticks since boot, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may contain spaces, so count after its ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def group_alive(pgid: int, started: int) -> bool:
    """Whether anything of the group started at `started` still runs (zombies excluded)."""
    for pid in _group_members(pgid):
        begun = start_time(pid)
        if begun is not None and begun >= started and not _zombie(pid):
            return True
    return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def signal_group(pgid: int, started: int, sig: signal.Signals) -> None:
    """Signal the group if it is still the one started at `started`."""
    if group_alive(pgid, started):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
