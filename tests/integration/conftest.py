"""Fixtures that start the real local control plane once per session, give each test its own
namespace, and run the real operator as a separate process (so it can be killed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship.devenv import tools
from modelship.devenv.cluster import LocalCluster, free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Kubectl:
    cluster: LocalCluster
    namespace: str

    def __call__(self, *args: str, check: bool = True,
                 input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", self.namespace, *args, check=check,
                                    input_text=input_text)

    def apply(self, obj: dict[str, Any] | str, *extra: str,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        text = obj if isinstance(obj, str) else yaml.safe_dump(obj)
        return self("apply", "-f", "-", *extra, check=check, input_text=text)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self("get", kind, name, "-o", "json", check=False)
        if out.returncode != 0:
            if "NotFound" in out.stderr:
                return None
            raise RuntimeError(out.stderr)
        data: dict[str, Any] = json.loads(out.stdout)
        return data

    def list(self, kind: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"] + (["-l", selector] if selector else [])
        items: list[dict[str, Any]] = json.loads(self(*args).stdout)["items"]
        return items


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60,
             interval: float = 0.25) -> Any:
    """Poll `check` until it returns something truthy; bounded in time."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    tools.build_all()
    state = tmp_path_factory.mktemp("cluster", numbered=True)
    local = LocalCluster(state / "state")
    local.up()
    try:
        local.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        local.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        # The OpenAPI document that kubectl explain reads is published a moment later.
        wait_for("CRD OpenAPI", lambda: all(
            local.kubectl("explain", kind, check=False).returncode == 0
            for kind in ("modeldeployment", "trainingrun")), timeout=60, interval=0.5)
        yield local
    finally:
        local.down()


@pytest.fixture
def kubectl(cluster: LocalCluster) -> Iterator[Kubectl]:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    wait_for("default service account", lambda: cluster.kubectl(
        "get", "sa", "default", "-n", namespace, check=False).returncode == 0)
    try:
        yield Kubectl(cluster, namespace)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


class Operator:
    """The real `modelship operator` process, restartable and killable."""

    def __init__(self, cluster: LocalCluster, log_dir: Path, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.starts = 0

    def start(self) -> None:
        self.metrics_port, live_port = free_port(), free_port()
        env = dict(os.environ, KUBECONFIG=str(self.cluster.kubeconfig),
                   MODELSHIP_RESYNC_SECONDS="1", MODELSHIP_METRICS_PORT=str(self.metrics_port))
        self.starts += 1
        log = (self.log_dir / f"operator-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelship.cli", "operator",
             f"--liveness=http://127.0.0.1:{live_port}/healthz", f"--namespace={self.namespace}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

        def live() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{live_port}/healthz",
                                            timeout=1) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_for("operator liveness", live, timeout=30)

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=2) as resp:
            return str(resp.read().decode())

    def log_tail(self) -> str:
        logs = sorted(self.log_dir.glob("operator-*.log"))
        return logs[-1].read_text()[-4000:] if logs else ""


@pytest.fixture
def operator(cluster: LocalCluster, kubectl: Kubectl, tmp_path: Path) -> Iterator[Operator]:
    """The operator, watching only the test's namespace (tests stay independent)."""
    op = Operator(cluster, tmp_path, kubectl.namespace)
    op.start()
    try:
        yield op
    finally:
        op.stop()
