"""A real tritonserver (from the nvidia-pytriton wheel) on 127.0.0.1, for tests, benchmarks
and the demo.

The wheel ships the server binary, its libraries (nvidia_pytriton.libs) and Python-backend
stubs per Python version; the stub matching this interpreter is placed next to the backend,
as pytriton itself does, and this interpreter's bin directory goes first on PATH so the stub
finds numpy and onnxruntime in the same environment.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from modelship_dev.cluster import free_port

HOST = "127.0.0.1"
# Exposition format: name{label="value",...} value  (names kept exactly as Triton writes them)
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def wheel_paths() -> tuple[Path, Path, Path, Path]:
    """(tritonserver binary, library dir, python backend dir, stub) or a failing test."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise RuntimeError("nvidia-pytriton is not installed: pip install nvidia-pytriton "
                           "(it provides the real tritonserver)")
    root = Path(spec.origin).parent
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    server = root / "tritonserver"
    paths = (server / "bin" / "tritonserver", root.parent / "nvidia_pytriton.libs",
             server / "backends" / "python",
             server / "python_backend_stubs" / version / "triton_python_backend_stub")
    for p in paths:
        if not p.exists():
            raise RuntimeError(f"nvidia-pytriton is incomplete: {p} is missing")
    return paths


class TritonServer:
    """Context manager: starts tritonserver on free loopback ports, waits until ready."""

    def __init__(self, repository: Path, workdir: Path, ready_timeout_s: float = 120.0,
                 extra_args: list[str] | None = None, wrapper: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.repository, self.workdir, self.ready_timeout_s = repository, workdir, ready_timeout_s
        self.extra_args = list(extra_args or [])
        # A command that execs the server (its argv follows), e.g. into namespaces of its
        # own; and environment variables for the server and its Python-backend stubs.
        self.wrapper, self.env = list(wrapper or []), dict(env or {})
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.log_path = workdir / "tritonserver.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    def __enter__(self) -> TritonServer:
        binary, libs, backend, stub = wheel_paths()
        backends = self.workdir / "backends"
        shutil.copytree(backend, backends / "python", dirs_exist_ok=True)
        shutil.copy(stub, backends / "python" / "triton_python_backend_stub")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               "LD_LIBRARY_PATH": f"{libs}:{os.environ.get('LD_LIBRARY_PATH', '')}",
               **self.env}
        args = [*self.wrapper, str(binary), f"--model-repository={self.repository}",
                f"--backend-directory={backends}",
                f"--http-address={HOST}", f"--http-port={self.http_port}",
                f"--grpc-address={HOST}", f"--grpc-port={self.grpc_port}",
                f"--metrics-address={HOST}", f"--metrics-port={self.metrics_port}",
                "--allow-gpu-metrics=false", "--allow-cpu-metrics=false", "--exit-timeout-secs=5",
                *self.extra_args]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.workdir)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        url = f"http://{HOST}:{self.http_port}/v2/health/ready"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(
            f"tritonserver not ready in {self.ready_timeout_s}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample of the real /metrics endpoint, keyed by name and labels."""
        text = httpx.get(f"http://{HOST}:{self.metrics_port}/metrics", timeout=5.0).text
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for line in text.splitlines():
            m = _SAMPLE.match(line)
            if m and not line.startswith("#"):
                labels = frozenset(_LABEL.findall(m.group(2) or ""))
                samples[(m.group(1), labels)] = float(m.group(3))
        return samples

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
