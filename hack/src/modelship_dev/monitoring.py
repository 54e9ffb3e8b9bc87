"""The monitoring of the local environment as a cluster runs it: the Prometheus Operator
(upstream build, see tools.PROMETHEUS_OPERATOR) turns the chart's PodMonitor,
ServiceMonitor and PrometheusRule into a Prometheus configuration; a real Prometheus runs
that configuration and sends its alerts to a real Alertmanager.

The operator writes what a Prometheus pod would mount (Secret `prometheus-<name>` with the
gzipped configuration, ConfigMaps `prometheus-<name>-rulefiles-N` with the rules) and a
StatefulSet whose pods would run the quay.io images. Those images cannot run here, so the
Prometheus resource asks for 0 replicas and `PrometheusLauncher` plays that pod's kubelet
and config-reloader: it reads the Secret and ConfigMaps, writes them to files, runs the
Prometheus binary on them and POSTs /-/reload whenever they change.

Two rewrites make the generated configuration run outside a pod, and nothing else is
touched: rule_files point to where the rules are written instead of /etc/prometheus/rules,
and each kubernetes_sd_config gets a `kubeconfig_file` instead of the in-cluster service
account (a pod's token mount and KUBERNETES_SERVICE_HOST cannot be given to a host process
without a mount namespace per process; the kubeconfig is what the rest of the local
environment uses).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from lightkube import ApiError, Client, KubeConfig
from lightkube.resources.core_v1 import ConfigMap, Secret

from modelship_dev import alert_rules, tools
from modelship_dev.cluster import LocalCluster, free_port
from modelship_dev.nodeagent import hostnet
from modelship_dev.prometheus import PrometheusProcess

HOST = "127.0.0.1"
RELEASE = "modelship"  # the chart's release: the operator's Service is modelship-operator-metrics
PROMETHEUS_NAME = "modelship"
POD_RULES_DIR = "/etc/prometheus/rules/"
# kube-prometheus-stack's convention: its Prometheus selects monitors labelled with its release.
SELECTOR = {"release": RELEASE}
_ENV_REF = re.compile(r"\$\(([A-Z_][A-Z0-9_]*)\)")


def crd_files() -> list[Path]:
    """The monitoring.coreos.com CRDs of the Prometheus Operator version that is built."""
    folder = tools.module_dir(tools.PROMETHEUS_OPERATOR) / "example" / "prometheus-operator-crd"
    files = sorted(folder.glob("monitoring.coreos.com_*.yaml"))
    if not files:
        raise FileNotFoundError(f"no monitoring.coreos.com CRDs under {folder}")
    return files


def install_crds(cluster: LocalCluster) -> None:
    args = [a for f in crd_files() for a in ("-f", str(f))]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *args)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *[f"crd/{f.name.removeprefix('monitoring.coreos.com_').removesuffix('.yaml')}"
                      ".monitoring.coreos.com" for f in crd_files()])


class _Process:
    """A host process with its log in `workdir`, stopped with its whole process group."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name, self.workdir = name, workdir
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         cwd=self.workdir)

    def _wait_http(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout:g}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


class AlertmanagerProcess(_Process):
    """Alertmanager on a loopback port, one receiver that notifies nobody: the alerts it
    holds are read from its v2 API (what a pager integration would be sent)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__("alertmanager", workdir)
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        config = {"route": {"receiver": "sre", "group_by": ["alertname", "namespace", "name"],
                            "group_wait": "1s", "group_interval": "1s"},
                  "receivers": [{"name": "sre"}]}
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "alertmanager.yml").write_text(json.dumps(config, indent=2) + "\n")
        self._spawn([str(tools.binary("alertmanager")),
                     f"--config.file={self.workdir / 'alertmanager.yml'}",
                     f"--storage.path={self.workdir / 'data'}",
                     f"--web.listen-address={HOST}:{self.port}",
                     "--cluster.listen-address="])  # one instance: no gossip port
        self._wait_http(self.url + "/-/ready", timeout)

    def alerts(self, active_only: bool = True) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: what Alertmanager holds, with labels, annotations and times."""
        query = "?active=true&silenced=false&inhibited=false" if active_only else ""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts{query}", timeout=5) as resp:
            found: list[dict[str, Any]] = json.loads(resp.read())
            return found


