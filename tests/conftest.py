"""Fixtures that start the real local control plane once per session, give each test its own
namespace, and run the real operator as a separate process (so it can be killed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship_dev import gateway_api, tools
from modelship_dev.cluster import LocalCluster
from modelship_dev.operator_process import OperatorProcess

REPO = Path(__file__).resolve().parents[1]


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


def require_node_agent_host() -> None:
    """Fail (never skip) where the node agent and the gateway cannot run."""
    if os.geteuid() != 0:
        pytest.fail("the node agent and the gateway need root (network and mount namespaces)")
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` is required (iproute2, util-linux)")


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


def wait_for_status(what: str, read: Callable[[], dict[str, Any]],
                    reached: Callable[[dict[str, Any]], bool], timeout: float,
                    interval: float = 0.3, context: Callable[[], str] | None = None
                    ) -> dict[str, Any]:
    """Poll a resource's status until `reached` holds; on timeout the error shows the last
    status read (and `context`, e.g. the operator's log)."""
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        last.clear()
        last.update(read())
        return dict(last) if reached(last) else None
    try:
        result: dict[str, Any] = wait_for(what, check, timeout=timeout, interval=interval)
    except AssertionError as err:
        extra = f"\n{context()}" if context is not None else ""
        raise AssertionError(f"{err}\nstatus: {yaml.safe_dump(last)}{extra}") from None
    return result


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    tools.build_all()
    state = tmp_path_factory.mktemp("cluster", numbered=True)
    local = LocalCluster(state / "state")
    local.up()
    try:
        local.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        local.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        gateway_api.install(local)
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


@pytest.fixture
def operator(cluster: LocalCluster, kubectl: Kubectl,
             tmp_path: Path) -> Iterator[OperatorProcess]:
    """The real operator process, watching only the test's namespace (tests stay
    independent), re-reconciling every second."""
    op = OperatorProcess(cluster.kubeconfig, tmp_path, kubectl.namespace)
    op.start()
    try:
        yield op
    finally:
        op.stop()
