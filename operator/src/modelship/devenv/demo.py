"""`modelship demo`: the whole local loop, from nothing to a Ready ModelDeployment.

It builds what is missing, starts the real control plane and the operator, applies the
local sample, prints a timeline of what the operator reports, and tears everything down.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelship.api import crdgen
from modelship.devenv import gateway_api, tools
from modelship.devenv.cluster import LocalCluster
from modelship.devenv.operator_process import OperatorProcess

REPO_ROOT = Path(__file__).resolve().parents[4]
SAMPLE = REPO_ROOT / "crds" / "samples" / "modeldeployment-local.yaml"


def install_crds(cluster: LocalCluster) -> None:
    """Apply the CRDs as generated from this very version of the API models, and the
    Gateway API's (the gateway traffic provider writes GRPCRoutes)."""
    manifests = "---\n".join(crdgen.render(info) for info in crdgen.CRDS)
    cluster.kubectl("apply", "--server-side", "-f", "-", input_text=manifests)
    gateway_api.install(cluster)
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


def _status(cluster: LocalCluster, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "md", name, "-o", "json", check=False)
    if out.returncode != 0:
        return {}
    status: dict[str, Any] = json.loads(out.stdout).get("status") or {}
    return status


def run(log: Callable[[str], None] = print, keep: bool = False, timeout: float = 120) -> None:
    started = time.monotonic()

    def step(text: str) -> None:
        log(f"[{time.monotonic() - started:6.1f}s] {text}")

    step("building the control plane from Go modules (cached after the first time)")
    tools.build_all(log=lambda line: step(f"  {line}"))
    workdir = Path(tempfile.mkdtemp(prefix="modelship-demo-"))
    cluster = LocalCluster(workdir / "cluster", log=step)
    operator = OperatorProcess(cluster.kubeconfig, workdir / "logs", resync_seconds=5)
    try:
        cluster.up()
        install_crds(cluster)
        step("CRDs installed: modeldeployments.modelship.io, trainingruns.modelship.io")
        operator.start()
        step("operator running")
        cluster.kubectl("apply", "-f", str(SAMPLE))
        step(f"applied {SAMPLE.relative_to(REPO_ROOT)}")
        seen: tuple[Any, ...] = ()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = _status(cluster, "defects-dev")
            now = (status.get("phase"), status.get("stableVersion"), status.get("message"))
            if now != seen and now[0]:
                step(f"ModelDeployment defects-dev: phase={now[0]} stable={now[1]} ({now[2]})")
                seen = now
            if status.get("phase") == "Ready":
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"not Ready after {timeout}s:\n{operator.log_tail()}")
        log(cluster.kubectl("get", "modeldeployments,deployments,services,pods",
                            "-o", "wide").stdout)
        step("done")
        if keep:
            log(f"left running: export KUBECONFIG={cluster.kubeconfig}; "
                f"stop with `modelship dev down --state-dir {cluster.state_dir}` "
                f"and kill the operator (pid {operator.proc.pid if operator.proc else '?'})")
    finally:
        if not keep:
            operator.stop()
            cluster.down()
            shutil.rmtree(workdir, ignore_errors=True)
            step("torn down: no process and no state left")