class PrometheusOperatorProcess(_Process):
    """The Prometheus Operator, scoped to one namespace, talking to the local API server
    with the kubeconfig's client certificate (it has flags for those, not a kubeconfig)."""

    def __init__(self, cluster: LocalCluster, workdir: Path, namespace: str) -> None:
        super().__init__("prometheus-operator", workdir)
        self.cluster, self.namespace = cluster, namespace
        self.port = free_port()

    def start(self, timeout: float = 60.0) -> None:
        config = json.loads(self.cluster.kubeconfig.read_text())
        server = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self._spawn([str(tools.binary("prometheus-operator")),
                     f"--apiserver={server['server']}",
                     f"--ca-file={server['certificate-authority']}",
                     f"--cert-file={user['client-certificate']}",
                     f"--key-file={user['client-key']}",
                     f"--namespaces={self.namespace}",
                     f"--web.listen-address={HOST}:{self.port}",
                     "--log-level=info"])
        self._wait_http(f"http://{HOST}:{self.port}/healthz", timeout)


def _expand_env(text: str, env: dict[str, str]) -> str:
    """$(VAR) as the config-reloader expands it (the operator writes $(POD_NAME) into the
    external labels)."""
    def value(m: re.Match[str]) -> str:
        if m.group(1) not in env:
            raise ValueError(f"the generated Prometheus config refers to $({m.group(1)}), "
                             "which a Prometheus pod's environment does not set")
        return env[m.group(1)]
    return _ENV_REF.sub(value, text)


def local_config(generated: str, rules_dir: Path, kubeconfig: Path,
                 env: dict[str, str]) -> dict[str, Any]:
    """The operator's configuration, made to run on this host (see the module's doc)."""
    config: dict[str, Any] = yaml.safe_load(_expand_env(generated, env)) or {}
    config["rule_files"] = [str(rules_dir) + "/" + f.removeprefix(POD_RULES_DIR)
                            for f in config.get("rule_files") or []]
    discovering = [*(config.get("scrape_configs") or []),
                   *((config.get("alerting") or {}).get("alertmanagers") or [])]
    for job in discovering:
        for sd in job.get("kubernetes_sd_configs") or []:
            sd.setdefault("kubeconfig_file", str(kubeconfig))
    leftover = re.findall(r"/etc/prometheus/[^\"',\s]*", json.dumps(config))
    if leftover:
        raise ValueError(f"the generated Prometheus config reads files only a pod has: "
                         f"{sorted(set(leftover))}")
    return config


