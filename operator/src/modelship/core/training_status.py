"""A TrainingRun's status from its Job and pods (pure).

Phases: Pending (including the scheduler's words when no node has a free GPU), Running,
Evaluating, Succeeded, Failed, Rejected. Finished phases are final: a Job later removed by
its TTL changes nothing, and the Job is never created again.

A training pod deleted while it runs (by a user, a drain, an eviction) is reported as it
happens (condition reason PodDeleted, a Warning event) and, when the Job fails for it, as
the run's reason: the pod is gone by then, so the condition is what remembers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from modelship.core.conditions import set_condition
from modelship.core.observations import pod_problems
from modelship_api.common import Condition
from modelship_api.training_result import TrainingResult
from modelship_api.trainingrun import TrainingRun, TrainingRunStatus

FINISHED = ("Succeeded", "Failed", "Rejected")
POD_DELETED = "PodDeleted"
EVALUATING_MARKER = "Evaluating"  # the trainer's pod is Ready while it evaluates (probe)


@dataclass
class TrainingPlan:
    create_job: bool
    status: TrainingRunStatus
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, msg)


def _job_condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == "trainer":
            state = (cs.get("state") or {}).get("terminated")
            return dict(state) if state else None
    return None


def _result(pods: list[dict[str, Any]]) -> tuple[TrainingResult | None, str]:
    """The newest parsable result among the trainer pods, or why there is none."""
    why = "the trainer left no termination message"
    ordered = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""),
                     reverse=True)
    for pod in ordered:
        state = _terminated(pod)
        if not state or not state.get("message"):
            continue
        try:
            return TrainingResult.parse(state["message"]), ""
        except ValidationError:
            tail = state["message"].strip().splitlines()[-1:] or [""]
            why = (f"exit code {state.get('exitCode')}: termination message is not a "
                   f"modelship result: {tail[0][:300]}")
    return None, why


def _set(status: TrainingRunStatus, phase: str, reason: str, message: str, gen: int,
         now: str) -> None:
    status.phase = phase  # type: ignore[assignment]
    status.message = message
    finished = phase in FINISHED
    status.conditions = set_condition(status.conditions, Condition(
        type="Complete", status="True" if phase == "Succeeded" else "False",
        reason=reason, message=message if finished else "", observed_generation=gen), now)
    status.conditions = set_condition(status.conditions, Condition(
        type="Running", status="True" if phase in ("Running", "Evaluating") else "False",
        reason=reason, message="" if finished else message, observed_generation=gen), now)


def plan(tr: TrainingRun, job: dict[str, Any] | None, pods: list[dict[str, Any]],
         now: str) -> TrainingPlan:
    old = tr.status
    st = old.model_copy(deep=True)
    gen = tr.metadata.generation
    st.observed_generation = gen
    out = TrainingPlan(create_job=False, status=st)
    if old.phase in FINISHED:
        return out
    if job is None:
        out.create_job = True
        st.job_name = st.job_name or None
        _set(st, "Pending", "JobCreated", "creating the training Job", gen, now)
    else:
        st.job_name = job["metadata"]["name"]
        st.start_time = (job.get("status") or {}).get("startTime") or st.start_time
        complete = _job_condition(job, "Complete")
        failed = _job_condition(job, "Failed")
        if complete or failed:
            _finish(st, complete, failed, pods, gen, now)
        else:
            _active(st, pods, gen, now)
    if _reason(st, "Running") == POD_DELETED != _reason(old, "Running"):
        out.events.append(("Warning", POD_DELETED, st.message))
    elif st.phase != old.phase:
        kind = "Warning" if st.phase == "Failed" else "Normal"
        out.events.append((kind, st.phase or "Unknown", st.message))
    return out


def _reason(status: TrainingRunStatus, type_: str) -> str:
    return next((c.reason for c in status.conditions or [] if c.type == type_), "")


def _message(status: TrainingRunStatus, type_: str) -> str:
    return next((c.message or "" for c in status.conditions or [] if c.type == type_), "")


def _deleted_pods(pods: list[dict[str, Any]]) -> list[str]:
    return [p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp")]


def _pod_was_deleted(st: TrainingRunStatus, pods: list[dict[str, Any]]) -> bool:
    """Whether the Job failed because its pod was deleted: seen while it stopped (the
    condition remembers it), still terminating, or gone altogether (a failed pod that
    ended by itself stays until the Job goes)."""
    return bool(_deleted_pods(pods)) or not pods or _reason(st, "Running") == POD_DELETED


def _finish(st: TrainingRunStatus, complete: dict[str, Any] | None,
            failed: dict[str, Any] | None, pods: list[dict[str, Any]], gen: int,
            now: str) -> None:
    done = complete or failed or {}
    st.completion_time = done.get("lastTransitionTime") or now
    result, why = _result(pods)
    if failed and failed.get("reason") != "DeadlineExceeded" and _pod_was_deleted(st, pods) \
            and (result is None or result.reason == "Terminated"):
        # A trainer stopped by SIGTERM reports "Terminated"; the deletion is the cause.
        detail = f"{failed.get('reason') or 'JobFailed'}: {failed.get('message') or ''}"
        _set(st, "Failed", POD_DELETED, "the training pod was deleted before it finished, "
             f"so it left no result (the Job: {detail.strip(': ')})", gen, now)
        return
    if result is not None:
        for key, value in result.status_fields().items():
            setattr(st, _snake(key), _typed(key, value))
        phase = result.outcome
        if complete and phase != "Succeeded":
            phase = "Failed"  # exit 0 must mean published; anything else is a bug
        _set(st, phase, result.reason, result.message or result.reason, gen, now)
        return
    if complete:
        _set(st, "Failed", "NoResult", f"the Job completed but {why}", gen, now)
        return
    assert failed is not None
    reason = failed.get("reason") or "JobFailed"
    detail = failed.get("message") or ""
    _set(st, "Failed", reason, f"{reason}: {detail}; {why}".strip("; "), gen, now)


def _active(st: TrainingRunStatus, pods: list[dict[str, Any]], gen: int, now: str) -> None:
    live = [p for p in pods if (p.get("status") or {}).get("phase") in ("Pending", "Running")]
    deleted = [p for p in live if p["metadata"].get("deletionTimestamp")]
    if deleted and len(deleted) == len(live):
        pod = deleted[-1]["metadata"]
        _set(st, st.phase if st.phase in ("Pending", "Running", "Evaluating") else "Running",
             POD_DELETED, f"the training pod {pod['name']} was deleted at "
             f"{pod['deletionTimestamp']} before it finished; it is stopping and the Job "
             "counts it as failed", gen, now)
        return
    if not live and _reason(st, "Running") == POD_DELETED:
        return  # the deleted pod is gone; the Job retries or fails next
    if not live:
        if any((p.get("status") or {}).get("phase") in ("Succeeded", "Failed") for p in pods):
            # The pod ended; the Job controller has yet to mark the Job finished. Going back
            # to Pending would only flap the phase and send a needless event.
            if st.phase not in ("Running", "Evaluating"):
                _set(st, "Running", "Training", "the training pod finished; waiting for the "
                     "Job to complete", gen, now)
            return
        _set(st, "Pending", "Starting", "waiting for the training pod", gen, now)
        return
    pod = live[-1]
    if pod["status"]["phase"] == "Pending":
        problems = pod_problems(pod)
        message = "; ".join(problems) if problems else "the training pod is starting"
        reason = "Unschedulable" if any(p.startswith("Unschedulable") for p in problems) \
            else "PodPending"
        _set(st, "Pending", reason, message, gen, now)
        return
    name = pod["metadata"]["name"]
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in pod["status"].get("conditions") or [])
    evaluating = f"training in pod {name} done; evaluating, exporting and gating"
    # Evaluating is a stage the pod reached (its progress marker stays), not its health: a
    # readiness probe that fails later, or the container exiting before the pod's phase
    # says so, leaves the phase where it is rather than flapping back to Running.
    if ready or (st.phase == "Evaluating" and _message(st, "Running") == evaluating):
        _set(st, "Evaluating", "Evaluating", evaluating, gen, now)
    else:
        _set(st, "Running", "Training", f"training in pod {name}", gen, now)


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _typed(key: str, value: Any) -> Any:
    """Status sub-objects back into their models (status_fields gives plain dicts)."""
    fields = TrainingRunStatus.model_fields
    name = _snake(key)
    if name in fields and isinstance(value, dict) and key not in ("metrics",):
        annotation = fields[name].annotation
        model = next((a for a in getattr(annotation, "__args__", ()) if hasattr(
            a, "model_validate")), None)
        if model is not None:
            return model.model_validate(value)
    return value
