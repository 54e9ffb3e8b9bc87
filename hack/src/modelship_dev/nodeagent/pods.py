"""One pod's life on the local node: sandbox, init containers in order, containers with
probes and restarts, status reports, and graceful termination."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Pod, PodStatus
from lightkube.types import PatchType

from modelship_dev.nodeagent import (
    containers,
    probes,
    processes,
    projected,
    pulling,
    sandbox,
    termination,
)
from modelship_dev.nodeagent.podstatus import (
    Conditions,
    ContainerState,
    now,
    termination_message,
)

log = logging.getLogger(__name__)
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
# How long a failed pull shows ErrImagePull before the back-off shows ImagePullBackOff (the
# kubelet's next pod sync).
PULL_ERROR_SHOWN_S = 1.0
# After its containers are stopped, a pod's task has this long to record their exits.
RECORD_EXITS_S = 10.0
STATUS_ATTEMPTS = 5


@dataclass
class Context:
    """What every pod runner shares with the agent."""
    client: AsyncClient
    http: httpx.AsyncClient
    state_dir: Path
    host_ip: str
    service_env: dict[str, str]  # KUBERNETES_SERVICE_HOST/PORT: the API server for pods


class PodRunner:
    def __init__(self, ctx: Context, pod: dict[str, Any]) -> None:
        self.ctx, self.pod = ctx, pod
        spec = pod["spec"]
        self.policy = spec.get("restartPolicy", "Always")
        self.inits = [ContainerState(c["name"], c.get("image", "")) for c in
                      spec.get("initContainers") or []]
        for state in self.inits:
            state.waiting = ("PodInitializing", "")
        self.mains = [ContainerState(c["name"], c.get("image", "")) for c in spec["containers"]]
        self.box: sandbox.Sandbox | None = None
        self.phase = "Pending"
        self.start_time = now()
        self.conditions = Conditions()
        self.terminating = False
        self._terminating = asyncio.Event()  # wakes a container waiting to restart
        self.grace_override: float | None = None
        self.targets: dict[str, probes.Target] = {}  # running containers, for preStop hooks
        self._published: dict[str, Any] | None = None
        self._lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        meta = self.pod["metadata"]
        return f"{meta['namespace']}/{meta['name']}"

    @property
    def grace(self) -> float:
        """The grace period now (a shorter delete or the agent's shutdown lowers it)."""
        grace = termination.grace_period(self.pod)
        return grace if self.grace_override is None else min(grace, self.grace_override)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"pod {self.name}")
        self.task.add_done_callback(self._report)

    def _report(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("pod %s failed in the agent", self.name, exc_info=task.exception())

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        self.conditions.set("PodScheduled", True)
        self.conditions.set("PodReadyToStartContainers", self.box is not None)
        initialized = all(s.exit_code == 0 for s in self.inits)
        self.conditions.set("Initialized", initialized)
        ready = self.phase == "Running" and all(s.ready for s in self.mains)
        self.conditions.set("ContainersReady", ready)
        self.conditions.set("Ready", ready)
        not_ready = "PodCompleted" if self.phase in ("Succeeded", "Failed") \
            else "ContainersNotReady"
        # Pending until a container was created, as the kubelet reports it (images are
        # still being pulled, or cannot be).
        phase = "Pending" if self.phase == "Running" and all(
            s.pid is None for s in self.mains) else self.phase
        status: dict[str, Any] = {
            "phase": phase, "startTime": self.start_time, "hostIP": self.ctx.host_ip,
            "hostIPs": [{"ip": self.ctx.host_ip}],
            "conditions": self.conditions.to_api({
                "Initialized": "ContainersNotInitialized",
                "ContainersReady": not_ready, "Ready": not_ready}),
            "containerStatuses": [s.to_api() for s in self.mains],
        }
        if self.inits:
            status["initContainerStatuses"] = [s.to_api() for s in self.inits]
        if self.box is not None:
            status["podIP"] = self.box.net.ip
            status["podIPs"] = [{"ip": self.box.net.ip}]
        return status

    async def publish(self) -> bool:
        """Write the status when it changed; a pod already gone is no error. False when the
        write failed."""
        async with self._lock:
            status = self.status()
            if status == self._published:
                return True
            meta = self.pod["metadata"]
            try:
                await self.ctx.client.patch(PodStatus, meta["name"], {"status": status},
                                            namespace=meta["namespace"],
                                            patch_type=PatchType.MERGE)
                self._published = status
            except ApiError as err:
                if err.status.code != 404:
                    log.warning("status of %s not written: %s", self.name, err)
                    return False
            except httpx.HTTPError as err:
                log.warning("status of %s not written: %s", self.name, err)
                return False
            return True

    # -- lifecycle -------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            self.box = await asyncio.to_thread(sandbox.create, self.ctx.state_dir, self.pod,
                                               self.ctx.host_ip)
        except (OSError, RuntimeError) as err:
            log.error("sandbox for %s failed: %s", self.name, err)
            for state in self.mains:
                state.wait("CreatePodSandboxError", str(err))
            await self.publish()
            return
        try:
            for volume in self.pod["spec"].get("volumes") or []:
                if "projected" in volume:
                    files = await projected.contents(self.ctx.client, self.pod, volume)
                    await asyncio.to_thread(projected.write,
                                            self.box.projected_dir(volume["name"]), files)
        except (ApiError, projected.ProjectionError, KeyError) as err:
            for state in self.inits + self.mains:
                state.wait("CreateContainerConfigError", f"projected volume: {err}")
            await self.publish()
            return
        await self.publish()
        specs = self.pod["spec"]
        for spec, state in zip(specs.get("initContainers") or [], self.inits, strict=True):
            if not await self._supervise(spec, state, init=True):
                return
        self.phase = "Running"
        results = await asyncio.gather(*[
            self._supervise(spec, state, init=False)
            for spec, state in zip(specs["containers"], self.mains, strict=True)])
        if not self.terminating and all(r is not None for r in results):
            self.phase = "Succeeded" if all(s.exit_code == 0 for s in self.mains) else "Failed"
            await self.publish()
            await asyncio.to_thread(self._destroy_sandbox)

    async def _supervise(self, spec: dict[str, Any], state: ContainerState,
                         init: bool) -> bool | None:
        """Run a container until it is done by the restart policy: True when it finished
        successfully, False when it failed for good, None when the pod is terminating."""
        backoff = BACKOFF_START_S
        while True:
            code = await self._run_once(spec, state)
            if self.terminating:
                return None
            if code is None:
                # It could not be created (its image is missing, CreateContainerConfigError):
                # the kubelet tries again with back-off, so an image built or a hostPath
                # made later is used.
                if state.waiting[0] == "ErrImagePull":
                    if not await self._back_off(PULL_ERROR_SHOWN_S):
                        return None
                    state.wait("ImagePullBackOff", f'Back-off pulling image "{state.image}": '
                                                   f"{state.waiting[1]}")
                    await self.publish()
                if not await self._back_off(backoff):
                    return None
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            policy = "OnFailure" if init and self.policy == "Always" else self.policy
            if code == 0 and (init or policy != "Always"):
                return True
            if policy == "Never":
                if init:
                    self.phase = "Failed"
                    await self.publish()
                    await asyncio.to_thread(self._destroy_sandbox)
                return code == 0
            state.wait("CrashLoopBackOff",
                       f"back-off {backoff:g}s restarting failed container={state.name}")
            await self.publish()
            if not await self._back_off(backoff):
                return None
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            state.restart_count += 1

    async def _back_off(self, seconds: float) -> bool:
        """Wait before the next try; False when the pod started terminating meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._terminating.wait(), seconds)
        return not self.terminating

    async def _run_once(self, spec: dict[str, Any], state: ContainerState) -> int | None:
        """Start the container, probe it, wait for it: its exit code (None: cannot start)."""
        assert self.box is not None
        try:
            pulled = await asyncio.to_thread(pulling.ensure, spec)
        except pulling.PullError as err:
            state.wait(err.reason, str(err))
            await self.publish()
            return None
        state.image_id = pulled.image_id
        try:
            launch = await asyncio.to_thread(containers.launch_spec, self.pod, spec, self.box,
                                             pulled.image, pulled.lowers, self.ctx.service_env)
        except containers.ConfigError as err:
            state.wait(err.reason, str(err))
            await self.publish()
            return None
        if self.terminating:
            return None
        log_file = self.box.log_file(state.name)
        log_offset = log_file.stat().st_size if log_file.exists() else 0
        proc = await containers.start(launch, self.box, state.name)
        self.box.add_group(state.name, proc.pid)
        state.run(proc.pid)
        if not any(k in spec for k in ("startupProbe", "readinessProbe")):
            state.started = state.ready = True
        elif "startupProbe" not in spec:
            state.started = True
        await self.publish()
        target = probes.Target(self.box.net.ip, {p["name"]: int(p["containerPort"]) for p in
                                                 spec.get("ports") or [] if p.get("name")},
                               proc.pid, launch["env"], launch["user"])
        self.targets[state.name] = target
        prober = asyncio.create_task(self._probe(spec, state, target))
        try:
            rc = await proc.wait()
        finally:
            self.targets.pop(state.name, None)
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
        # Whatever the main process left behind in its group goes with it.
        pgid, started = self.box.groups[state.name]
        processes.signal_group(pgid, started, signal.SIGKILL)
        code = rc if rc >= 0 else 128 - rc
        message = termination_message(
            self.box.termination_file(state.name), log_file, log_offset, code,
            spec.get("terminationMessagePolicy") == "FallbackToLogsOnError")
        state.finish(code, message)
        await self.publish()
        return code

    async def _probe(self, spec: dict[str, Any], state: ContainerState,
                     target: probes.Target) -> None:
        if "startupProbe" in spec:
            async def on_startup(passed: bool, failed: bool, why: str) -> bool:
                if failed:
                    log.info("%s/%s startup probe failed: %s", self.name, state.name, why)
                    await self._kill(state)
                    return False
                if passed:
                    state.started = True
                    state.ready = "readinessProbe" not in spec
                    await self.publish()
                return not passed
            await self._probe_loop(spec["startupProbe"], target, on_startup)
            if not state.started:
                return
        loops = []
        if "livenessProbe" in spec:
            async def on_liveness(passed: bool, failed: bool, why: str) -> bool:
                if failed:
                    log.info("%s/%s liveness probe failed: %s", self.name, state.name, why)
                    await self._kill(state)
                return not failed
            loops.append(self._probe_loop(spec["livenessProbe"], target, on_liveness))
        if "readinessProbe" in spec:
            async def on_readiness(passed: bool, failed: bool, why: str) -> bool:
                if passed != state.ready and (passed or failed):
                    state.ready = passed
                    await self.publish()
                return True
            loops.append(self._probe_loop(spec["readinessProbe"], target, on_readiness))
        await asyncio.gather(*loops)

    async def _probe_loop(self, probe: dict[str, Any], target: probes.Target,
                          on_result: Callable[[bool, bool, str], Awaitable[bool]]) -> None:
        """Probe every period; `on_result(passed, failed, why)` says whether to go on."""
        settings = probes.Settings.of(probe)
        await asyncio.sleep(settings.initial_delay)
        successes = failures = 0
        while True:
            ok, why = await probes.run(probe, target, self.ctx.http)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if not await on_result(successes >= settings.success_threshold,
                                   failures >= settings.failure_threshold, why):
                return
            await asyncio.sleep(settings.period)

    async def _kill(self, state: ContainerState) -> None:
        """A failed liveness or startup probe: the container stops as on a deletion
        (preStop hook, SIGTERM, SIGKILL once the grace period is over), as the kubelet's do."""
        spec: dict[str, Any] = next(
            (c for c in self.pod["spec"]["containers"] if c["name"] == state.name), {})
        await self._stop_container(spec, state, asyncio.get_running_loop().time())

    def _destroy_sandbox(self) -> None:
        if self.box is not None and self.box.dir.exists():
            sandbox.destroy(self.box)

    async def terminate(self, grace: float | None = None) -> None:
        """Stop every container the kubelet's way (preStop hook, SIGTERM, SIGKILL once the
        grace period is over), let the pod's task record their exits, remove the sandbox."""
        self.terminating = True
        self._terminating.set()
        if grace is not None:
            self.grace_override = grace
        began = asyncio.get_running_loop().time()
        specs = {c["name"]: c for c in (self.pod["spec"].get("initContainers") or [])
                 + self.pod["spec"]["containers"]}
        running = [s for s in self.inits + self.mains if s.running_since is not None]
        await asyncio.gather(*[self._stop_container(specs.get(s.name, {}), s, began)
                               for s in running])
        if self.task is not None:
            # Each container's exit code and termination message are recorded as it ends.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.task), RECORD_EXITS_S)
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await asyncio.to_thread(self._destroy_sandbox)

    async def _stop_container(self, spec: dict[str, Any], state: ContainerState,
                              began: float) -> None:
        """preStop, SIGTERM, SIGKILL: all within the grace period counted from `began`,
        with at least MIN_KILL_GRACE_S between SIGTERM and SIGKILL, as the kubelet does.
        The grace is read again while waiting: a shorter delete ends the wait sooner."""
        if self.box is None or state.name not in self.box.groups:
            return
        loop = asyncio.get_running_loop()
        target = self.targets.get(state.name)
        if target is not None:
            ok, why = await termination.run_pre_stop(
                spec, target, self.ctx.http, max(began + self.grace - loop.time(), 0.0))
            if not ok:
                log.warning("%s/%s preStop hook failed: %s", self.name, state.name, why)
        pgid, started = self.box.groups[state.name]
        processes.signal_group(pgid, started, signal.SIGTERM)
        term_at = loop.time()

        def deadline() -> float:
            return max(began + self.grace, term_at + termination.MIN_KILL_GRACE_S)
        # Group members are not all our children: there is nothing to await but polling.
        while processes.group_alive(pgid, started) and loop.time() < deadline():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        processes.signal_group(pgid, started, signal.SIGKILL)

    async def report_terminated(self) -> None:
        """The terminal phase and every container's terminated state, written (retried a
        few times) before the object may go: Failed or Succeeded as the kubelet decides for
        a pod whose containers will not run again. A pod that already ended before this
        agent saw it keeps the status it has."""
        if self.task is None and (self.pod.get("status") or {}).get("phase") \
                in termination.TERMINAL:
            return
        termination.end_states(self.inits + self.mains)
        self.phase = termination.terminal_phase(self.phase, self.mains)
        for attempt in range(STATUS_ATTEMPTS):
            if await self.publish():
                return
            await asyncio.sleep(0.5 * 2 ** attempt)
        log.error("terminal status of %s not written", self.name)

    async def delete_object(self) -> None:
        """Let the object go, as the kubelet does once the pod's status is final."""
        meta = self.pod["metadata"]
        try:
            await self.ctx.client.delete(Pod, meta["name"], namespace=meta["namespace"],
                                         grace_period=0)
        except ApiError as err:
            if err.status.code != 404:
                log.warning("%s not deleted: %s", self.name, err)