class PrometheusLauncher:
    """The kubelet and config-reloader of the operator's Prometheus, as a thread: polls the
    generated Secret and rule ConfigMaps and (re)loads a host Prometheus with them."""

    def __init__(self, cluster: LocalCluster, workdir: Path, namespace: str,
                 name: str = PROMETHEUS_NAME, poll_s: float = 1.0,
                 log: Callable[[str], None] = lambda _m: None, host: str = HOST) -> None:
        self.cluster, self.workdir, self.namespace, self.name = cluster, workdir, namespace, name
        self.poll_s, self.log = poll_s, log
        self.prometheus = PrometheusProcess(workdir, log=log, host=host)
        self.rules_dir = workdir / "rules"
        self.loaded = ""  # the resourceVersions of what the running Prometheus loaded
        self.error = ""
        self.reloads = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Client | None = None

    def _read(self) -> tuple[str, str, dict[str, dict[str, str]]]:
        if self._client is None:  # the kubeconfig exists once the cluster is up
            self._client = Client(KubeConfig.from_file(str(self.cluster.kubeconfig)),
                                  namespace=self.namespace)
        secret = self._client.get(Secret, f"prometheus-{self.name}")
        data = (secret.data or {}).get("prometheus.yaml.gz")
        if data is None:
            raise LookupError(f"Secret prometheus-{self.name} has no prometheus.yaml.gz yet")
        generated = gzip.decompress(base64.b64decode(data)).decode()
        rules: dict[str, dict[str, str]] = {}
        versions = [str(secret.metadata.resourceVersion if secret.metadata else "")]
        for cm in self._client.list(ConfigMap, labels={"prometheus-name": self.name}):
            assert cm.metadata is not None and cm.metadata.name is not None
            rules[cm.metadata.name] = dict(cm.data or {})
            versions.append(f"{cm.metadata.name}@{cm.metadata.resourceVersion}")
        return ",".join(sorted(versions)), generated, rules

    def sync(self) -> bool:
        """Load the newest configuration if it changed; True when Prometheus runs it."""
        try:
            version, generated, rules = self._read()
        except (ApiError, LookupError) as err:
            self.error = str(err)
            return False
        if version == self.loaded and self.prometheus.alive():
            return True
        for folder, files in rules.items():
            target = self.rules_dir / folder
            target.mkdir(parents=True, exist_ok=True)
            for old in target.iterdir():
                if old.name not in files:
                    old.unlink()
            for file, text in files.items():
                tmp = target / f".{file}.tmp"
                tmp.write_text(text)
                tmp.replace(target / file)
        pod = f"prometheus-{self.name}-0"
        self.prometheus.generated = local_config(
            generated, self.rules_dir, self.cluster.kubeconfig,
            {"POD_NAME": pod, "SHARD": "0"})
        if self.prometheus.alive():
            self.prometheus.reload()
        else:
            self.prometheus.start()
        self.loaded, self.error = version, ""
        self.reloads += 1
        self.log(f"prometheus loaded the operator's config ({version})")
        return True

    def start(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.sync():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Prometheus Operator wrote no config for "
                                   f"{self.namespace}/{self.name} in {timeout:g}s: "
                                   f"{self.error}")
            time.sleep(self.poll_s)
        self._thread = threading.Thread(target=self._run, name="prometheus-launcher",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.sync()
            except (RuntimeError, ValueError, OSError, httpx.HTTPError) as err:
                # A config Prometheus refuses keeps the previous one running, as a
                # config-reloader does; the error stays readable for tests.
                self.error = str(err)
                self.log(f"prometheus launcher: {err}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.prometheus.stop()
        if self._client is not None:
            self._client.close()


def operator_endpoint(namespace: str, port: int) -> list[dict[str, Any]]:
    """The chart's metrics Service for an operator that runs as a host process, and the
    EndpointSlice naming where it listens. The Service keeps every label the chart renders
    (the ServiceMonitor selects those) and loses its pod selector: no pod backs it. The
    address is the node's InternalIP (the node agent's bridge), the address a hostNetwork
    pod on that node has; loopback is refused in EndpointSlices."""
    service = next(o for o in alert_rules.render(namespace=namespace)
                   if o["kind"] == "Service" and o["metadata"]["name"].endswith("-metrics"))
    service["spec"].pop("selector", None)
    return [service, host_endpoints(service["metadata"]["name"], namespace,
                                    hostnet.node_address(), port)]


def host_endpoints(service: str, namespace: str, address: str, port: int) -> dict[str, Any]:
    """The EndpointSlice that backs a selector-less Service's `metrics` port with a process
    on the host (no pod backs it, so no controller writes one)."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-host", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service,
                                "endpointslice.kubernetes.io/managed-by": "modelship-dev"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "metrics", "port": port, "protocol": "TCP"}],
    }


def monitor_set_args(values: dict[str, str]) -> list[str]:
    """helm's --set arguments that render the chart's monitoring objects labelled for this
    Prometheus, with `values` on top (also what an in-cluster `helm install` is given)."""
    sets = {"monitoring.enabled": "true",
            **{f"monitoring.additionalLabels.{k}": v for k, v in SELECTOR.items()}, **values}
    return [a for k, v in sets.items() for a in ("--set-string" if k.startswith(
        "monitoring.additionalLabels") else "--set", f"{k}={v}")]


def chart_monitors(namespace: str, values: dict[str, str]) -> list[dict[str, Any]]:
    """The chart's PodMonitor, ServiceMonitor and PrometheusRule for a release in
    `namespace` that watches it, labelled for this Prometheus, with `values` on top."""
    args = monitor_set_args({"watchNamespaces[0]": namespace, **values})
    return [o for o in alert_rules.render(*args, namespace=namespace)
            if o["apiVersion"].startswith("monitoring.coreos.com/")]


def prometheus_resource(namespace: str, alertmanager_url: str,
                        interval: str) -> list[dict[str, Any]]:
    """The Prometheus resource (and the Secret naming the Alertmanager) the operator turns
    into a configuration. Alertmanager is given as a static target: it is a host process
    on loopback, which no Service's endpoints may name."""
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "alertmanagers", "namespace": namespace},
              "stringData": {"alertmanagers.yaml": yaml.safe_dump([{
                  "static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}],
              }])}}
    prometheus = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
        "metadata": {"name": PROMETHEUS_NAME, "namespace": namespace},
        "spec": {
            "replicas": 0,  # the launcher runs it (see the module's doc)
            "version": "v" + tools.prometheus_release(tools.PROMETHEUS.version),
            "scrapeInterval": interval, "scrapeTimeout": interval,
            "evaluationInterval": interval,
            "serviceDiscoveryRole": "EndpointSlice",
            "serviceMonitorSelector": {"matchLabels": SELECTOR},
            "podMonitorSelector": {"matchLabels": SELECTOR},
            "ruleSelector": {"matchLabels": SELECTOR},
            "additionalAlertManagerConfigs": {"name": "alertmanagers",
                                              "key": "alertmanagers.yaml"},
        },
    }
    return [secret, prometheus]


