"""How a pod ends, in the kubelet's order: each container's `lifecycle.preStop` hook, SIGTERM,
SIGKILL once the grace period is over; then the terminal phase and every container's
terminated state, written before the pod object is let go (a Job pod keeps its
`batch.kubernetes.io/job-tracking` finalizer until its phase is terminal)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from modelship_dev.nodeagent import probes
from modelship_dev.nodeagent.podstatus import ContainerState, now

DEFAULT_GRACE_S = 30.0
# The kubelet gives a container at least this long between SIGTERM and SIGKILL.
MIN_KILL_GRACE_S = 2.0
TERMINAL = ("Succeeded", "Failed")
HOOK_HANDLERS = ("exec", "httpGet", "tcpSocket")


def grace_period(pod: dict[str, Any]) -> float:
    """The deletion's grace period when the pod is being deleted (a second, shorter delete
    lowers it), else the pod's terminationGracePeriodSeconds."""
    grace = pod["metadata"].get("deletionGracePeriodSeconds")
    if grace is None:
        grace = pod["spec"].get("terminationGracePeriodSeconds")
    return DEFAULT_GRACE_S if grace is None else max(float(grace), 0.0)


async def run_pre_stop(container: dict[str, Any], target: probes.Target,
                       http: httpx.AsyncClient, limit_s: float) -> tuple[bool, str]:
    """The container's preStop hook (sleep, exec, httpGet or tcpSocket), cut off after
    `limit_s`; (succeeded, why not). A container without one passes at once."""
    hook = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if not hook:
        return True, ""
    if "sleep" in hook:
        await asyncio.sleep(min(float(hook["sleep"]["seconds"]), limit_s))
        return True, ""
    handler = {k: v for k, v in hook.items() if k in HOOK_HANDLERS}
    if not handler or limit_s <= 0:
        return False, "no time left in the grace period" if handler else \
            "preStop has no sleep, exec, httpGet or tcpSocket handler"
    return await probes.run({**handler, "timeoutSeconds": limit_s}, target, http)


def unknown_terminated(state: ContainerState) -> dict[str, Any]:
    """What the kubelet reports for a container that has no terminated state when its pod
    ends (it never started, or waited to restart): a failure, never a success."""
    return {"exitCode": 137, "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
            "finishedAt": now(),
            **({"containerID": f"local://{state.pid}"} if state.pid is not None else {})}


def end_states(states: list[ContainerState]) -> None:
    """Give every container a terminated state (the kubelet's TerminatePod)."""
    for state in states:
        if state.terminated is None:
            state.terminated = unknown_terminated(state)
            state.running_since, state.started, state.ready = None, False, False


def terminal_phase(phase: str, mains: list[ContainerState]) -> str:
    """The phase of a pod whose containers all stopped and will not restart, whatever its
    restartPolicy: Succeeded only when every container exited 0."""
    if phase in TERMINAL:
        return phase
    return "Succeeded" if all(s.exit_code == 0 for s in mains) else "Failed"
