"""Startup, liveness and readiness probes, run the way a kubelet runs them: httpGet and
tcpSocket against the pod's own address, exec inside the container's namespaces."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


@dataclass(frozen=True)
class Settings:
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @staticmethod
    def of(probe: dict[str, Any]) -> Settings:
        return Settings(float(probe.get("initialDelaySeconds", 0)),
                        float(probe.get("periodSeconds", 10)),
                        float(probe.get("timeoutSeconds", 1)),
                        int(probe.get("successThreshold", 1)),
                        int(probe.get("failureThreshold", 3)))


@dataclass(frozen=True)
class Target:
    pod_ip: str
    ports: dict[str, int]  # the container's named ports
    pid: int  # the container's main process: exec probes join its namespaces
    env: dict[str, str]
    user: dict[str, Any]  # uid, gid: exec probes run as the container's user

    def port(self, value: int | str) -> int:
        if isinstance(value, int) or str(value).isdigit():
            return int(value)
        if value not in self.ports:
            raise ValueError(f"the container has no port named {value}")
        return self.ports[value]


async def _http(spec: dict[str, Any], target: Target, limit_s: float,
                client: httpx.AsyncClient) -> tuple[bool, str]:
    host = spec.get("host") or target.pod_ip
    if host != target.pod_ip:
        # Only the environment's own addresses are ever contacted.
        return False, f"probe host {host} is not the pod's address"
    scheme = str(spec.get("scheme", "HTTP")).lower()
    path = spec.get("path", "/")
    if not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://{host}:{target.port(spec['port'])}{path}"
    headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
    resp = await client.get(url, headers=headers, timeout=limit_s)
    ok = 200 <= resp.status_code < 400
    return ok, "" if ok else f"HTTP probe failed with statuscode: {resp.status_code}"


async def _tcp(spec: dict[str, Any], target: Target, limit_s: float) -> tuple[bool, str]:
    host = spec.get("host") or target.pod_ip
    if host != target.pod_ip:
        return False, f"probe host {host} is not the pod's address"
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(host, target.port(spec["port"])), limit_s)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, ""


def _in_its_own_root(pid: int) -> bool:
    """Whether the container's process has its own mount namespace and root: until the
    launcher has built the root and changed into it, joining the process's namespaces would
    probe the host's files."""
    try:
        if Path(f"/proc/{pid}/ns/mnt").readlink() == Path("/proc/self/ns/mnt").readlink():
            return False
        root, host = Path(f"/proc/{pid}/root").stat(), Path("/").stat()
    except OSError:
        return False
    return (root.st_dev, root.st_ino) != (host.st_dev, host.st_ino)


async def _exec(spec: dict[str, Any], target: Target, limit_s: float) -> tuple[bool, str]:
    if not _in_its_own_root(target.pid):
        return False, "container is starting"
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--target={target.pid}", "--mount", "--net", "--root", "--wd",
        f"--setuid={target.user['uid']}", f"--setgid={target.user['gid']}", "--",
        *[str(a) for a in spec.get("command") or []],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=target.env, start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False, f"command timed out after {limit_s:g}s"
    ok = proc.returncode == 0
    return ok, "" if ok else f"exit {proc.returncode}: {out.decode(errors='replace')[-500:]}"


async def run(probe: dict[str, Any], target: Target,
              client: httpx.AsyncClient) -> tuple[bool, str]:
    """One probe attempt: (succeeded, why not)."""
    timeout = Settings.of(probe).timeout
    try:
        if "httpGet" in probe:
            return await _http(probe["httpGet"], target, timeout, client)
        if "tcpSocket" in probe:
            return await _tcp(probe["tcpSocket"], target, timeout)
        if "exec" in probe:
            return await _exec(probe["exec"], target, timeout)
    except (OSError, TimeoutError, ValueError, httpx.HTTPError) as err:
        return False, f"{type(err).__name__}: {err}"
    return False, "probe has no httpGet, tcpSocket or exec handler"
