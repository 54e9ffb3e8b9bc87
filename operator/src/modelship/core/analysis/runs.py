"""One analysis run as a whole, and the counters that decide rollback or hold.

Successful clears both counters. Failed adds to the failure count and breaks a run of
inconclusive results. Inconclusive adds to its own count and leaves the failure count alone:
a Prometheus outage between two failures must not wipe the evidence that the candidate fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from modelship_api.modeldeployment import Analysis, AnalysisStatus, CheckResult, CheckResultValue


def aggregate(results: Sequence[CheckResult]) -> CheckResultValue:
    """Failed if any check failed, else Inconclusive if any was (or there were none)."""
    if any(r.result == "Failed" for r in results):
        return "Failed"
    if not results or any(r.result == "Inconclusive" for r in results):
        return "Inconclusive"
    return "Successful"


@dataclass(frozen=True)
class RunOutcome:
    """What the run asks of the rollout: carry on, roll back, or hold (pause)."""

    action: Literal["continue", "rollback", "hold"]
    reason: str = ""


def _summary(results: Sequence[CheckResult], kind: CheckResultValue) -> str:
    parts = []
    for r in results:
        if r.result != kind:
            continue
        shown = f"={r.value:g}" if r.value is not None else ""
        bound = f" ({r.threshold})" if r.threshold else ""
        detail = f": {r.message}" if r.message else ""
        parts.append(f"{r.name}{shown}{bound}{detail}")
    return "; ".join(parts)


def record_run(spec: Analysis, status: AnalysisStatus, results: Sequence[CheckResult],
               at: str) -> tuple[AnalysisStatus, RunOutcome]:
    """Fold one run into the counters and say whether a limit was reached."""
    new = status.model_copy(deep=True)
    new.checks = list(results)
    new.last_run_at = at
    result = aggregate(results)
    new.last_result = result
    if result == "Successful":
        new.consecutive_failures = 0
        new.consecutive_inconclusive = 0
        new.successful_runs += 1
        return new, RunOutcome("continue")
    if result == "Failed":
        new.consecutive_failures += 1
        new.consecutive_inconclusive = 0
        if new.consecutive_failures >= spec.failure_limit:
            return new, RunOutcome(
                "rollback",
                f"{_summary(results, 'Failed')} "
                f"({new.consecutive_failures} failed runs in a row, limit {spec.failure_limit})",
            )
        return new, RunOutcome("continue")
    new.consecutive_inconclusive += 1
    if new.consecutive_inconclusive >= spec.inconclusive_limit:
        why = (f"{_summary(results, 'Inconclusive') or 'no checks'} "
               f"({new.consecutive_inconclusive} inconclusive runs in a row, "
               f"limit {spec.inconclusive_limit})")
        return new, RunOutcome("rollback" if spec.inconclusive_policy == "Rollback" else "hold",
                               why)
    return new, RunOutcome("continue")
