"""Runs the real trainer command (shared by the trainer tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from modelship_api.training_result import ENV_PROGRESS_MARKER

SMALL = ["--generated", "samples=600", "--hp", "epochs=2", "--threads", "2"]


@dataclass
class TrainerRun:
    returncode: int
    termination_message: str
    stdout: str
    stderr: str


def run_trainer(args: list[str], termination_log: Path,
                env: dict[str, str] | None = None, timeout: float = 180) -> TrainerRun:
    # The progress marker goes beside the termination log, not into the host's /tmp where a
    # training pod's readiness probe looks for it.
    marker = {ENV_PROGRESS_MARKER: str(termination_log.with_name("evaluating"))}
    proc = subprocess.run(
        [sys.executable, "-m", "modelship_trainer", "--termination-log", str(termination_log),
         *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **marker, **(env or {})},
    )
    text = termination_log.read_text() if termination_log.exists() else ""
    return TrainerRun(proc.returncode, text, proc.stdout, proc.stderr)
