"""Leader election against the real API server: one replica acts while the other stands by
(healthy, writing nothing); a leader that stops releases the Lease and the standby takes
over at once; a leader cut off from the API server, or whose Lease someone else took, ends
its own process before anyone else may act."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelship_dev.cluster import LocalCluster
from modelship_dev.operator_process import OperatorProcess
from tests.conftest import Kubectl, wait_for
from tests.integration.test_modeldeployment import ready, sample

pytestmark = pytest.mark.integration

LEASE = "modelship-operator"
LOST_LEASE_EXIT = 75  # modelship.adapters.leader.LOST_LEASE_EXIT


def metric(op: OperatorProcess, name: str) -> float:
    """The sum of every series of `name` on the operator's metrics endpoint."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in op.metrics().splitlines()
               if line.startswith((f"{name}{{", f"{name} ")))


def holder(kubectl: Kubectl) -> str:
    lease = kubectl.get("lease", LEASE) or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


class CuttableProxy:
    """A loopback TCP proxy to the API server that can be cut: from then on it forwards
    nothing and answers nothing, as when a node loses its network (connections hang)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.is_cut = threading.Event()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.is_cut.is_set():
                continue  # held open, never answered
            upstream = socket.create_connection(self.target)
            self.sockets.append(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.is_cut.is_set():
                    self.closed.wait()
                    return
                dst.sendall(data)
        except OSError:
            return

    def close(self) -> None:
        self.closed.set()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def operators(cluster: LocalCluster, kubectl: Kubectl,
              tmp_path: Path) -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for op in started:
        op.stop()


def start(started: list[OperatorProcess], kubeconfig: Path, kubectl: Kubectl, tmp_path: Path,
          name: str, *args: str) -> OperatorProcess:
    op = OperatorProcess(kubeconfig, tmp_path / name, kubectl.namespace,
                         leader_election=True, name=name, args=list(args))
    started.append(op)
    op.start()
    return op


def test_one_replica_acts_the_other_stands_by_and_takes_over_when_it_stops(
        cluster: LocalCluster, kubectl: Kubectl, tmp_path: Path,
        operators: list[OperatorProcess]) -> None:
    # A Lease far longer than the test waits: a takeover within the wait is the release's.
    long = ("--lease-duration=120", "--lease-renew-period=2")
    a = start(operators, cluster.kubeconfig, kubectl, tmp_path, "op-a", *long)
    wait_for("op-a leads", lambda: holder(kubectl).startswith("op-a-"), timeout=30)
    b = start(operators, cluster.kubeconfig, kubectl, tmp_path, "op-b", *long)
    health = b.health()
    assert health["role"] == "standby" and health["holder"].startswith("op-a-"), health
    assert health["identity"].startswith("op-b-")

    kubectl.apply(sample(version=1))
    wait_for("Ready v1", lambda: ready(kubectl, "defects-dev", 1), timeout=60)
    assert metric(a, "modelship_leader") == 1 and metric(a, "modelship_reconciles_total") > 0
    # The standby reads the Lease and nothing else: no reconcile, no write.
    assert metric(b, "modelship_leader") == 0
    assert metric(b, "modelship_reconciles_total") == 0
    assert metric(b, "modelship_kube_writes_total") == 0

    a.stop()  # SIGTERM, as in a rolling update: the leader finishes, then releases
    assert "released Lease" in a.log_path().read_text()
    wait_for("op-b leads", lambda: holder(kubectl).startswith("op-b-"), timeout=30)
    kubectl.apply(sample(version=2))
    wait_for("Ready v2, by op-b", lambda: ready(kubectl, "defects-dev", 2), timeout=60)
    assert metric(b, "modelship_leader") == 1
    lease = kubectl.get("lease", LEASE)
    assert lease is not None and lease["spec"]["leaseTransitions"] == 1


def _proxied_kubeconfig(cluster: LocalCluster, proxy_port: int, path: Path) -> Path:
    config: dict[str, Any] = json.loads(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy_port}"
    path.write_text(json.dumps(config))
    return path


def _api_address(cluster: LocalCluster) -> tuple[str, int]:
    config = json.loads(cluster.kubeconfig.read_text())
    url = urllib.parse.urlsplit(config["clusters"][0]["cluster"]["server"])
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


def test_a_leader_cut_off_from_the_api_server_stops_before_the_standby_takes_over(
        cluster: LocalCluster, kubectl: Kubectl, tmp_path: Path,
        operators: list[OperatorProcess]) -> None:
    proxy = CuttableProxy(_api_address(cluster))
    try:
        cut_off = _proxied_kubeconfig(cluster, proxy.port, tmp_path / "proxied")
        a = start(operators, cut_off, kubectl, tmp_path, "op-a")
        wait_for("op-a leads", lambda: holder(kubectl).startswith("op-a-"), timeout=30)
        kubectl.apply(sample(version=1))
        wait_for("Ready v1", lambda: ready(kubectl, "defects-dev", 1), timeout=60)
        b = start(operators, cluster.kubeconfig, kubectl, tmp_path, "op-b")

        proxy.is_cut.set()
        wait_for("op-b leads", lambda: holder(kubectl).startswith("op-b-"), timeout=40)
        # op-b holds the Lease: op-a must already be gone, by its own hand.
        assert a.proc is not None and a.proc.poll() == LOST_LEASE_EXIT, a.log_tail()
        assert "lost leadership" in a.log_path().read_text()
        kubectl.apply(sample(version=2))
        wait_for("Ready v2, by op-b", lambda: ready(kubectl, "defects-dev", 2), timeout=60)
        assert metric(b, "modelship_reconciles_total") > 0
    finally:
        proxy.close()


def test_a_leader_whose_lease_was_taken_exits_at_once(
        cluster: LocalCluster, kubectl: Kubectl, tmp_path: Path,
        operators: list[OperatorProcess]) -> None:
    a = start(operators, cluster.kubeconfig, kubectl, tmp_path, "op-a",
              "--lease-duration=120")
    wait_for("op-a leads", lambda: holder(kubectl).startswith("op-a-"), timeout=30)
    kubectl("patch", "lease", LEASE, "--type=merge", "-p",
            json.dumps({"spec": {"holderIdentity": "someone-else"}}))
    assert a.proc is not None
    proc = a.proc
    wait_for("op-a exits", lambda: proc.poll() is not None, timeout=30)
    assert proc.returncode == LOST_LEASE_EXIT
    assert "is now held by someone-else" in a.log_path().read_text()
