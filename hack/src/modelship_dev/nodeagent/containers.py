"""What one container runs: its environment, its command line (resolved in this project's
environment, images ignored), its mounts; and starting it inside the pod's namespaces."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from modelship_dev.nodeagent import triton
from modelship_dev.nodeagent.launch import PRIVATE_TOP
from modelship_dev.nodeagent.sandbox import Sandbox

LAUNCHER = Path(__file__).with_name("launch.py")
VENV_BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """The container cannot be started as specified (a kubelet's CreateContainerConfigError)."""


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, `$$` escapes."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))
    return _REF.sub(sub, text)


def _field(pod: dict[str, Any], path: str, pod_ip: str, host_ip: str) -> str:
    meta = pod["metadata"]
    simple = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
              "metadata.uid": meta["uid"], "spec.nodeName": pod["spec"].get("nodeName", ""),
              "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
              "status.podIP": pod_ip, "status.hostIP": host_ip}
    if path in simple:
        return str(simple[path])
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ConfigError(f"fieldRef {path} is not supported by the local node")


def environment(pod: dict[str, Any], container: dict[str, Any], pod_ip: str,
                host_ip: str) -> dict[str, str]:
    env = {"PATH": f"{VENV_BIN}:{SYSTEM_PATH}", "HOME": "/root",
           "HOSTNAME": pod["metadata"]["name"]}
    if container.get("envFrom"):
        raise ConfigError("envFrom is not supported by the local node")
    for var in container.get("env") or []:
        source = var.get("valueFrom")
        if source is None:
            env[var["name"]] = expand(str(var.get("value", "")), env)
        elif "fieldRef" in source:
            env[var["name"]] = _field(pod, source["fieldRef"]["fieldPath"], pod_ip, host_ip)
        else:
            kind = next(iter(source), "valueFrom")
            raise ConfigError(f"env {var['name']}: {kind} is not supported by the local node")
    return env


def command_line(container: dict[str, Any],
                 env: dict[str, str]) -> tuple[list[str], dict[str, str], bool]:
    """(argv, env, whether it is Triton, which needs the prepared backend folder)."""
    command = list(container.get("command") or [])
    if not command:
        raise ConfigError("images are not run on the local node: the container needs a command")
    argv = [expand(str(a), env) for a in command + list(container.get("args") or [])]
    if Path(argv[0]).name == "tritonserver":
        try:
            return (*triton.resolve(argv, env), True)
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from None
    return argv, env, False


def mounts(pod: dict[str, Any], container: dict[str, Any], sandbox: Sandbox,
           backends: Path | None) -> list[dict[str, Any]]:
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    out: list[dict[str, Any]] = []
    for vm in container.get("volumeMounts") or []:
        volume = volumes.get(vm["name"])
        if volume is None:
            raise ConfigError(f"volume {vm['name']} is not defined in the pod")
        if "hostPath" in volume:
            source = Path(volume["hostPath"]["path"])
            kind = volume["hostPath"].get("type", "")
            if kind == "DirectoryOrCreate":
                source.mkdir(parents=True, exist_ok=True)
            if not source.exists():
                raise ConfigError(f"hostPath {source} does not exist")
        elif "emptyDir" in volume:
            source = sandbox.empty_dir(vm["name"])
        elif "projected" in volume:
            source = sandbox.projected_dir(vm["name"])
        else:
            kind = next((k for k in volume if k != "name"), "unknown")
            raise ConfigError(f"volume {vm['name']}: {kind} volumes are not supported by the "
                              "local node (hostPath, emptyDir and projected are)")
        if vm.get("subPath"):
            source = source / vm["subPath"]
            source.mkdir(parents=True, exist_ok=True)
        out.append({"source": str(source), "target": vm["mountPath"],
                    "readOnly": bool(vm.get("readOnly")), "file": source.is_file()})
    if backends is not None:
        out.append({"source": str(backends), "target": triton.BACKENDS_MOUNT, "readOnly": True})
    return out


def termination_path(container: dict[str, Any]) -> str:
    return str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH)


def project_mounts() -> list[dict[str, Any]]:
    """This project (and its virtualenv in it) when it lives under a folder each container
    gets privately (/tmp, /run — a clean clone often does): commands, the editable install
    and the Triton wheel resolve there, so the container sees it read-only at the same
    path."""
    project = Path(sys.prefix).resolve().parent
    if len(project.parts) > 2 and project.parts[1] in PRIVATE_TOP:
        return [{"source": str(project), "target": str(project), "readOnly": True}]
    return []


def launch_spec(pod: dict[str, Any], container: dict[str, Any], sandbox: Sandbox,
                backends: Path) -> dict[str, Any]:
    """Everything the launcher needs to start `container` in `sandbox`."""
    env = environment(pod, container, sandbox.net.ip, sandbox.host_ip)
    argv, env, is_triton = command_line(container, env)
    name = container["name"]
    message = sandbox.termination_file(name)
    volume_mounts = mounts(pod, container, sandbox, backends if is_triton else None)
    volume_mounts.append({"source": str(message), "target": termination_path(container),
                          "file": True})
    volume_mounts += project_mounts()
    return {"root": str(sandbox.root(name)), "tmp": str(sandbox.tmp), "mounts": volume_mounts,
            "argv": argv, "env": env, "cwd": container.get("workingDir") or "/",
            "terminationSource": str(message), "terminationPath": termination_path(container)}


async def start(spec: dict[str, Any], sandbox: Sandbox,
                name: str) -> asyncio.subprocess.Process:
    """Start the container as its own process group inside the pod's network namespace."""
    spec_file = sandbox.dir / "specs" / f"{name}.json"
    spec_file.parent.mkdir(exist_ok=True)
    spec_file.write_text(json.dumps(spec))
    sandbox.termination_file(name).write_text("")
    with sandbox.log_file(name).open("ab") as log:
        return await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", sandbox.net.netns,
            sys.executable, "-S", "-E", "-s", str(LAUNCHER), str(spec_file),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd="/")
