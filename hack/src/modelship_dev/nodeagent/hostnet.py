"""Pod networking on this host: one bridge in the root namespace, a network namespace and a
veth pair per pod, addresses from one range shared by every agent on the machine.

Addresses are claimed with files under /run (one per address, created exclusively under a
host-wide lock), so agents of different clusters on the same machine never collide; a claim
whose owner's state folder is gone is reclaimed together with whatever it left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BRIDGE = "msbr0"
GATEWAY = ipaddress.IPv4Interface("10.251.0.1/16")
RUN_DIR = Path("/run/modelship")
IPAM_DIR = RUN_DIR / "ipam"
# One file per running agent: its API server forwarder listens on the bridge's address.
HOLDERS_DIR = RUN_DIR / "bridge-holders"
NETNS_DIR = Path("/run/netns")


class HostSetupError(RuntimeError):
    """The host cannot run pods (not root, or a tool is missing)."""


def require_host() -> None:
    if os.geteuid() != 0:
        raise HostSetupError("the local node agent needs root (network and mount namespaces)")
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            raise HostSetupError(f"the local node agent needs `{tool}` (iproute2/util-linux)")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with (RUN_DIR / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def agent_tag(state_dir: Path) -> str:
    """A short tag naming one agent's namespaces and interfaces (veth names are <= 15 chars)."""
    return hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:4]


@dataclass(frozen=True)
class PodNet:
    netns: str
    veth: str
    ip: str


def pod_names(tag: str, uid: str) -> tuple[str, str]:
    """(network namespace, host-side veth) for a pod."""
    return f"ms-{tag}-{uid}", f"ms{tag}{uid.replace('-', '')[:8]}"


def netns_exists(name: str) -> bool:
    return bool(name) and (NETNS_DIR / name).exists()


def link_exists(name: str) -> bool:
    return bool(name) and Path(f"/sys/class/net/{name}").exists()


def _ensure_bridge() -> None:
    if link_exists(BRIDGE):
        return
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "add", str(GATEWAY), "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")


def node_address() -> str:
    """The node's InternalIP, on the bridge (created if no pod has yet): where a host process
    that stands in for a hostNetwork pod on this node is reached."""
    with host_lock():
        _ensure_bridge()
    return str(GATEWAY.ip)


def _kill_netns_processes(netns: str) -> None:
    if not netns_exists(netns):
        return
    for pid in ip("netns", "pids", netns, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _remove(netns: str, veth: str) -> None:
    _kill_netns_processes(netns)
    if netns_exists(netns):
        ip("netns", "del", netns, check=False)
    if link_exists(veth):
        ip("link", "del", veth, check=False)


def _claim_is_stale(claim: dict[str, str]) -> bool:
    owner = claim.get("owner")
    return not owner or not Path(owner).is_dir()


def _read_claim(path: Path) -> dict[str, str]:
    try:
        data: dict[str, str] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


def _allocate(owner: Path, netns: str, veth: str) -> str:
    IPAM_DIR.mkdir(parents=True, exist_ok=True)
    for host in GATEWAY.network.hosts():
        if host == GATEWAY.ip:
            continue
        path = IPAM_DIR / str(host)
        if path.exists():
            claim = _read_claim(path)
            if not _claim_is_stale(claim):
                continue
            _remove(claim.get("netns", ""), claim.get("veth", ""))
        path.write_text(json.dumps({"owner": str(owner), "netns": netns, "veth": veth}))
        return str(host)
    raise RuntimeError(f"no free pod address left in {GATEWAY.network}")


def create(owner: Path, tag: str, uid: str) -> PodNet:
    """A network namespace for the pod, wired to the bridge, with its own address."""
    netns, veth = pod_names(tag, uid)
    with host_lock():
        _ensure_bridge()
        address = _allocate(owner, netns, veth)
    net = PodNet(netns, veth, address)
    try:
        _remove(netns, veth)
        ip("netns", "add", netns)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("link", "set", veth, "master", BRIDGE, "up")
        ip("-n", netns, "addr", "add", f"{address}/{GATEWAY.network.prefixlen}", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "route", "add", "default", "via", str(GATEWAY.ip))
    except BaseException:
        destroy(owner, net)
        raise
    return net


def destroy(owner: Path, net: PodNet) -> None:
    """Kill what still runs in the namespace, remove it and its veth, release the address."""
    _remove(net.netns, net.veth)
    if not net.ip:
        return
    with host_lock():
        path = IPAM_DIR / net.ip
        if _read_claim(path).get("owner") == str(owner):
            path.unlink(missing_ok=True)


def hold_bridge(owner: Path) -> None:
    """Make the bridge (and the gateway address) exist until `release_owner(owner)`."""
    with host_lock():
        _ensure_bridge()
        HOLDERS_DIR.mkdir(parents=True, exist_ok=True)
        (HOLDERS_DIR / agent_tag(owner)).write_text(json.dumps({"owner": str(owner)}))


def release_owner(owner: Path) -> None:
    """Release every address (and namespace) still claimed by one agent's state folder, and
    its hold on the bridge."""
    with host_lock():
        holder = HOLDERS_DIR / agent_tag(owner)
        if _read_claim(holder).get("owner") == str(owner):
            holder.unlink(missing_ok=True)
        if not IPAM_DIR.is_dir():
            return
        for path in IPAM_DIR.iterdir():
            claim = _read_claim(path)
            if claim.get("owner") == str(owner):
                _remove(claim.get("netns", ""), claim.get("veth", ""))
                path.unlink(missing_ok=True)


def remove_bridge_if_unused() -> None:
    with host_lock():
        claims = list(IPAM_DIR.iterdir()) if IPAM_DIR.is_dir() else []
        holders = [h for h in HOLDERS_DIR.iterdir() if not _claim_is_stale(_read_claim(h))] \
            if HOLDERS_DIR.is_dir() else []
        ports = list(Path(f"/sys/class/net/{BRIDGE}/brif").glob("*"))
        if not claims and not holders and not ports and link_exists(BRIDGE):
            ip("link", "del", BRIDGE, check=False)
