"""Run `modelship operator` as a separate process against a cluster (demo and tests), so it
can be stopped gracefully or killed like a lost node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from modelship_dev.cluster import free_port


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log_dir: Path, namespace: str | None = None,
                 resync_seconds: float = 1.0, env: dict[str, str] | None = None,
                 python: Path | str | None = None, leader_election: bool = False,
                 args: list[str] | None = None, name: str = "operator",
                 metrics_port: int = 0) -> None:
        self.kubeconfig = kubeconfig
        # The interpreter whose `modelship` runs (default: this one); another virtualenv's
        # python runs the operator as installed there.
        self.python = str(python or sys.executable)
        self.extra_env = dict(env or {})
        self.log_dir = log_dir
        self.namespace = namespace
        self.resync_seconds = resync_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        # 0: a free port on each start; else kept across restarts (an Endpoint names it).
        self.fixed_metrics_port = metrics_port
        self.metrics_port = metrics_port
        self.starts = 0
        # Off by default: one process acts alone and a restart acts at once. On, the process
        # stands by until it holds the Lease (in the watched namespace unless `args` say
        # otherwise), under `name` as its HOSTNAME, as a pod would.
        self.leader_election = leader_election
        self.args = list(args or [])
        self.name = name
        self.live_port = 0

    def start(self, timeout: float = 30) -> None:
        self.metrics_port = self.fixed_metrics_port or free_port()
        self.live_port = live_port = free_port()
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), HOSTNAME=self.name,
                   MODELSHIP_RESYNC_SECONDS=str(self.resync_seconds),
                   MODELSHIP_METRICS_PORT=str(self.metrics_port), **self.extra_env)
        argv = [self.python, "-m", "modelship.cli", "operator",
                f"--liveness=http://127.0.0.1:{live_port}/healthz"]
        if self.namespace:
            argv.append(f"--namespace={self.namespace}")
        if not self.leader_election:
            argv.append("--no-leader-elect")
        argv += self.args
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path().open("wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{live_port}/healthz",
                                            timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"operator not live after {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when the operator's node dies."""
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

    def log_path(self) -> Path:
        """The log of the latest start."""
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def health(self) -> dict[str, Any]:
        """What the health endpoint answers (a standby says so and who holds the Lease)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.live_port}/healthz",
                                    timeout=2) as resp:
            data: dict[str, Any] = json.loads(resp.read().decode() or "{}")
            return data

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=2) as resp:
            return str(resp.read().decode())

    def log_tail(self) -> str:
        path = self.log_path()
        return path.read_text()[-4000:] if path.exists() else ""