class LocalMonitoring:
    """Prometheus Operator, the Prometheus it manages and Alertmanager for one namespace
    (the chart's release namespace and the namespace it watches). close() stops them all."""

    def __init__(self, cluster: LocalCluster, workdir: Path, namespace: str,
                 interval: str = "1s", chart_values: dict[str, str] | None = None,
                 log: Callable[[str], None] = lambda _m: None,
                 prometheus_host: str = HOST, apply_monitors: bool = True) -> None:
        """`prometheus_host`: where Prometheus listens (the bridge address when pods, such as
        an in-cluster operator, must reach it). `apply_monitors=False` when a `helm install`
        in `namespace` brings the chart's monitoring objects itself (`monitor_set_args`)."""
        self.apply_monitors = apply_monitors
        self.cluster, self.workdir, self.namespace, self.log = cluster, workdir, namespace, log
        self.interval = interval
        self.chart_values = {"monitoring.podMonitor.interval": interval,
                             "monitoring.serviceMonitor.interval": interval,
                             **(chart_values or {})}
        self.alertmanager = AlertmanagerProcess(workdir / "alertmanager")
        self.operator = PrometheusOperatorProcess(cluster, workdir / "prometheus-operator",
                                                  namespace)
        self.launcher = PrometheusLauncher(cluster, workdir / "prometheus", namespace, log=log,
                                           host=prometheus_host)
        self._cleanup = contextlib.ExitStack()
        self._registered = False

    @property
    def prometheus(self) -> PrometheusProcess:
        return self.launcher.prometheus

    def _apply(self, objects: list[dict[str, Any]]) -> None:
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts",
                             "--field-manager=modelship-dev", "-f", "-",
                             input_text=yaml.safe_dump_all(objects))

    def start(self) -> None:
        try:
            install_crds(self.cluster)
            self._cleanup.callback(self.alertmanager.stop)
            self.alertmanager.start()
            self._cleanup.callback(self.operator.stop)
            self.operator.start()
            self._apply(prometheus_resource(self.namespace, self.alertmanager.url,
                                            self.interval))
            if self.apply_monitors:
                self._apply(chart_monitors(self.namespace, self.chart_values))
            self._cleanup.callback(self.launcher.stop)
            self.launcher.start()
        except BaseException:
            self.close()
            raise
        self.log(f"Prometheus Operator {tools.PROMETHEUS_OPERATOR.version} manages Prometheus "
                 f"at {self.prometheus.url}; Alertmanager at {self.alertmanager.url}")

    def register_operator(self, metrics_port: int) -> None:
        """Point the chart's metrics Service at a modelship operator running on this host."""
        if not self._registered:
            # The bridge node_address() may have created, once no pod uses it either.
            self._cleanup.callback(hostnet.remove_bridge_if_unused)
            self._registered = True
        self._apply(operator_endpoint(self.namespace, metrics_port))

    def close(self) -> None:
        self._cleanup.close()

    def wait_alert(self, name: str, match: Callable[[dict[str, str]], bool] = lambda _l: True,
                   timeout: float = 60.0) -> dict[str, Any]:
        """Wait until Alertmanager holds an active alert `name` whose labels `match`."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, urllib.error.URLError):
                seen = self.alertmanager.alerts()
                for alert in seen:
                    labels = alert.get("labels", {})
                    if labels.get("alertname") == name and match(labels):
                        return alert
            time.sleep(0.2)
        raise TimeoutError(f"alert {name} not in Alertmanager after {timeout:g}s; it holds "
                           f"{[a.get('labels') for a in seen]}; launcher: "
                           f"{self.launcher.error or 'ok'}")
