"""The agent: registers the node, watches the pods bound to it and runs each one, and on exit
stops everything it started and removes the node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from lightkube import ALL_NS, ApiError, AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Pod

from modelship_dev.nodeagent import apiproxy, hostnet, node, sandbox
from modelship_dev.nodeagent.pods import Context, PodRunner

log = logging.getLogger(__name__)
MAX_WATCH_FAILURES = 10
RESYNC_EVERY_S = 30.0
SHUTDOWN_GRACE_S = 10.0


@dataclass
class AgentConfig:
    kubeconfig: Path
    node: node.NodeSpec
    state_dir: Path


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.runners: dict[str, PodRunner] = {}
        self.stopping: set[str] = set()
        self.background: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        hostnet.require_host()
        state_dir = self.config.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        left = await asyncio.to_thread(sandbox.clean_leftovers, state_dir)
        if left:
            log.info("removed %d pod sandboxes a previous agent left behind", left)
        kubeconfig = KubeConfig.from_file(self.config.kubeconfig)
        current = kubeconfig.get()
        if current is None:
            raise RuntimeError(f"{self.config.kubeconfig} has no current context")
        await asyncio.to_thread(hostnet.hold_bridge, state_dir)
        try:
            api = await apiproxy.serve(current.cluster.server, str(hostnet.GATEWAY.ip))
        except OSError:
            await asyncio.to_thread(sandbox.clean_leftovers, state_dir)  # lets the bridge go
            raise
        client = AsyncClient(config=kubeconfig, field_manager=node.FIELD_MANAGER)
        # Probes reach pod addresses only: no proxy from the environment may be used.
        http = httpx.AsyncClient(trust_env=False, verify=False)
        ctx = Context(client, http, state_dir, str(hostnet.GATEWAY.ip),
                      apiproxy.service_env(api))
        try:
            await node.register(client, self.config.node)
            log.info("node %s registered", self.config.node.name)
            tasks = [asyncio.create_task(node.heartbeat(client, self.config.node)),
                     asyncio.create_task(self._watch(ctx)),
                     asyncio.create_task(self._resync(ctx))]
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in [stopped, *tasks]:
                task.cancel()
            for task in done:
                if task is not stopped and not task.cancelled() and task.exception():
                    log.error("agent task failed: %s", task.exception())
        finally:
            await self._shutdown(client)
            api.close()
            await http.aclose()
            await client.close()
            await asyncio.to_thread(sandbox.clean_leftovers, state_dir)

    async def _shutdown(self, client: AsyncClient) -> None:
        runners = list(self.runners.values())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(
                *[r.terminate(min(r.grace, SHUTDOWN_GRACE_S)) for r in runners],
                return_exceptions=True), SHUTDOWN_GRACE_S + 5)
        # Pods bound to a node that goes away would wait for the pod GC; end them now, in
        # the kubelet's order (terminal status first: a Job pod's finalizer waits for it).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*[self._let_go(r) for r in runners],
                                                  return_exceptions=True), 15)
        for task in self.background:
            task.cancel()
        with contextlib.suppress(ApiError, httpx.HTTPError):
            await node.remove(client, self.config.node)
        log.info("node %s removed", self.config.node.name)

    async def _watch(self, ctx: Context) -> None:
        """Follow the pods bound to this node; reconnect a bounded number of times in a row."""
        failures = 0
        while True:
            try:
                async for op, obj in ctx.client.watch(
                        Pod, namespace=ALL_NS, fields={"spec.nodeName": self.config.node.name}):
                    failures = 0
                    self._handle(ctx, op, obj.to_dict())
            except (ApiError, httpx.HTTPError) as err:
                failures += 1
                if failures > MAX_WATCH_FAILURES:
                    raise
                log.warning("pod watch failed (%d/%d): %s", failures, MAX_WATCH_FAILURES, err)
                await asyncio.sleep(min(2.0 ** failures, 30.0))

    async def _resync(self, ctx: Context) -> None:
        """Stop pods whose objects vanished while the watch was reconnecting."""
        while True:
            await asyncio.sleep(RESYNC_EVERY_S)
            try:
                present = {p.metadata.uid async for p in ctx.client.list(
                    Pod, namespace=ALL_NS, fields={"spec.nodeName": self.config.node.name})
                    if p.metadata is not None}
            except (ApiError, httpx.HTTPError) as err:
                log.warning("pod resync failed: %s", err)
                continue
            for uid in set(self.runners) - present:
                self._stop(uid, delete=False)

    def _handle(self, ctx: Context, op: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        runner = self.runners.get(uid)
        if op == "DELETED":
            if runner is not None:
                # Gone without waiting for us (a forced delete): no grace is left.
                runner.grace_override = 0.0
                self._stop(uid, delete=False)
            return
        if pod["metadata"].get("deletionTimestamp"):
            if runner is None:
                runner = PodRunner(ctx, pod)
                self.runners[uid] = runner
            runner.pod = pod  # a second, shorter delete shortens the grace of a stop under way
            self._stop(uid, delete=True)
            return
        if runner is None and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
            runner = PodRunner(ctx, pod)
            self.runners[uid] = runner
            log.info("starting pod %s", runner.name)
            runner.start()

    @staticmethod
    async def _let_go(runner: PodRunner) -> None:
        """The end of a deleted pod, as the kubelet orders it: its containers are stopped
        already; write the terminal phase and their terminated states, then remove the
        object."""
        await runner.report_terminated()
        await runner.delete_object()

    def _stop(self, uid: str, delete: bool) -> None:
        if uid in self.stopping:
            return
        self.stopping.add(uid)
        runner = self.runners[uid]

        async def stop() -> None:
            try:
                log.info("stopping pod %s (grace %gs)", runner.name, runner.grace)
                await runner.terminate()
                if delete:
                    await self._let_go(runner)
            finally:
                self.runners.pop(uid, None)
                self.stopping.discard(uid)

        task = asyncio.create_task(stop())
        self.background.add(task)
        task.add_done_callback(self.background.discard)
