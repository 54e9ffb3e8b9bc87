"""The Node object of the local node: registered with capacity, labels and an optional taint,
kept Ready by a Lease renewed every few seconds and a status heartbeat, removed on exit."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from lightkube import ApiError, AsyncClient
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, NodeStatus
from lightkube.types import PatchType

log = logging.getLogger(__name__)
FIELD_MANAGER = "modelship-nodeagent"
NODE_CLASS_LABEL = "modelship.io/node-class"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_S = 40
RENEW_EVERY_S = 10.0
STATUS_EVERY = 3  # a status heartbeat every third lease renewal


def _memory() -> str:
    with open("/proc/meminfo") as f:  # noqa: PTH123 (a procfs read)
        for line in f:
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1])}Ki"
    return "0"


@dataclass
class NodeSpec:
    name: str
    address: str
    taints: list[dict[str, str]] = field(default_factory=list)
    gpus: int | None = None
    cpu: str = field(default_factory=lambda: str(os.cpu_count() or 1))
    memory: str = field(default_factory=_memory)
    pods: str = "110"

    def capacity(self) -> dict[str, str]:
        out = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        if self.gpus is not None:
            out["nvidia.com/gpu"] = str(self.gpus)
        return out

    def manifest(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": {
                "kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", NODE_CLASS_LABEL: "local"}},
            "spec": {"taints": self.taints},
        }

    def status(self) -> dict[str, Any]:
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        def condition(kind: str, value: str, reason: str) -> dict[str, str]:
            return {"type": kind, "status": value, "reason": reason, "message": reason,
                    "lastHeartbeatTime": at, "lastTransitionTime": at}

        return {
            "capacity": self.capacity(), "allocatable": self.capacity(),
            "conditions": [
                condition("Ready", "True", "LocalNodeAgentReady"),
                condition("MemoryPressure", "False", "LocalNodeAgentHasSufficientMemory"),
                condition("DiskPressure", "False", "LocalNodeAgentHasNoDiskPressure"),
                condition("PIDPressure", "False", "LocalNodeAgentHasSufficientPID"),
            ],
            "addresses": [{"type": "InternalIP", "address": self.address},
                          {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "architecture": "amd64", "operatingSystem": "linux",
                "kernelVersion": platform.release(), "osImage": "modelship local node",
                "kubeletVersion": "modelship-nodeagent", "kubeProxyVersion": "",
                "containerRuntimeVersion": "local://processes",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        }


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def register(client: AsyncClient, node: NodeSpec) -> None:
    await client.patch(Node, node.name, node.manifest(), patch_type=PatchType.APPLY,
                       field_manager=FIELD_MANAGER, force=True)
    await client.patch(NodeStatus, node.name, {"status": node.status()},
                       patch_type=PatchType.MERGE)
    await renew_lease(client, node)


async def renew_lease(client: AsyncClient, node: NodeSpec) -> None:
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": node.name, "namespace": LEASE_NAMESPACE},
             "spec": {"holderIdentity": node.name, "leaseDurationSeconds": LEASE_DURATION_S,
                      "renewTime": _micro_time()}}
    await client.patch(Lease, node.name, lease, namespace=LEASE_NAMESPACE,
                       patch_type=PatchType.APPLY, field_manager=FIELD_MANAGER, force=True)


async def heartbeat(client: AsyncClient, node: NodeSpec) -> None:
    """Renew the Lease forever (until cancelled); an API hiccup is retried next period."""
    beat = 0
    while True:
        await asyncio.sleep(RENEW_EVERY_S)
        beat += 1
        try:
            await renew_lease(client, node)
            if beat % STATUS_EVERY == 0:
                await client.patch(NodeStatus, node.name, {"status": node.status()},
                                   patch_type=PatchType.MERGE)
        except (ApiError, httpx.HTTPError) as err:
            log.warning("node heartbeat failed: %s", err)


async def remove(client: AsyncClient, node: NodeSpec) -> None:
    try:
        await client.delete(Lease, node.name, namespace=LEASE_NAMESPACE)
        await client.delete(Node, node.name)
    except ApiError as err:
        if err.status.code != 404:
            log.warning("node %s not removed: %s", node.name, err)
