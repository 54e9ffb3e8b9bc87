"""What one container runs, from its image and its spec as a kubelet and a runtime combine
them: command line, environment, working folder, user, root filesystem and mounts; and
starting it inside the pod's namespaces."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from modelship_dev.imagestore import Image
from modelship_dev.nodeagent import users
from modelship_dev.nodeagent.rootfs import layers_dir
from modelship_dev.nodeagent.sandbox import Sandbox

LAUNCHER = Path(__file__).with_name("launch.py")
# What a runtime gives a container whose image sets no PATH.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """The container cannot be started as specified: CreateContainerConfigError, or
    CreateContainerError when the runtime would refuse it."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason


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


def spec_environment(pod: dict[str, Any], container: dict[str, Any], pod_ip: str,
                     host_ip: str, service_env: dict[str, str]) -> dict[str, str]:
    """The variables the kubelet passes: the API server's service variables, then the
    container's `env` in order ($(VAR) sees those defined before it, not the image's)."""
    env = dict(service_env)
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


def environment(image: Image, spec_env: dict[str, str], hostname: str) -> dict[str, str]:
    """The process' environment as a runtime builds it: the image's Env, the kubelet's
    variables over it, HOSTNAME."""
    env = {"PATH": DEFAULT_PATH, **image.environment, "HOSTNAME": hostname}
    env.update(spec_env)
    return env


def command_line(image: Image, container: dict[str, Any], env: dict[str, str]) -> list[str]:
    """Kubernetes' rule: `command` replaces the Entrypoint and drops the image's Cmd; `args`
    replace the Cmd; $(VAR) is expanded in both, never in what comes from the image."""
    command = [expand(str(a), env) for a in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    argv = command + args if command else list(image.entrypoint) + (args or list(image.cmd))
    if not argv:
        raise ConfigError(f"image {image.ref} has no Entrypoint or Cmd and the container "
                          "sets no command", reason="CreateContainerError")
    return argv


def mounts(pod: dict[str, Any], container: dict[str, Any],
           sandbox: Sandbox) -> list[dict[str, Any]]:
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
    return out


def termination_path(container: dict[str, Any]) -> str:
    return str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH)


def security(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The container's securityContext over the pod's (the fields both may set)."""
    return {**(pod["spec"].get("securityContext") or {}),
            **(container.get("securityContext") or {})}


def launch_spec(pod: dict[str, Any], container: dict[str, Any], sandbox: Sandbox,
                image: Image, lowers: list[Path],
                service_env: dict[str, str]) -> dict[str, Any]:
    """Everything the launcher needs to start `container` from `image` in `sandbox`."""
    spec_env = spec_environment(pod, container, sandbox.net.ip, sandbox.host_ip, service_env)
    env = environment(image, spec_env, pod["metadata"]["name"])
    argv = command_line(image, container, spec_env)
    context = security(pod, container)
    try:
        user = users.resolve(image, lowers, context)
    except users.UserError as err:
        raise ConfigError(str(err)) from None
    name = container["name"]
    message = sandbox.termination_file(name)
    volume_mounts = mounts(pod, container, sandbox)
    volume_mounts.append({"source": str(message), "target": termination_path(container),
                          "file": True})
    volume_mounts.append({"source": str(sandbox.hosts_file()), "target": "/etc/hosts",
                          "file": True})
    layer = sandbox.writable_layer(name)
    shutil.rmtree(layer, ignore_errors=True)  # every start gets a fresh writable layer
    (layer / "upper").mkdir(parents=True)
    (layer / "work").mkdir()
    return {"root": str(sandbox.root(name)), "layers": str(layers_dir()),
            "lower": [p.name for p in lowers], "upper": str(layer / "upper"),
            "work": str(layer / "work"),
            "readOnlyRoot": bool(context.get("readOnlyRootFilesystem")),
            "mounts": volume_mounts, "argv": argv, "env": env,
            "cwd": container.get("workingDir") or image.working_dir or "/",
            "user": user.to_json(),
            "terminationSource": str(message), "terminationPath": termination_path(container)}


async def start(spec: dict[str, Any], sandbox: Sandbox,
                name: str) -> asyncio.subprocess.Process:
    """Start the container as its own process group inside the pod's network namespace."""
    spec_file = sandbox.dir / "specs" / f"{name}.json"
    spec_file.parent.mkdir(exist_ok=True)
    spec_file.write_text(json.dumps(spec))
    message = sandbox.termination_file(name)
    message.write_text("")
    message.chmod(0o666)  # as the kubelet's: any user the container runs as may write it
    with sandbox.log_file(name).open("ab") as log:
        return await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", sandbox.net.netns,
            sys.executable, "-S", "-E", "-s", str(LAUNCHER), str(spec_file),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd="/")
