"""A pod's status as a kubelet reports it, rendered from what the agent observed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MAX_MESSAGE = 4096
LOG_TAIL_LINES = 80
LOG_TAIL_BYTES = 2048


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerState:
    name: str
    image: str
    waiting: tuple[str, str] = ("ContainerCreating", "")  # (reason, message)
    running_since: str | None = None
    terminated: dict[str, Any] | None = None
    last_terminated: dict[str, Any] | None = None
    restart_count: int = 0
    started: bool = False
    ready: bool = False
    pid: int | None = None
    image_id: str = ""

    def run(self, pid: int) -> None:
        if self.terminated is not None:
            self.last_terminated = self.terminated
        self.terminated, self.pid, self.running_since = None, pid, now()
        self.started = self.ready = False

    def finish(self, exit_code: int, message: str) -> None:
        self.terminated = {"exitCode": exit_code,
                           "reason": "Completed" if exit_code == 0 else "Error",
                           "startedAt": self.running_since or now(), "finishedAt": now(),
                           "containerID": f"local://{self.pid}"}
        if message:
            self.terminated["message"] = message
        self.running_since, self.started, self.ready = None, False, False

    def wait(self, reason: str, message: str = "") -> None:
        if self.terminated is not None:
            self.last_terminated, self.terminated = self.terminated, None
        self.waiting, self.running_since, self.ready = (reason, message), None, False

    @property
    def exit_code(self) -> int | None:
        return None if self.terminated is None else int(self.terminated["exitCode"])

    def to_api(self) -> dict[str, Any]:
        state: dict[str, Any]
        if self.terminated is not None:
            state = {"terminated": self.terminated}
        elif self.running_since is not None:
            state = {"running": {"startedAt": self.running_since}}
        else:
            reason, message = self.waiting
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        out: dict[str, Any] = {
            "name": self.name, "image": self.image, "imageID": self.image_id, "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
            "ready": self.ready, "started": self.started, "restartCount": self.restart_count,
        }
        if self.pid is not None:
            out["containerID"] = f"local://{self.pid}"
        return out


def termination_message(message_file: Path, log_file: Path, log_offset: int, exit_code: int,
                        fallback_to_logs: bool) -> str:
    """The file's content (at most 4 KiB); when the policy says so, the tail of what this run
    of the container logged (from `log_offset` on: the log spans every restart)."""
    try:
        with message_file.open("rb") as f:
            message = f.read(MAX_MESSAGE).decode(errors="replace")
    except OSError:
        message = ""
    if message or exit_code == 0 or not fallback_to_logs:
        return message
    try:
        with log_file.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(log_offset, f.tell() - 64 * 1024))
            lines = f.read().decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return ""
    return "\n".join(lines)[-LOG_TAIL_BYTES:]


@dataclass
class Conditions:
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)  # type: (status, at)

    def set(self, kind: str, value: bool) -> None:
        status = "True" if value else "False"
        if self.transitions.get(kind, ("", ""))[0] != status:
            self.transitions[kind] = (status, now())

    def to_api(self, reasons: dict[str, str]) -> list[dict[str, Any]]:
        out = []
        for kind, (status, at) in self.transitions.items():
            cond = {"type": kind, "status": status, "lastProbeTime": None,
                    "lastTransitionTime": at}
            if status == "False" and kind in reasons:
                cond["reason"] = reasons[kind]
            out.append(cond)
        return out
