"""A pod's sandbox on this host: its network namespace and the folders it uses (emptyDir
volumes, containers' writable layers, termination message files, container roots, logs),
with a record in the agent's state folder so an agent that crashed can clean up after
itself."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelship_dev.nodeagent import hostnet, processes

ROOTS_DIR = hostnet.RUN_DIR / "roots"


@dataclass
class Sandbox:
    state_dir: Path
    pod: dict[str, Any]
    net: hostnet.PodNet
    host_ip: str
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)  # container: (pgid, start)

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def dir(self) -> Path:
        return self.state_dir / "pods" / self.uid

    def root(self, container: str) -> Path:
        path = ROOTS_DIR / self.net.netns / container
        path.mkdir(parents=True, exist_ok=True)
        return path

    def empty_dir(self, volume: str) -> Path:
        path = self.dir / "volumes" / volume
        if not path.is_dir():
            path.mkdir(parents=True)
            path.chmod(0o777)  # as the kubelet's: whatever user the containers run as
        return path

    def writable_layer(self, container: str) -> Path:
        """The container's overlayfs upper and work folders live here."""
        return self.dir / "containers" / container

    def hosts_file(self) -> Path:
        """/etc/hosts as the kubelet writes it for a pod on the pod network."""
        path = self.dir / "etc-hosts"
        if not path.exists():
            path.write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                            f"{self.net.ip}\t{self.pod['metadata']['name']}\n")
        return path

    def projected_dir(self, volume: str) -> Path:
        return self.dir / "projected" / volume

    def termination_file(self, container: str) -> Path:
        path = self.dir / "termination" / container
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def log_file(self, container: str) -> Path:
        meta = self.pod["metadata"]
        path = (self.state_dir / "logs" / f"{meta['namespace']}_{meta['name']}_{self.uid}"
                / f"{container}.log")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def record(self) -> None:
        meta = self.pod["metadata"]
        data = {"namespace": meta["namespace"], "name": meta["name"], "uid": self.uid,
                "netns": self.net.netns, "veth": self.net.veth, "ip": self.net.ip,
                "groups": self.groups}
        tmp = self.dir / "record.json.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.dir / "record.json")

    def add_group(self, container: str, pid: int) -> None:
        self.groups[container] = (pid, processes.start_time(pid) or 0)
        self.record()


def create(state_dir: Path, pod: dict[str, Any], host_ip: str) -> Sandbox:
    uid = str(pod["metadata"]["uid"])
    pod_dir = state_dir / "pods" / uid
    pod_dir.mkdir(parents=True, exist_ok=True)
    # The record exists before the namespace does: a crash in between still gets cleaned.
    netns, veth = hostnet.pod_names(hostnet.agent_tag(state_dir), uid)
    (pod_dir / "record.json").write_text(json.dumps({"uid": uid, "netns": netns,
                                                     "veth": veth, "groups": {}}))
    net = hostnet.create(state_dir, hostnet.agent_tag(state_dir), uid)
    box = Sandbox(state_dir, pod, net, host_ip)
    box.record()
    return box


def _remove(state_dir: Path, record: dict[str, Any]) -> None:
    for pgid, started in record.get("groups", {}).values():
        processes.signal_group(pgid, started, signal.SIGKILL)
    netns, veth = record.get("netns", ""), record.get("veth", "")
    hostnet.destroy(state_dir, hostnet.PodNet(netns, veth, record.get("ip", "")))
    shutil.rmtree(ROOTS_DIR / netns, ignore_errors=True)
    shutil.rmtree(state_dir / "pods" / str(record.get("uid")), ignore_errors=True)


def destroy(box: Sandbox) -> None:
    """Kill what is left of the pod, remove its namespace, folders and address."""
    _remove(box.state_dir, json.loads((box.dir / "record.json").read_text()))


def clean_leftovers(state_dir: Path) -> int:
    """Remove every sandbox a previous agent with this state folder left behind."""
    pods = state_dir / "pods"
    count = 0
    if pods.is_dir():
        for pod_dir in pods.iterdir():
            record: dict[str, Any] = {"uid": pod_dir.name}
            with contextlib.suppress(OSError, ValueError):
                record = json.loads((pod_dir / "record.json").read_text())
            _remove(state_dir, record)
            count += 1
    hostnet.release_owner(state_dir)
    hostnet.remove_bridge_if_unused()
    return count

