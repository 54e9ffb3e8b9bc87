"""The chart installed as a user installs it, and the operator run as the chart's pod would
run, on this machine: `helm install` with the helm built from its Go module (its cache and
config kept apart from the user's), a token of the chart's ServiceAccount from the
TokenRequest API (what the kubelet mounts into the pod), and the installed Deployment's
own arguments and environment. Every request such an operator sends is judged by the
chart's RBAC alone."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from modelship_dev import tools
from modelship_dev.cluster import LocalCluster
from modelship_dev.operator_process import OperatorProcess

CHART = Path(__file__).resolve().parents[3] / "charts" / "modelship"
# Set by OperatorProcess for this machine (free ports, its own resync period).
_HOST_ENV = ("MODELSHIP_METRICS_PORT", "MODELSHIP_RESYNC_SECONDS")


class Helm:
    def __init__(self, cluster: LocalCluster, home: Path) -> None:
        self.cluster = cluster
        self.env = {f"HELM_{kind}_HOME": str(home / kind.lower())
                    for kind in ("CACHE", "CONFIG", "DATA")}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([str(tools.binary("helm")), *args],
                             env={**os.environ, **self.env,
                                  "KUBECONFIG": str(self.cluster.kubeconfig)},
                             capture_output=True, text=True, timeout=180, check=False)
        if check and out.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)} exited {out.returncode}:\n"
                               f"{out.stdout}\n{out.stderr}")
        return out

    def install(self, release: str, namespace: str, *values: str) -> str:
        """README's command; returns the NOTES it prints."""
        out = self("install", release, str(CHART), "-n", namespace, "--create-namespace",
                   *values)
        return out.stdout.split("NOTES:", 1)[-1]

    def uninstall(self, release: str, namespace: str) -> None:
        self("uninstall", release, "-n", namespace, "--wait")


def operator_deployment(cluster: LocalCluster, release: str, namespace: str) -> dict[str, Any]:
    """The chart's operator Deployment of `release`, as installed."""
    out = cluster.kubectl("-n", namespace, "get", "deployment", "-o", "json", "-l",
                          f"app.kubernetes.io/instance={release},"
                          "app.kubernetes.io/component=operator")
    (dep,) = json.loads(out.stdout)["items"]
    return dict(dep)


def service_account_kubeconfig(cluster: LocalCluster, namespace: str, account: str,
                               path: Path) -> Path:
    """The cluster's address and CA with a one-hour token of the ServiceAccount."""
    token = cluster.kubectl("-n", namespace, "create", "token", account,
                            "--duration=1h").stdout.strip()
    config = json.loads(cluster.kubeconfig.read_text())
    config["users"][0]["user"] = {"token": token}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def operator_like_the_pod(cluster: LocalCluster, deployment: dict[str, Any], log_dir: Path,
                          name: str) -> OperatorProcess:
    """An operator process (not started) with the Deployment's container's arguments and
    environment, authenticated as its pod's ServiceAccount; `name` is its HOSTNAME, as a
    pod's name would be."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    if container["command"] != ["modelship"] or container["args"][0] != "operator":
        raise ValueError(f"not the operator's container: {container['command']} "
                         f"{container['args']}")
    args = [a for a in container["args"][1:] if not a.startswith("--liveness=")]
    env = {e["name"]: e["value"] for e in container.get("env", [])
           if e["name"] not in _HOST_ENV and "value" in e}
    kubeconfig = service_account_kubeconfig(
        cluster, deployment["metadata"]["namespace"], pod["serviceAccountName"],
        log_dir / f"{name}.kubeconfig")
    return OperatorProcess(kubeconfig, log_dir, env=env,
                           leader_election="--no-leader-elect" not in args,
                           args=[a for a in args if a != "--no-leader-elect"], name=name)
