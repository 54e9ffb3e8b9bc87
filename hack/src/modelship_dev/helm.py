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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from modelship_dev import images, polling, tools
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


def local_image_values(replicas: int = 1, resync_seconds: float = 1.0) -> dict[str, Any]:
    """Values that run the operator from the image `make images` puts in the local store
    (which the node agent treats as the node's images: pull policy Never, as after
    `kind load`); a resync period short enough for a local canary."""
    repository, tag = images.ref("operator").rsplit(":", 1)
    return {"image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "replicaCount": replicas, "resyncSeconds": resync_seconds}


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


class ChartOperator:
    """The operator as a platform team installs it: `helm install` of the chart, whose pod
    the node agent runs from the operator's image with the chart's ServiceAccount token and
    in-cluster config. `start()` returns once every operator pod is Ready (its readiness
    probe passes); `stop()` uninstalls the release."""

    def __init__(self, cluster: LocalCluster, workdir: Path, release: str = "modelship",
                 namespace: str = "modelship-system", values: dict[str, Any] | None = None,
                 node: str = "local-0", set_args: Sequence[str] = ()) -> None:
        self.cluster, self.release, self.namespace, self.node = cluster, release, namespace, node
        self.set_args = list(set_args)  # more `--set`s, after the values file
        self.helm = Helm(cluster, workdir / "helm-home")
        self.values = {**local_image_values(), **(values or {})}
        self.values_file = workdir / "operator-values.yaml"
        self.installed = False
        # Seconds from the start of `helm install` to its return and to every pod Ready.
        self.install_s = self.ready_s = 0.0

    def start(self, timeout: float = 180) -> None:
        self.values_file.parent.mkdir(parents=True, exist_ok=True)
        self.values_file.write_text(yaml.safe_dump(self.values))
        started = time.monotonic()
        self.installed = True
        self.helm.install(self.release, self.namespace, "-f", str(self.values_file),
                          *self.set_args)
        self.install_s = time.monotonic() - started
        replicas = int(self.values["replicaCount"])
        try:
            polling.wait(f"{replicas} operator pod(s) Ready", lambda: len(
                [p for p in self.pods() if pod_ready(p)]) == replicas, timeout, interval=0.2)
        except TimeoutError as err:
            raise TimeoutError(f"{err}\n{self.describe()}") from None
        self.ready_s = time.monotonic() - started

    def pods(self) -> list[dict[str, Any]]:
        out = self.cluster.kubectl(
            "-n", self.namespace, "get", "pods", "-o", "json", "-l",
            f"app.kubernetes.io/instance={self.release},app.kubernetes.io/component=operator",
            check=False)
        return list(json.loads(out.stdout)["items"]) if out.returncode == 0 else []

    def log_paths(self) -> list[Path]:
        """The operator containers' logs, as the node agent keeps them."""
        logs = self.cluster.node_agent_dir(self.node) / "logs"
        return sorted(logs.glob(f"{self.namespace}_*/operator.log"),
                      key=lambda p: p.stat().st_mtime)

    def log_tail(self, chars: int = 4000) -> str:
        return "".join(p.read_text(errors="replace") for p in self.log_paths())[-chars:]

    def describe(self) -> str:
        states = [(p["metadata"]["name"], (p.get("status") or {}).get("phase"),
                   [c.get("state") for c in (p.get("status") or {}).get(
                       "containerStatuses") or []]) for p in self.pods()]
        return f"pods: {json.dumps(states)[:2000]}\noperator log:\n{self.log_tail()}"

    def stop(self) -> None:
        if self.installed:
            self.helm("uninstall", self.release, "-n", self.namespace, "--wait",
                      "--timeout=90s", check=False)
            self.installed = False
