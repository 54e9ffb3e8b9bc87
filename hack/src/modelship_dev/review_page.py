"""`modelship review` as a host process for the local stack, its /metrics scraped by the stack's
Prometheus through a ServiceMonitor, as a platform team would point Prometheus at the review
page: the reviewed-accuracy gauges it exports are what the operator's retraining reads.

It listens on the node agent's bridge address (up while the node agent runs pods; an
EndpointSlice may not name loopback), and a
Service without a selector plus an EndpointSlice naming that address stand in for the pod a
cluster would run it in (as monitoring.operator_endpoint does for a host operator).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from modelship_dev.monitoring import SELECTOR, host_endpoints
from modelship_dev.nodeagent.hostnet import GATEWAY

NAME = "modelship-review"
_URL = re.compile(r"Review page: (http://([0-9.]+):(\d+)/)")


def manifests(namespace: str, address: str, port: int, interval: str) -> list[dict[str, Any]]:
    """The Service, EndpointSlice and ServiceMonitor (labelled for the stack's Prometheus)
    that make Prometheus scrape a review page listening at address:port."""
    labels = {"app.kubernetes.io/name": NAME}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
               "spec": {"ports": [{"name": "metrics", "port": port, "targetPort": port,
                                   "protocol": "TCP"}]}}
    slice_ = host_endpoints(NAME, namespace, address, port)
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": NAME, "namespace": namespace, "labels": dict(SELECTOR)},
        "spec": {"selector": {"matchLabels": labels},
                 "namespaceSelector": {"matchNames": [namespace]},
                 "endpoints": [{"port": "metrics", "path": "/metrics",
                                "interval": interval}]},
    }
    return [service, slice_, monitor]


def page_url(first_line: str) -> tuple[str, str, int] | None:
    """(url, host, port) from the line `modelship review` prints once it listens."""
    found = _URL.search(first_line)
    return (found.group(1), found.group(2), int(found.group(3))) if found else None


class ReviewPage:
    """`modelship review` on `volume` for `model`, labels by `reviewer` (whoever opens the
    page); start() waits until it listens, stop() ends it."""

    def __init__(self, volume: Path, model: str, repository: Path, log_path: Path,
                 reviewer: str = "visitor", listen: str = f"{GATEWAY.ip}:0",
                 args: Sequence[str] = ()) -> None:
        """`listen`: where it serves (default the node's bridge, which the stack's Prometheus
        reaches); `args`: more `modelship review` options."""
        self.volume, self.model, self.repository = volume, model, repository
        self.log_path, self.reviewer = log_path, reviewer
        self.listen, self.args = listen, tuple(args)
        self.proc: subprocess.Popen[str] | None = None
        self.url, self.host, self.port = "", "", 0
        self._log: IO[str] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelship.cli", "review", "--volume-path",
             str(self.volume), "--model", self.model, "--reviewer", self.reviewer,
             "--model-repository", str(self.repository), "--listen", self.listen,
             *self.args],
            stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the first line, or "" when it exits
        found = page_url(line)
        if found is None:
            self.stop()
            raise RuntimeError(f"modelship review did not start: {line!r}; "
                               f"{self.log_path.read_text()[-2000:]}")
        self.url, self.host, self.port = found

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
