"""Failover time of the operator's leader election, on the real control plane.

Two `modelship operator` processes with leader election (the defaults: an 8 s Lease
renewed every 2 s) watch one namespace holding a ModelDeployment. Each round SIGKILLs the
leader at a random moment of its renew cycle, as when its node dies, and measures from the
kill to (a) the standby's acquisition of the Lease (its `acquireTime`) and (b) the new
leader's first finished reconcile (its `modelship_reconciles_total`); then the killed one is
started again, as Kubernetes would, and stands by for the next round.

    .venv/bin/python hack/bench/failover.py [--kills 10] [--lease-duration 8] [--renew 2]
"""

from __future__ import annotations

import argparse
import functools
import random
import shutil
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from modelship_dev import polling, tools
from modelship_dev.cluster import LocalCluster
from modelship_dev.demo import install_crds
from modelship_dev.operator_process import OperatorProcess

NAMESPACE = "bench-failover"
LEASE = "modelship-operator"
SAMPLE = Path(__file__).resolve().parents[2] / "crds" / "samples" / "modeldeployment-local.yaml"


# Polls every 0.05s here.
wait = functools.partial(polling.wait, interval=0.05)


def lease_spec(cluster: LocalCluster) -> dict[str, Any]:
    out = cluster.kubectl("-n", NAMESPACE, "get", "lease", LEASE, "-o", "yaml", check=False)
    return dict((yaml.safe_load(out.stdout) or {}).get("spec") or {}) if out.returncode == 0 \
        else {}


def reconciles(op: OperatorProcess) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in op.metrics().splitlines()
               if line.startswith("modelship_reconciles_total{"))


def summary(name: str, values: list[float]) -> str:
    return (f"{name}: min {min(values):.1f}s, median {statistics.median(values):.1f}s, "
            f"max {max(values):.1f}s over {len(values)} kills")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--lease-duration", type=int, default=8)
    parser.add_argument("--renew", type=float, default=2.0)
    args = parser.parse_args()
    for component in (tools.ETCD, tools.KUBERNETES, tools.KWOK):
        tools.build(component, log=lambda _line: None)
    work = Path(tempfile.mkdtemp(prefix="modelship-bench-"))
    cluster = LocalCluster(work / "cluster", log=lambda _line: None)
    cluster.up()
    lease_args = [f"--lease-duration={args.lease_duration}",
                  f"--lease-renew-period={args.renew}"]
    ops = {name: OperatorProcess(cluster.kubeconfig, work / name, NAMESPACE,
                                 leader_election=True, name=name, args=lease_args)
           for name in ("op-a", "op-b")}
    acquired: list[float] = []
    reconciled: list[float] = []
    try:
        install_crds(cluster)
        cluster.kubectl("create", "namespace", NAMESPACE)
        for op in ops.values():
            op.start()
        cluster.kubectl("-n", NAMESPACE, "apply", "-f", str(SAMPLE))
        for i in range(args.kills):
            holder = wait("a leader", lambda: lease_spec(cluster).get("holderIdentity"), 60)
            leader_name = next(n for n in ops if holder.startswith(f"{n}-"))
            leader = ops[leader_name]
            standby = next(op for n, op in ops.items() if n != leader_name)
            wait("the leader's first reconcile", lambda op=leader: reconciles(op) > 0, 60)
            time.sleep(random.uniform(0, args.renew))  # any moment of the renew cycle
            killed_at = time.time()
            leader.kill()
            prefix = f"{standby.name}-"
            spec = wait("the standby holds the Lease", lambda p=prefix: (
                s if (s := lease_spec(cluster)).get("holderIdentity", "").startswith(p)
                else None), 60)
            wait("the new leader's first reconcile", lambda op=standby: reconciles(op) > 0, 60)
            reconciled.append(time.time() - killed_at)
            acquired.append(datetime.fromisoformat(spec["acquireTime"]).timestamp()
                            - killed_at)
            print(f"kill {i + 1}: {leader_name} killed; {standby.name} took the Lease after "
                  f"{acquired[-1]:.1f}s, first reconcile after {reconciled[-1]:.1f}s",
                  flush=True)
            leader.start()  # restarted as Kubernetes would: a standby now
    finally:
        for op in ops.values():
            op.stop()
        cluster.down()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nLease {args.lease_duration}s, renewed every {args.renew}s:")
    print(summary("kill -> Lease taken", acquired))
    print(summary("kill -> first reconcile by the new leader", reconciled))


if __name__ == "__main__":
    main()
