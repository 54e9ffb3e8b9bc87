"""Chaos: rollouts that must end right while the operator is SIGKILLed at random moments.

On the real control plane, Triton and Prometheus (the simulated data plane of
hack/bench/rollback.py: one Triton process serves every version, and the traffic generator
plays the gateway's part, honouring the GRPCRoute and reporting it accepted), N rollouts
(default 20) run in waves of `--parallel`: canaries of a good version (expected: Promoted),
canaries of a failing version (expected: RolledBack) and blue-greens of either (their
preview gets a share of the generator's requests, as a smoke tester would). Throughout each
wave a killer SIGKILLs the operator after a random delay (seeded RNG) and starts it again at
once, as Kubernetes would restart its pod.

It prints, per rollout, the final state against the expected one (phase, stable version,
the single history entry of the candidate) and then every duplicate or orphan: more than one
Deployment per (ModelDeployment, version), a Deployment or Service of a version that should
be gone, a Service or GRPCRoute missing or extra, a route whose backends name a Service that
does not exist. Finally it deletes every ModelDeployment, still killing the operator, and
reports whatever modelship object is left behind.

    .venv/bin/python hack/bench/chaos.py [--rollouts 20] [--parallel 2] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from modelship import constants
from modelship_dev import polling, tools
from modelship_dev.cluster import SIMULATED_TOLERATION, LocalCluster
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.simulated_plane import simulated_plane
from modelship_dev.traffic import Behaviour, TrafficGenerator, write_model
from modelship_dev.triton import TritonServer

NAMESPACE = "chaos"
KINDS: tuple[tuple[str, Behaviour], ...] = (
    ("canary", "good"), ("canary", "failing"), ("blueGreen", "good"),
    ("canary", "good"), ("canary", "failing"), ("blueGreen", "failing"),
)


@dataclass
class Rollout:
    name: str
    strategy: str
    candidate: Behaviour
    model: str = field(default_factory=lambda: f"c{uuid.uuid4().hex[:8]}")
    final: dict[str, Any] = field(default_factory=dict)

    @property
    def expected(self) -> tuple[str, int]:
        return ("Ready", 2) if self.candidate == "good" else ("RolledBack", 1)

    @property
    def outcome(self) -> str:
        return "Promoted" if self.candidate == "good" else "RolledBack"


def spec(r: Rollout, version: int, prometheus: str) -> dict[str, Any]:
    strategy: dict[str, Any] = (
        {"canary": {"steps": [{"weight": 30, "pause": "5s"}, {"weight": 60, "pause": "5s"}]}}
        if r.strategy == "canary"
        else {"blueGreen": {"previewDuration": "6s", "postSwitchDuration": "4s"}})
    return {
        "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": r.name, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": r.model, "version": version},
            "repository": {"hostPath": {"path": "/models"}},
            "runtime": {"backend": "python", "tolerations": [SIMULATED_TOLERATION]},
            "traffic": {"provider": "gateway",
                        "gateway": {"parentRefs": [{"name": "inference-gateway"}]}},
            "rollout": {
                **strategy,
                # The generator's rate drops while it reads the route (a kubectl per read,
                # several generators on a loaded machine): a window long enough to hold
                # minRequests of a 30% share.
                "analysis": {"prometheus": {"address": prometheus}, "interval": "1s",
                             "window": "8s", "minRequests": 5, "failureLimit": 2,
                             "inconclusiveLimit": 60,
                             "checks": [{"name": "errors", "builtin": "errorRatio",
                                         "max": 0.05}]},
                "scaleDownDelay": "0s", "abortScaleDownDelay": "2s",
            },
        },
    }


def get_all(cluster: LocalCluster, kind: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("-n", NAMESPACE, "get", kind, "-o", "json", check=False)
    return list(json.loads(out.stdout)["items"]) if out.returncode == 0 else []


def statuses(cluster: LocalCluster) -> dict[str, dict[str, Any]]:
    return {md["metadata"]["name"]: dict(md.get("status") or {})
            for md in get_all(cluster, "modeldeployments")}


def finished(r: Rollout, st: dict[str, Any]) -> bool:
    """The rollout is over (either way) and nothing is left draining."""
    return (st.get("candidateVersion") is None and st.get("phase") in ("Ready", "RolledBack")
            and (st.get("history") or [{}])[0].get("version") == 2 and not st.get("draining"))


class Killer(threading.Thread):
    """SIGKILLs the operator after a random delay and restarts it at once, until stopped."""

    def __init__(self, operator: OperatorProcess, rng: random.Random,
                 delays: tuple[float, float]) -> None:
        super().__init__(name="killer", daemon=True)
        self.operator, self.rng, self.delays = operator, rng, delays
        self.stop = threading.Event()
        self.kills = 0
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(*self.delays)):
            with self.lock:
                self.operator.kill()
                self.kills += 1
                self.operator.start(timeout=60)


def wave(cluster: LocalCluster, triton: TritonServer, repo: Path, prometheus: str,
         rollouts: list[Rollout], killer_rng: random.Random, operator: OperatorProcess,
         delays: tuple[float, float], timeout: float) -> int:
    """Run `rollouts` together under the killer; returns the kills made."""
    for r in rollouts:
        write_model(repo, r.model, {1: "good", 2: r.candidate})
        httpx.post(f"http://127.0.0.1:{triton.http_port}/v2/repository/models/{r.model}/load",
                   timeout=120).raise_for_status()
        cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(spec(r, 1, prometheus)))
    polling.wait("every v1 Ready", lambda: all(
        statuses(cluster).get(r.name, {}).get("stableVersion") == 1 for r in rollouts), 120, 0.5)
    gens = [TrafficGenerator(cluster, NAMESPACE, r.name, r.model, triton.grpc_url, rate=20,
                             max_seconds=timeout + 30,
                             preview_percent=40 if r.strategy == "blueGreen" else 0)
            for r in rollouts]
    killer = Killer(operator, killer_rng, delays)
    for gen in gens:
        gen.__enter__()
    try:
        for r in rollouts:
            cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(
                spec(r, 2, prometheus)))
        killer.start()
        try:
            polling.wait("every rollout finished", lambda: all(
                finished(r, statuses(cluster).get(r.name, {})) for r in rollouts), timeout, 1)
        except TimeoutError as err:
            print(f"  {err}")
    finally:
        killer.stop.set()
        if killer.is_alive():
            killer.join()
        if not operator.alive():
            operator.start(timeout=60)
        for gen in gens:
            gen.__exit__(None, None, None)
    now = statuses(cluster)
    for r in rollouts:
        r.final = now.get(r.name, {})
    return killer.kills


def verdict(r: Rollout) -> str:
    """'' when the rollout ended as expected, else what differs."""
    st = r.final
    phase, stable = r.expected
    wrong = []
    if (st.get("phase"), st.get("stableVersion")) != (phase, stable):
        wrong.append(f"phase {st.get('phase')} stable {st.get('stableVersion')}")
    history = [h for h in st.get("history") or [] if h.get("version") == 2]
    if [h.get("outcome") for h in history] != [r.outcome]:
        wrong.append(f"history of v2 {[h.get('outcome') for h in history]}")
    if st.get("candidateVersion") is not None:
        wrong.append(f"candidate {st.get('candidateVersion')} still set")
    return "; ".join(wrong)


def version_of(obj: dict[str, Any]) -> str:
    return str((obj["metadata"].get("labels") or {}).get(constants.LABEL_MODEL_VERSION, ""))


def owner_of(obj: dict[str, Any]) -> str:
    return str((obj["metadata"].get("labels") or {}).get(constants.LABEL_DEPLOYMENT, ""))


def orphans(cluster: LocalCluster, rollouts: list[Rollout]) -> list[str]:
    """Every duplicate, orphaned, missing or dangling Deployment, Service and GRPCRoute."""
    want = {r.name: r.expected[1] for r in rollouts}
    found: list[str] = []
    deployments = [d for d in get_all(cluster, "deployments") if owner_of(d)]
    per_version = Counter((owner_of(d), version_of(d)) for d in deployments)
    found += [f"duplicate Deployments of {md} v{v}: {n}" for (md, v), n in per_version.items()
              if n > 1]
    for d in deployments:
        md, name = owner_of(d), d["metadata"]["name"]
        if md not in want or version_of(d) != str(want[md]):
            found.append(f"orphaned Deployment {name} (version {version_of(d)})")
    services = {s["metadata"]["name"] for s in get_all(cluster, "services") if owner_of(s)}
    expected_services = {n for md, v in want.items() for n in (md, f"{md}-v{v}")}
    found += [f"orphaned Service {s}" for s in sorted(services - expected_services)]
    found += [f"missing Service {s}" for s in sorted(expected_services - services)]
    routes = {r["metadata"]["name"]: r for r in get_all(cluster, "grpcroutes")}
    found += [f"orphaned GRPCRoute {n}" for n in sorted(set(routes) - set(want))]
    found += [f"missing GRPCRoute {n}" for n in sorted(set(want) - set(routes))]
    for name, route in routes.items():
        for rule in route["spec"].get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                if ref["name"] not in services:
                    found.append(f"GRPCRoute {name} sends to missing Service {ref['name']}")
    for md, v in want.items():
        if md not in routes:
            continue
        weights = {ref["name"]: ref.get("weight")
                   for ref in routes[md]["spec"]["rules"][0]["backendRefs"]}
        if weights != {f"{md}-v{v}": 100}:
            found.append(f"GRPCRoute {md} weights {weights}, expected all to v{v}")
    return found


def leftovers(cluster: LocalCluster) -> list[str]:
    left = []
    for kind in ("modeldeployments", "deployments", "services", "grpcroutes"):
        left += [f"{kind}/{o['metadata']['name']}" for o in get_all(cluster, kind)
                 if kind == "modeldeployments" or owner_of(o) or kind == "grpcroutes"]
    return left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kill-every", type=float, nargs=2, default=(4.0, 12.0),
                        metavar=("MIN_S", "MAX_S"),
                        help="seconds between kills, drawn uniformly (default 4 12)")
    parser.add_argument("--wave-timeout", type=float, default=150.0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    delays: tuple[float, float] = (args.kill_every[0], args.kill_every[1])
    tools.build_all(log=lambda _line: None)
    rollouts = [Rollout(f"r{i:02d}", *KINDS[i % len(KINDS)]) for i in range(args.rollouts)]
    kills = 0
    started = time.monotonic()
    with simulated_plane(NAMESPACE) as plane:
        cluster, operator = plane.cluster, plane.operator
        for i in range(0, len(rollouts), args.parallel):
            batch = rollouts[i:i + args.parallel]
            made = wave(cluster, plane.triton, plane.repo, plane.prometheus.url, batch, rng,
                        operator, delays, args.wave_timeout)
            kills += made
            for r in batch:
                wrong = verdict(r)
                print(f"{r.name} {r.strategy:9} {r.candidate:7} expected "
                      f"{r.expected[0]:10} v{r.expected[1]}: got "
                      f"{r.final.get('phase')} v{r.final.get('stableVersion')} "
                      f"{'OK' if not wrong else 'WRONG: ' + wrong}", flush=True)
            print(f"  wave {i // args.parallel + 1}: {made} operator kills", flush=True)
        found = orphans(cluster, rollouts)
        # Deleting everything, still under the killer: owner references and the finalizer
        # must leave nothing behind.
        killer = Killer(operator, rng, delays)
        killer.start()
        try:
            cluster.kubectl("-n", NAMESPACE, "delete", "modeldeployments", "--all",
                            "--wait=false")
            with contextlib.suppress(TimeoutError):
                polling.wait("everything deleted", lambda: not leftovers(cluster), 120, 1)
        finally:
            killer.stop.set()
            killer.join()
            kills += killer.kills
        left = leftovers(cluster)
    right = sum(not verdict(r) for r in rollouts)
    print(f"\n{right}/{len(rollouts)} rollouts ended as expected; {kills} operator SIGKILLs "
          f"(seed {args.seed}, one every {args.kill_every[0]:g}-{args.kill_every[1]:g} s); "
          f"{time.monotonic() - started:.0f} s")
    print(f"duplicates/orphans after the rollouts: {len(found)}")
    for line in found:
        print(f"  {line}")
    print(f"left after deleting every ModelDeployment: {len(left)}")
    for line in left:
        print(f"  {line}")


if __name__ == "__main__":
    main()
