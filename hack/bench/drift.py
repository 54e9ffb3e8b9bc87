"""Drift detection on the real data plane: a version trained by a real TrainingRun, served by
Triton pods running modelship's runner, 20 requests/s of 8 generated camera images through
Envoy Gateway, the Prometheus Operator's Prometheus scraping the pods, the operator judging
from it. Prints:

1. false alarms (DataDrift or PredictionDrift turning True) over `--stationary-minutes` of
   stationary traffic (default 30; goal 0), with the evaluations made and the highest PSI
   each statistic scored;
2. per brightness shift (the lighting models are trained under is 0.5; `--shifts`), the time
   from the lighting change to DataDrift=True (goal <= 60 s) and, lighting restored, to
   DataDrift=False: the detection-power table.

The ModelDeployment uses spec.monitoring's defaults (window 1m, interval 15s, minSamples 200,
raise after 2, clear after 3) unless `--window`/`--interval` are given. Needs root (node
agent, gateway); the gateway's host ports are shared, so:

    flock /tmp/modelship-gateway.lock .venv/bin/python hack/bench/drift.py \\
        [--stationary-minutes 30] [--shifts -0.01 -0.02 -0.05 -0.1 -0.2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modelship_dev import tools
from modelship_dev.cluster import LocalCluster
from modelship_dev.demo import install_crds
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.stack import LocalStack
from modelship_dev.workload import (
    LIGHTING,
    InferenceLoad,
    model_deployment,
    node_folder,
    training_run,
)

NAMESPACE = "drift-bench"
MODEL, MD = "surface-defects", "defects"
FOLLOW = {"pipeline": "defects"}
RATE = 20.0
CANARY = {"canary": {"steps": [{"weight": 50, "pause": "5s"}]}}


class Bench:
    def __init__(self, cluster: LocalCluster, stack: LocalStack) -> None:
        self.cluster, self.stack = cluster, stack

    def status(self) -> dict[str, Any]:
        out = self.cluster.kubectl("-n", NAMESPACE, "get", "md", MD, "-o", "json",
                                   check=False)
        return dict(json.loads(out.stdout).get("status") or {}) if out.returncode == 0 else {}

    def condition(self, kind: str, st: dict[str, Any] | None = None) -> str:
        st = self.status() if st is None else st
        return next((c["status"] for c in st.get("conditions") or [] if c["type"] == kind),
                    "absent")

    def wait(self, what: str, reached: Callable[[dict[str, Any]], bool], timeout: float
             ) -> float | None:
        """Seconds until `reached` holds for the status, or None after `timeout`."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if reached(self.status()):
                return time.monotonic() - start
            time.sleep(0.5)
        print(f"  {what}: not within {timeout:.0f} s")
        return None

    def scores(self) -> tuple[float, dict[str, float]]:
        """The operator's evaluations of the ModelDeployment so far and its PSI gauges."""
        op = self.stack.operator
        assert isinstance(op, OperatorProcess)
        evaluations, psi = 0.0, {}
        for family in text_string_to_metric_families(op.metrics()):
            for s in family.samples:
                if s.labels.get("namespace") != NAMESPACE or s.labels.get("name") != MD:
                    continue
                if s.name == "modelship_monitoring_evaluations_total":
                    evaluations = s.value
                elif s.name == "modelship_drift_score":
                    psi[s.labels["statistic"]] = s.value
        return evaluations, psi


def stationary(bench: Bench, minutes: float) -> None:
    raised: list[str] = []
    highest: dict[str, float] = {}
    before = {k: bench.condition(k) for k in ("DataDrift", "PredictionDrift")}
    start_evaluations = bench.scores()[0]
    end = time.monotonic() + minutes * 60
    while time.monotonic() < end:
        st = bench.status()
        for kind in ("DataDrift", "PredictionDrift"):
            now = bench.condition(kind, st)
            if now == "True" and before[kind] != "True":
                raised.append(f"{kind} at {minutes * 60 - (end - time.monotonic()):.0f} s")
            before[kind] = now
        for name, value in bench.scores()[1].items():
            highest[name] = max(highest.get(name, 0.0), value)
        time.sleep(1.0)
    evaluations = bench.scores()[0] - start_evaluations
    print(f"stationary traffic, {minutes:g} min, {evaluations:.0f} evaluations: "
          f"{len(raised)} false alarms{' (' + ', '.join(raised) + ')' if raised else ''}")
    print("  highest PSI per statistic: " + ", ".join(
        f"{k} {v:.3f}" for k, v in sorted(highest.items())))


