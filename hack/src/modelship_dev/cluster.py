"""A real local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and kwok (simulated nodes, one with GPUs), bound to loopback, with its own kubeconfig.

kwok's nodes run nothing for real (kwok fakes every pod's life), so they carry kwok's own
taint `kwok.x-k8s.io/node=fake:NoSchedule`: only workloads that tolerate it land there
(scale tests, tests that finish pods by annotation). Everything else waits for a real node:
the node agent's (`start_node_agent`), whose pods are real processes.

Everything lives in one state folder; `down` stops every process it started (checked by
command line, so a recycled PID is never signalled) and removes the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelship_dev import images, imagestore, pki, tools
from modelship_dev.nodeagent import rootfs

SERVICE_CIDR = "10.96.0.0/16"  # only allocated, never contacted
POD_CIDR = "10.244.0.0/16"
STAGES = Path(__file__).with_name("kwok-stages.yaml")
ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def default_state_dir() -> Path:
    return Path(os.environ.get("MODELSHIP_STATE",
                               Path.home() / ".local" / "state" / "modelship" / "dev-cluster"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(what: str, check: Callable[[], bool], timeout: float,
          proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s\n{tail}")


SIMULATED_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
SIMULATED_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists",
                        "effect": "NoSchedule"}
NODES: list[dict[str, Any]] = [
    {
        "name": "cpu-0",
        "labels": {"modelship.io/node-class": "cpu"},
        "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
        "taints": [SIMULATED_TAINT],
    },
    {
        "name": "gpu-0",
        "labels": {"modelship.io/node-class": "gpu", "nvidia.com/gpu.present": "true",
                   "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": "1"},
        "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
                   SIMULATED_TAINT],
    },
]


def node_manifest(node: dict[str, Any]) -> dict[str, Any]:
    name = node["name"]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "type": "kwok", **node["labels"]},
        },
        "spec": {"taints": node["taints"]},
        "status": {"capacity": node["capacity"], "allocatable": node["capacity"]},
    }


def ensure_images(log: Path) -> None:
    """The node agent runs pods from the local image store, never host binaries: build
    (or find cached, in seconds) modelship's images first, as `make images` does, and unpack
    their layers for the node (once per machine: the trainer's takes minutes, which a first
    pod start would otherwise spend as ContainerCreating)."""
    with log.open("a") as out:
        try:
            images.build_all(log=lambda line: print(line, file=out, flush=True))
        except SystemExit as missing:  # buildah is not installed
            raise RuntimeError(str(missing)) from None
        for spec in images.IMAGES:
            start = time.monotonic()
            rootfs.unpack_image(imagestore.resolve(spec.ref))
            print(f"{spec.ref}: layers unpacked in {rootfs.layers_dir()} "
                  f"({time.monotonic() - start:.1f} s)", file=out, flush=True)


@dataclass
class LocalCluster:
    state_dir: Path = field(default_factory=default_state_dir)
    log: Callable[[str], None] = print
    # More kube-apiserver flags, e.g. admission plugins that production clusters enable.
    apiserver_args: Sequence[str] = ()

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "cluster.json"

    def _state(self) -> dict[str, Any]:
        if not self._state_file.exists():
            return {"pids": {}, "ports": {}}
        data: dict[str, Any] = json.loads(self._state_file.read_text())
        return data

    def _save(self, state: dict[str, Any]) -> None:
        self._state_file.write_text(json.dumps(state, indent=2))

    def is_up(self) -> bool:
        pids = self._state().get("pids", {})
        return bool(pids) and all(self._ours(pid) for pid in pids.values())

    def _ours(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return str(self.state_dir) in cmdline

    def kubectl(self, *args: str, check: bool = True, input_text: str | None = None,
                ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tools.binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
            check=check, capture_output=True, text=True, input=input_text, timeout=120)

    def _start(self, state: dict[str, Any], name: str,
               argv: Sequence[str]) -> subprocess.Popen[bytes]:
        logs = self.state_dir / "logs"
        logs.mkdir(exist_ok=True)
        out = (logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=self.state_dir)
        out.close()
        state["pids"][name] = proc.pid
        self._save(state)
        return proc

    def _https_ok(self, url: str) -> bool:
        pki_dir = self.state_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
        with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
            return bool(resp.status == 200)

    def up(self, timeout: float = 90) -> None:
        """Start the control plane (binaries must be built); idempotent when already up."""
        if self.is_up():
            self.log(f"local cluster already up: KUBECONFIG={self.kubeconfig}")
            return
        self.down(quiet=True)
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        bins = {name: str(tools.binary(name)) for name in
                ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                 "kwok", "kubectl")}
        pki_dir = self.state_dir / "pki"
        pki.generate(pki_dir)
        ports = {k: free_port() for k in ("etcd", "etcd-peer", "apiserver", "kcm",
                                          "scheduler", "kwok")}
        state: dict[str, Any] = {"pids": {}, "ports": ports}
        self._save(state)
        self._write_kubeconfig(ports["apiserver"])
        logs = self.state_dir / "logs"

        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
        proc = self._start(state, "etcd", [
            bins["etcd"], "--name=modelship", f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=modelship={peer_url}", "--unsafe-no-fsync",
            "--log-level=warn", "--listen-metrics-urls=",
        ])
        _wait("etcd", lambda: urllib.request.urlopen(f"{etcd_url}/health", timeout=2)
              .status == 200, timeout, proc, logs / "etcd.log")

        api = f"https://127.0.0.1:{ports['apiserver']}"
        proc = self._start(state, "kube-apiserver", [
            bins["kube-apiserver"], f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
            f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
            f"--client-ca-file={pki_dir / 'ca.crt'}",
            f"--service-account-key-file={pki_dir / 'sa.pub'}",
            f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            # The built-in `kubernetes` Service would point at a loopback address.
            "--endpoint-reconciler-type=none", "--profiling=false",
            f"--cert-dir={pki_dir}", *self.apiserver_args,
        ])
        _wait("kube-apiserver", lambda: self._https_ok(f"{api}/readyz"), timeout, proc,
              logs / "kube-apiserver.log")

        kubeconfig = str(self.kubeconfig)
        self._start(state, "kube-controller-manager", [
            bins["kube-controller-manager"], f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={ports['kcm']}",
            "--leader-elect=false", "--use-service-account-credentials=false",
            f"--service-account-private-key-file={pki_dir / 'sa.key'}",
            f"--root-ca-file={pki_dir / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki_dir / 'ca.crt'}",
            f"--cluster-signing-key-file={pki_dir / 'ca.key'}",
            f"--cluster-cidr={POD_CIDR}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle",
            # The default client limit (20/s) would make the controllers, not the operator,
            # what a thousand ModelDeployments wait for (hack/bench/scale.py).
            "--kube-api-qps=200", "--kube-api-burst=400",
        ])
        self._start(state, "kube-scheduler", [
            bins["kube-scheduler"], f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={ports['scheduler']}",
            "--leader-elect=false", "--kube-api-qps=200", "--kube-api-burst=400",
        ])
        kwok = self._start(state, "kwok", [
            bins["kwok"], f"--kubeconfig={kubeconfig}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--config={STAGES}",
            # Renew each node's Lease as a kubelet would: without it the node lifecycle
            # controller marks the nodes NotReady after 40 s and flips every pod unready.
            "--node-lease-duration-seconds=40",
            f"--cidr={POD_CIDR}", "--node-ip=10.244.0.1",
            f"--server-address=127.0.0.1:{ports['kwok']}",
        ])
        nodes = "\n---\n".join(json.dumps(node_manifest(n)) for n in NODES)
        _wait("node registration", lambda: self.kubectl(
            "apply", "-f", "-", input_text=nodes, check=False).returncode == 0, timeout)
        _wait("nodes Ready", self._nodes_ready, timeout, kwok, logs / "kwok.log")
        _wait("default service account", lambda: self.kubectl(
            "get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
            timeout)
        self.log(f"local cluster up in {time.monotonic() - started:.1f}s "
                 f"(Kubernetes {tools.KUBERNETES.version}): export KUBECONFIG={self.kubeconfig}")

    def _nodes_ready(self) -> bool:
        out = self.kubectl("get", "nodes", "-o", "json", check=False)
        if out.returncode != 0:
            return False
        items = json.loads(out.stdout)["items"]
        ready = [n for n in items for c in n.get("status", {}).get("conditions", [])
                 if c["type"] == "Ready" and c["status"] == "True"]
        return len(ready) == len(NODES)

    def _write_kubeconfig(self, port: int) -> None:
        pki_dir = self.state_dir / "pki"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "modelship-local", "cluster": {
                "server": f"https://127.0.0.1:{port}",
                "certificate-authority": str(pki_dir / "ca.crt")}}],
            "users": [{"name": "modelship-admin", "user": {
                "client-certificate": str(pki_dir / "admin.crt"),
                "client-key": str(pki_dir / "admin.key")}}],
            "contexts": [{"name": "modelship-local", "context": {
                "cluster": "modelship-local", "user": "modelship-admin",
                "namespace": "default"}}],
            "current-context": "modelship-local",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))

    def node_agent_dir(self, node: str) -> Path:
        return self.state_dir / "nodes" / node

    def _node_ready(self, node: str) -> bool:
        out = self.kubectl("get", "node", node, "-o", "json", check=False)
        return out.returncode == 0 and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in json.loads(out.stdout).get("status", {}).get("conditions", []))

    def start_node_agent(self, node: str = "local-0", taints: Sequence[str] = (),
                         timeout: float = 90, image_store: Path | None = None) -> Path:
        """Start a node agent whose pods run from their images as real processes (needs
        root) and wait until its node is Ready; `down` stops it. Returns the agent's state
        folder. `image_store`: an OCI layout to run images from instead of the local store."""
        state = self._state()
        agents = state.setdefault("node_agents", {})
        folder = self.node_agent_dir(node)
        if node in agents and self._ours(agents[node]):
            return folder
        log = self.state_dir / "logs" / f"node-agent-{node}.log"
        log.parent.mkdir(exist_ok=True)
        ensure_images(log)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "modelship_dev.nodeagent",
                 f"--kubeconfig={self.kubeconfig}", f"--node={node}", f"--state-dir={folder}",
                 *(f"--taint={t}" for t in taints)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.state_dir,
                env={**os.environ, **({imagestore.STORE_ENV: str(image_store)}
                                      if image_store is not None else {})})
        agents[node] = proc.pid
        self._save(state)
        _wait(f"node {node} Ready", lambda: self._node_ready(node), timeout, proc, log)
        return folder

    def stop_node_agent(self, node: str = "local-0", timeout: float = 45) -> None:
        """Stop a node agent (its pods' processes and namespaces go with it)."""
        state = self._state()
        pid = state.get("node_agents", {}).pop(node, None)
        if pid is not None and self._ours(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self._ours(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._ours(pid):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if self.node_agent_dir(node).is_dir():
            # Whatever a killed agent could not stop is removed from its records.
            from modelship_dev.nodeagent import sandbox
            sandbox.clean_leftovers(self.node_agent_dir(node))
        self._save(state)

    def down(self, quiet: bool = False) -> None:
        """Stop every process this cluster started and delete its state."""
        for node in list(self._state().get("node_agents", {})):
            self.stop_node_agent(node)
        pids = self._state().get("pids", {})
        for name in reversed(ORDER):
            pid = pids.get(name)
            if pid is not None and self._ours(pid):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name in reversed(ORDER):
            pid = pids.get(name)
            while pid is not None and self._ours(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid is not None and self._ours(pid):
                os.killpg(pid, signal.SIGKILL)
        for pid in pids.values():
            with contextlib.suppress(ChildProcessError):  # reap our children: no zombies
                os.waitpid(pid, os.WNOHANG)
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        if not quiet:
            self.log("local cluster down")
