"""A real Prometheus (upstream build from its Go module, see tools.PROMETHEUS) on 127.0.0.1.

Debian's package is built without Kubernetes service discovery; the upstream build has it, so
the same binary scrapes static loopback targets in tests and discovers Triton pods through
the local API server the way a cluster's Prometheus does.

The port is picked once per instance and kept across stop()/start(), so a URL written into
a ModelDeployment stays valid when a test stops Prometheus and brings it back. Only the
standard library is used, like tools.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from modelship import constants
from modelship_dev import tools
from modelship_dev.cluster import free_port

HOST = "127.0.0.1"
# What Prometheus accepts as a duration, restricted to whole units of ms and above.
_DURATION = re.compile(r"^([1-9][0-9]*)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"duration {text!r}: expected e.g. 1s, 500ms, 1m")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def _label(name: str) -> str:
    """The name Kubernetes SD gives a pod label or annotation: non-alphanumerics become _."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


@dataclass(frozen=True)
class KubernetesPods:
    """Discover pods through an API server, as a cluster Prometheus does: scrape those
    annotated `prometheus.io/scrape: "true"` on the port in `prometheus.io/port`."""

    kubeconfig: Path
    namespaces: Sequence[str] = ()  # empty: every namespace

    def scrape_config(self, interval: str) -> dict[str, Any]:
        pod_label = "__meta_kubernetes_pod_label_"
        annotation = "__meta_kubernetes_pod_annotation_"
        sd: dict[str, Any] = {"role": "pod", "kubeconfig_file": str(self.kubeconfig)}
        if self.namespaces:
            sd["namespaces"] = {"names": list(self.namespaces)}
        return {
            "job_name": "kubernetes-pods",
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "kubernetes_sd_configs": [sd],
            "relabel_configs": [
                {"source_labels": [annotation + _label("prometheus.io/scrape")],
                 "action": "keep", "regex": "true"},
                # Pods terminate with their IP still listed for a while; scrape only live ones.
                {"source_labels": ["__meta_kubernetes_pod_phase"],
                 "action": "drop", "regex": "Pending|Succeeded|Failed"},
                {"source_labels": ["__address__", annotation + _label("prometheus.io/port")],
                 "action": "replace", "regex": r"([^:]+)(?::\d+)?;(\d+)",
                 "replacement": "$1:$2", "target_label": "__address__"},
                # Triton's series already carry `version`; the pod's own label is kept apart.
                {"source_labels": [pod_label + _label(constants.LABEL_MODEL_VERSION)],
                 "target_label": "model_version"},
                {"source_labels": [pod_label + _label(constants.LABEL_DEPLOYMENT)],
                 "target_label": "modeldeployment"},
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            ],
        }


class PrometheusProcess:
    """Prometheus with its own config and data directory under `workdir`, on a free loopback
    port. start() waits for /-/ready; stop() and kill() leave no process behind."""

    def __init__(self, workdir: Path, scrape_interval: str = "1s",
                 evaluation_interval: str | None = None,
                 static_targets: Sequence[str] = (),
                 kubernetes: KubernetesPods | None = None,
                 scrape_configs: Sequence[dict[str, Any]] = (),
                 rule_files: Sequence[Path] = (),
                 ready_timeout_s: float = 60.0,
                 log: Callable[[str], None] = lambda _m: None) -> None:
        duration_seconds(scrape_interval)
        duration_seconds(evaluation_interval or scrape_interval)
        self.workdir = workdir
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval or scrape_interval
        self.static_targets = list(static_targets)
        self.kubernetes = kubernetes
        # More scrape jobs, as Prometheus' configuration writes them (e.g. with target
        # labels, or honor_labels as the chart's ServiceMonitor sets for the operator).
        self.scrape_configs = [dict(c) for c in scrape_configs]
        # Alerting and recording rules, evaluated every evaluation_interval (the alerts'
        # state is at /api/v1/alerts; no Alertmanager is configured here).
        self.rule_files = [Path(r) for r in rule_files]
        # A whole configuration from elsewhere (the Prometheus Operator's): used as is.
        self.generated: dict[str, Any] | None = None
        self.ready_timeout_s = ready_timeout_s
        self.log = log
        self.port = free_port()
        self.config_path = workdir / "prometheus.yml"
        self.data_dir = workdir / "data"
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def config(self) -> dict[str, Any]:
        """The configuration as a dict (written as JSON, which is YAML)."""
        if self.generated is not None:
            return self.generated
        scrape: list[dict[str, Any]] = []
        if self.static_targets:
            scrape.append({"job_name": "static", "scrape_interval": self.scrape_interval,
                           "scrape_timeout": self.scrape_interval,
                           "static_configs": [{"targets": list(self.static_targets)}]})
        if self.kubernetes is not None:
            scrape.append(self.kubernetes.scrape_config(self.scrape_interval))
        scrape += self.scrape_configs
        return {
            "global": {"scrape_interval": self.scrape_interval,
                       # A scrape must end before the next one starts (default 10s).
                       "scrape_timeout": self.scrape_interval,
                       "evaluation_interval": self.evaluation_interval},
            "scrape_configs": scrape,
            **({"rule_files": [str(r) for r in self.rule_files]} if self.rule_files else {}),
        }

    def _write_config(self) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.config(), indent=2) + "\n")
        tmp.replace(self.config_path)  # a reload never reads a half-written file

    def start(self) -> None:
        if self.alive():
            return
        binary = tools.binary("prometheus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self._write_config()
        argv = [str(binary), f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--web.listen-address={HOST}:{self.port}",
                # POST /-/reload answers whether the new config was accepted (SIGHUP cannot).
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d", "--log.level=info"]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         cwd=self.workdir)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        self.log(f"prometheus ready at {self.url}")

    def _get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                if self._get("/-/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready after {self.ready_timeout_s:g}s:\n"
                           f"{self.log_tail()}")

    def reload(self) -> None:
        """Write the current settings and make the running server take them."""
        self._write_config()
        if not self.alive():
            return  # the next start() reads the file
        req = urllib.request.Request(self.url + "/-/reload", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"prometheus refused the new config: "
                               f"{err.read().decode(errors='replace')}") from err

    def set_targets(self, targets: Sequence[str]) -> None:
        self.static_targets = list(targets)
        self.reload()

    def active_targets(self) -> list[dict[str, Any]]:
        status, body = self._get("/api/v1/targets?state=active", timeout=5.0)
        if status != 200:
            raise RuntimeError(f"prometheus /api/v1/targets answered {status}")
        targets: list[dict[str, Any]] = json.loads(body)["data"]["activeTargets"]
        return targets

    def wait_scraping(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until at least `count` targets are active and every one was scraped
        successfully; returns them."""
        deadline = time.monotonic() + timeout
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            targets = self.active_targets()
            if len(targets) >= count and all(t["health"] == "up" for t in targets):
                return targets
            time.sleep(0.2)
        seen = [(t["scrapeUrl"], t["health"], t.get("lastError", "")) for t in targets]
        raise TimeoutError(f"prometheus: {count} healthy targets not seen in {timeout:g}s; "
                           f"seen {seen}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig: signal.Signals) -> None:
        # Until poll() has reaped it, the pid (and its process group) cannot be reused.
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (Prometheus flushes its head block), SIGKILL after `timeout`."""
        self._signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as when its node dies."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def __enter__(self) -> PrometheusProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