def power(bench: Bench, load: InferenceLoad, shifts: list[float], detect_s: float,
          clear_s: float) -> None:
    rows = []
    for shift in shifts:
        brightness = round(LIGHTING + shift, 4)
        load.set_lighting(brightness)
        detected = bench.wait(f"DataDrift at brightness {brightness:g}",
                              lambda st: bench.condition("DataDrift", st) == "True", detect_s)
        psi = bench.scores()[1].get("input_brightness")
        load.set_lighting(LIGHTING)
        cleared = bench.wait("DataDrift cleared", lambda st: bench.condition(
            "DataDrift", st) == "False", clear_s) if detected is not None else None
        rows.append((shift, brightness, detected, psi, cleared))
        print(f"  shift {shift:+.2f}: DataDrift "
              + (f"after {detected:.1f} s" if detected is not None else "not detected")
              + (f", cleared {cleared:.1f} s after the lighting was restored"
                 if cleared is not None else ""))
        if detected is not None and cleared is None:
            break  # still drifted: the next shift would start from a raised drift
    print("\n| brightness shift | brightness | DataDrift after | input_brightness PSI | "
          "cleared after restoring |")
    print("|---|---|---|---|---|")
    for shift, brightness, detected, psi, cleared in rows:
        cells = [f"{shift:+.2f}", f"{brightness:g}",
                 f"{detected:.1f} s" if detected is not None else f"> {detect_s:.0f} s",
                 f"{psi:.2f}" if psi is not None else "-",
                 f"{cleared:.1f} s" if cleared is not None else "-"]
        print("| " + " | ".join(cells) + " |")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stationary-minutes", type=float, default=30.0)
    parser.add_argument("--shifts", type=float, nargs="+",
                        default=[-0.01, -0.02, -0.05, -0.1, -0.2])
    parser.add_argument("--window", help="spec.monitoring.window (default 1m)")
    parser.add_argument("--interval", help="spec.monitoring.interval (default 15s)")
    parser.add_argument("--detect-timeout", type=float, default=180.0)
    parser.add_argument("--clear-timeout", type=float, default=300.0)
    args = parser.parse_args()
    monitoring = {k: v for k, v in (("window", args.window), ("interval", args.interval))
                  if v is not None}

    tools.build_all()
    work = Path(tempfile.mkdtemp(prefix="modelship-drift-bench-"))
    cluster = LocalCluster(work / "cluster", log=lambda _m: None)
    repository = node_folder(work / "model-repository")
    try:
        cluster.up()
        install_crds(cluster)
        with LocalStack(cluster, work, NAMESPACE) as stack:
            bench = Bench(cluster, stack)
            cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", input_text=json.dumps(
                training_run("defects-1", MODEL, repository, labels=FOLLOW, seed=1)))
            trained = bench.wait("v1 trained", lambda _st: json.loads(cluster.kubectl(
                "-n", NAMESPACE, "get", "trainingrun", "defects-1", "-o", "json").stdout).get(
                "status", {}).get("phase") == "Succeeded", 600)
            assert trained is not None, "defects-1 did not succeed"
            cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", input_text=json.dumps(
                model_deployment(MD, MODEL, repository, follow=FOLLOW,
                                 parent_ref=stack.gateway.parent_ref,
                                 prometheus_url=stack.prometheus.url, rollout=CANARY,
                                 monitoring=monitoring)))
            ready = bench.wait("v1 Ready", lambda st: st.get("phase") == "Ready", 300)
            assert ready is not None, bench.status()
            budget = args.stationary_minutes * 60 + len(args.shifts) * (
                args.detect_timeout + args.clear_timeout) + 600
            with InferenceLoad(stack.gateway.url, MODEL, rate=RATE,
                               max_seconds=budget) as load:
                judged = bench.wait("a first conclusive judgement", lambda st: bench.condition(
                    "DataDrift", st) == "False", 300)
                assert judged is not None, bench.status()
                print(f"{RATE:g} requests/s of 8 images; spec.monitoring "
                      f"{json.dumps(monitoring) if monitoring else 'defaults'}; "
                      f"first judgement {judged:.0f} s after traffic began")
                stationary(bench, args.stationary_minutes)
                print("detection power (brightness shift from 0.5, then restored):")
                power(bench, load, args.shifts, args.detect_timeout, args.clear_timeout)
                print(f"\nclients: {sum(load.answered().values())} answers, "
                      f"{load.failed()} errors")
    finally:
        cluster.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
