"""Scale: N ModelDeployments over several namespaces, created at once, on the real control
plane with kwok nodes; how fast the operator converges them and what it costs once idle.

    .venv/bin/python hack/bench/scale.py [--count 1000] [--namespaces 10] [--idle 60]
                                         [--canaries 100] [--pause 5] [--floor]

Adds kwok nodes until every Triton pod has a place (110 pods a node, as `cpu-0`), starts
the operator cluster-wide with the production resync (10 s), creates the ModelDeployments
concurrently, and prints:
- the time from the first create to all Ready (a watch of the ModelDeployments' phases,
  then one list to confirm);
- the operator's RSS (now and peak) and CPU, during convergence and once idle;
- API requests a second, from the kube-apiserver's `apiserver_request_total` for the
  resources the operator reads and writes (this script's own requests taken out; other
  components' requests on the same resources, the scheduler's and kwok's, included), and
  from the operator's own client counter; writes apart;
- the p99 of `modelship_reconcile_duration_seconds` (the operator's histogram);
- then a wave of `--canaries` simultaneous canaries (default 100): that many of the Ready
  ModelDeployments get version 2 at once, with two canary steps of `--pause` each and
  analysis every second against a real Prometheus (a user check on Prometheus' own `up`
  series, which it scrapes every second: the query, its answer and the verdict are real;
  kwok's pods serve no requests, so Triton's built-in checks would only be Inconclusive).
  From each rollout's `status.history` (its start and end, to the millisecond) it prints
  the time from the spec change to the start, and the time to promotion beyond the
  configured pauses, per step; a watch of the resources gives each stage's own time
  (status.rollout.stageStartedAt): Starting (the candidate's pods made ready by kwok and
  the controllers), then each canary step beyond its pause.
With --floor no operator runs: the Deployments and Services its first passes would apply
are applied directly, and it prints the time to all Deployments available: what the
control plane alone needs for the same objects on the same machine.
Goals (issue 11): 1000 converge in <= 60 s, RSS <= 256 MB, idle <= 1 request/s, 0 writes,
per-step overhead <= 1 s beyond the configured pause.

Last measured on the 2-core development machine, shared with other work (load average in
brackets), back to back with `--canaries 0 --idle 5`: 1,000 all Ready after 125.5 s
(2.6-3.3; 145.5 s (3.3-3.7) before version Services were headless), `--floor` 95.7 s
(3.4-5.1): operator/floor 1.3, the operator at 23 % of a core, RSS 230 MB, idle 0 writes.
The API server allocates ClusterIPs one at a time (docs/architecture.md, "A thousand at
once"); compare runs back to back and note `uptime` with each.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import shutil
import ssl
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from modelship.core import names, triton_manifests
from modelship.handlers.runtime import MAX_CONCURRENT_PASSES
from modelship_api.modeldeployment import ModelDeployment
from modelship_dev import apiserver_metrics, polling, tools
from modelship_dev.cluster import SIMULATED_TAINT, SIMULATED_TOLERATION, LocalCluster, node_manifest
from modelship_dev.demo import install_crds
from modelship_dev.operator_process import OperatorProcess
from modelship_dev.prometheus import PrometheusProcess

PODS_PER_NODE = 110
RESYNC_SECONDS = 10.0
WAVE_WEIGHTS = (25, 50)  # the wave's canary steps
WAVE_VERSION = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")


def manifest(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "surface-defects", "version": 1},
            "repository": {"hostPath": {"path": "/var/lib/modelship/model-repository"}},
            "runtime": {"backend": "python", "replicas": 1,
                        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
                        "tolerations": [SIMULATED_TOLERATION]},  # kwok's nodes
        },
    }


def canary_patch(prometheus: str, pause_s: float) -> dict[str, Any]:
    """Version 2, rolled out in WAVE_WEIGHTS steps of `pause_s`, judged every second by a
    check whose answer Prometheus really computes (its own targets up)."""
    return {"spec": {
        "model": {"version": WAVE_VERSION},
        "rollout": {
            "canary": {"steps": [{"weight": w, "pause": f"{pause_s:g}s"}
                                 for w in WAVE_WEIGHTS]},
            "analysis": {
                "prometheus": {"address": prometheus},
                "interval": "1s", "minRequests": 0,
                "checks": [{"name": "prometheus-up", "query": "min(up)", "min": 1}],
            },
        },
    }}


def add_nodes(cluster: LocalCluster, pods: int) -> list[str]:
    """kwok nodes like `cpu-0`, enough for `pods` more pods (plus one spare)."""
    count = math.ceil(pods / PODS_PER_NODE) + 1
    names = [f"scale-{i}" for i in range(count)]
    docs = [node_manifest({"name": n, "labels": {"modelship.io/node-class": "cpu"},
                           "capacity": {"cpu": "64", "memory": "256Gi",
                                        "pods": str(PODS_PER_NODE)},
                           "taints": [SIMULATED_TAINT]}) for n in names]
    cluster.kubectl("apply", "-f", "-", input_text="\n---\n".join(json.dumps(d) for d in docs))
    wait("kwok nodes Ready", lambda: all(
        any(c["type"] == "Ready" and c["status"] == "True"
            for c in (n.get("status") or {}).get("conditions") or [])
        for n in json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        if n["metadata"]["name"] in names), timeout=120)
    return names


# Polls every 0.5s here.
wait = functools.partial(polling.wait, interval=0.5)


def api_server(cluster: LocalCluster) -> tuple[str, ssl.SSLContext]:
    """The API server's address and a TLS context with the kubeconfig's admin credentials."""
    config = json.loads(cluster.kubeconfig.read_text())
    user = config["users"][0]["user"]
    server = config["clusters"][0]["cluster"]
    tls = ssl.create_default_context(cafile=server["certificate-authority"])
    tls.load_cert_chain(user["client-certificate"], user["client-key"])
    return server["server"], tls


def api_client(cluster: LocalCluster) -> httpx.AsyncClient:
    address, tls = api_server(cluster)
    return httpx.AsyncClient(base_url=address, verify=tls, timeout=60)


async def create_all(cluster: LocalCluster, objects: list[dict[str, Any]],
                     concurrency: int = 32) -> None:
    limit = asyncio.Semaphore(concurrency)
    async with api_client(cluster) as client:
        async def create(obj: dict[str, Any]) -> None:
            ns = obj["metadata"]["namespace"]
            async with limit:
                resp = await client.post(
                    f"/apis/modelship.io/v1alpha1/namespaces/{ns}/modeldeployments", json=obj)
            if resp.status_code != 201:
                raise SystemExit(f"create {ns}/{obj['metadata']['name']}: {resp.text}")
        await asyncio.gather(*(create(o) for o in objects))


def children(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """What the operator's first pass applies for `obj`: its Deployment, version Service and
    stable Service, rendered by the operator's own code, without the owner reference (the
    owner is not created in --floor)."""
    md = ModelDeployment.model_validate(
        {**obj, "metadata": {**obj["metadata"], "uid": "floor", "generation": 1}})
    out = [triton_manifests.deployment(md, 1, 1), triton_manifests.version_service(md, 1),
           triton_manifests.stable_service(md, names.version_selector(md.metadata.name, 1))]
    for child in out:
        child["metadata"].pop("ownerReferences", None)
    return out


async def apply_all(cluster: LocalCluster, objects: list[dict[str, Any]],
                    concurrency: int) -> None:
    """Server-side apply every object, `concurrency` at once, each owner's in order."""
    limit = asyncio.Semaphore(concurrency)
    async with api_client(cluster) as client:
        async def one(group: list[dict[str, Any]]) -> None:
            async with limit:
                for obj in group:
                    meta = obj["metadata"]
                    base = "/apis/apps/v1" if obj["kind"] == "Deployment" else "/api/v1"
                    plural = obj["kind"].lower() + "s"
                    resp = await client.patch(
                        f"{base}/namespaces/{meta['namespace']}/{plural}/{meta['name']}",
                        params={"fieldManager": "scale-floor", "force": "true"},
                        content=json.dumps(obj),
                        headers={"Content-Type": "application/apply-patch+yaml"})
                    if resp.status_code not in (200, 201):
                        raise SystemExit(f"apply {meta['name']}: {resp.text}")
        await asyncio.gather(*(one(children(o)) for o in objects))


def floor(cluster: LocalCluster, objects: list[dict[str, Any]], timeout: float) -> None:
    """The cluster alone: each ModelDeployment's children applied directly (as many at once
    as the operator runs passes), to every Deployment available; no operator runs."""
    started = time.monotonic()
    asyncio.run(apply_all(cluster, objects, MAX_CONCURRENT_PASSES))
    applied = time.monotonic() - started

    def available() -> int:
        items = json.loads(cluster.kubectl("get", "deployments", "-A", "-o", "json").stdout)
        return sum(1 for d in items["items"]
                   if (d.get("status") or {}).get("availableReplicas") == 1)
    count = 0
    while time.monotonic() < started + timeout:
        count = available()
        if count >= len(objects):
            break
        time.sleep(1)
    print(f"\nfloor (no operator): the children of {len(objects)} ModelDeployments applied in "
          f"{applied:.1f}s ({MAX_CONCURRENT_PASSES} at once), {count} Deployments available "
          f"after {time.monotonic() - started:.1f}s", flush=True)


async def patch_all(cluster: LocalCluster, targets: list[tuple[str, str]],
                    patch: dict[str, Any]) -> dict[tuple[str, str], float]:
    """Merge-patch every (namespace, name) at once; the wall-clock time of each answer."""
    async with api_client(cluster) as client:
        async def one(ns: str, name: str) -> float:
            resp = await client.patch(
                f"/apis/modelship.io/v1alpha1/namespaces/{ns}/modeldeployments/{name}",
                content=json.dumps(patch),
                headers={"Content-Type": "application/merge-patch+json"})
            if resp.status_code != 200:
                raise SystemExit(f"patch {ns}/{name}: {resp.text}")
            return time.time()
        done = await asyncio.gather(*(one(ns, name) for ns, name in targets))
    return dict(zip(targets, done, strict=True))


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return (f"p50 {statistics.median(ordered):.2f} s, p99 {p99:.2f} s, "
            f"max {ordered[-1]:.2f} s")


def watch_modeldeployments(cluster: LocalCluster,
                           stop: threading.Event) -> Iterator[dict[str, Any]]:
    """Every ModelDeployment as it is, then as it changes, until `stop`: a list, then a
    watch from it, again whenever the API server ends the stream (it closes a watch that
    falls behind, as it can while a thousand are created)."""
    address, tls = api_server(cluster)
    url = f"{address}/apis/modelship.io/v1alpha1/modeldeployments"
    with httpx.Client(verify=tls, timeout=httpx.Timeout(30, read=None)) as client:
        while not stop.is_set():
            try:
                listed = client.get(url).raise_for_status().json()
                yield from listed["items"]
                with client.stream("GET", url, params={
                        "watch": "true",
                        "resourceVersion": listed["metadata"]["resourceVersion"]}) as resp:
                    for line in resp.iter_lines():
                        if stop.is_set():
                            return
                        event = json.loads(line)
                        if event.get("type") != "ERROR":  # e.g. 410 Gone: list again
                            yield event.get("object") or {}
            except httpx.HTTPError:
                if stop.is_set():  # the stream ends with the cluster, after the measurement
                    return
                time.sleep(0.5)  # the API server is busy: list and watch again


class PhaseWatch:
    """How many ModelDeployments are Ready, from a watch of them (one stream): polling the
    operator's /metrics instead (thousands of series) took a quarter of its process' time
    with a thousand, and the operator shares its interpreter with that exposition."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.phases: dict[tuple[str, str], str] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def ready(self) -> int:
        return sum(1 for phase in list(self.phases.values()) if phase == "Ready")

    def _run(self) -> None:
        for obj in watch_modeldeployments(self.cluster, self.stop):
            meta = obj.get("metadata") or {}
            self.phases[(meta.get("namespace", ""), meta.get("name", ""))] = \
                (obj.get("status") or {}).get("phase", "")


class StageLog:
    """Every stage each wave rollout entered, with the time its status says it began: a
    watch of the ModelDeployments (one stream, no polling) while the wave runs."""

    def __init__(self, cluster: LocalCluster, wanted: set[tuple[str, str]]) -> None:
        self.cluster, self.wanted = cluster, wanted
        self.stages: dict[tuple[str, str], dict[str, float]] = {k: {} for k in wanted}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for obj in watch_modeldeployments(self.cluster, self.stop):
            self._record(obj)

    def _record(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        rollout = (obj.get("status") or {}).get("rollout") or {}
        if key in self.wanted and rollout.get("stageStartedAt"):
            stage = rollout.get("stage", "")
            if stage == "Canary":
                stage = f"Canary step {rollout.get('step', 0)}"
            self.stages[key].setdefault(stage, epoch(rollout["stageStartedAt"]))


def canary_wave(cluster: LocalCluster, operator: OperatorProcess, proc: Proc, work: Path,
                objects: list[dict[str, Any]], count: int, pause_s: float,
                timeout: float) -> None:
    """`count` canaries at once; their start and their time to promotion beyond the pauses."""
    prometheus = PrometheusProcess(work / "prometheus", scrape_interval="1s")
    prometheus.static_targets = [f"127.0.0.1:{prometheus.port}"]  # itself: `up` is real
    prometheus.start()
    try:
        prometheus.wait_scraping(1)
        targets = [(o["metadata"]["namespace"], o["metadata"]["name"])
                   for o in objects[:count]]
        text = scrape_operator(operator)
        finished0 = metric_sum(text, "modelship_rollouts_total")
        stages = StageLog(cluster, set(targets))
        stages.thread.start()
        cpu0, t0 = proc.cpu_seconds(), time.monotonic()
        patched = asyncio.run(patch_all(cluster, targets, canary_patch(prometheus.url,
                                                                         pause_s)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            finished = metric_sum(scrape_operator(operator), "modelship_rollouts_total")
            if finished - finished0 >= count:
                break
            time.sleep(0.5)
        seconds, cpu1 = time.monotonic() - t0, proc.cpu_seconds()
        stages.stop.set()
        listed = {(md["metadata"]["namespace"], md["metadata"]["name"]): md for md in
                  json.loads(cluster.kubectl("get", "md", "-A", "-o", "json").stdout)["items"]}
        outcomes: dict[str, int] = {}
        start, beyond = [], []
        # Seconds from one stage's start to the next's (the last: to the promotion).
        steps: dict[str, list[float]] = {}
        pauses = pause_s * len(WAVE_WEIGHTS)
        for key, at in patched.items():
            history = (listed[key].get("status") or {}).get("history") or []
            entry = next((h for h in reversed(history) if h.get("version") == WAVE_VERSION),
                         None)
            outcome = entry["outcome"] if entry else "unfinished"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if entry and entry["outcome"] == "Promoted":
                start.append(epoch(entry["startedAt"]) - at)
                beyond.append(epoch(entry["finishedAt"]) - at - pauses)
                seen = sorted(stages.stages[key].items(), key=lambda kv: kv[1])
                ends = [t for _, t in seen[1:]] + [epoch(entry["finishedAt"])]
                for (stage, began), end in zip(seen, ends[:len(seen)], strict=True):
                    steps.setdefault(stage, []).append(end - began)
        print(f"\ncanary wave: {count} canaries at once, {len(WAVE_WEIGHTS)} steps of "
              f"{pause_s:g} s each, analysis every 1 s against Prometheus "
              f"({seconds:.0f}s, outcomes {outcomes}):")
        if beyond:
            print(f"  spec change to rollout start: {quantiles(start)}")
            print(f"  spec change to promotion, beyond the {pauses:g} s of pauses: "
                  f"{quantiles(beyond)}")
            print(f"  per step: {quantiles([b / len(WAVE_WEIGHTS) for b in beyond])}")
            # From status.rollout.stageStartedAt, as the watch saw each stage begin.
            for stage, lasted in steps.items():
                if stage.startswith("Canary"):
                    print(f"  {stage}, beyond its {pause_s:g} s pause ({len(lasted)} seen): "
                          f"{quantiles([t - pause_s for t in lasted])}")
                else:
                    print(f"  {stage} stage ({len(lasted)} seen): {quantiles(lasted)}")
        print(f"  operator: RSS {proc.rss_mb():.0f} MB (peak {proc.rss_mb('VmHWM'):.0f} MB), "
              f"CPU {100 * (cpu1 - cpu0) / seconds:.0f}% of a core", flush=True)
    finally:
        prometheus.stop()


class Proc:
    """RSS and CPU time of one process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def rss_mb(self, field: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def scrape_operator(operator: OperatorProcess) -> str:
    """The operator's metrics page (thousands of series here: a generous timeout)."""
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return str(resp.read().decode())


def ms(seconds: float, top: float = 10.0) -> str:
    """Milliseconds; a quantile past the histogram's largest bucket as `> top`."""
    return f"> {1000 * top:.0f} ms" if math.isinf(seconds) else f"{1000 * seconds:.0f} ms"


def metric_sum(text: str, name: str, *matches: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(m in line for m in matches):
            total += float(line.rsplit(" ", 1)[1])
    return total


def histogram_quantile(text: str, q: float, kind: str) -> float:
    """Prometheus' histogram_quantile over the operator's cumulative buckets."""
    buckets = []
    for line in text.splitlines():
        if line.startswith("modelship_reconcile_duration_seconds_bucket{") and \
                f'kind="{kind}"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((math.inf if le == "+Inf" else float(le),
                            float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return math.inf  # beyond the largest bucket: only "more than" is known
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = upper, count
    return lower


def rates(before: list[apiserver_metrics.Requests], after: list[apiserver_metrics.Requests],
          seconds: float, own: dict[str, float]) -> tuple[float, float, dict[str, float]]:
    """(requests/s, writes/s, by verb and resource) to the operator's resources."""
    delta = apiserver_metrics.delta(before, after)
    for key, count in own.items():
        if key in delta:
            delta[key] -= count
    delta = {k: v for k, v in delta.items() if v}
    writes = sum(v for k, v in delta.items()
                 if k.split(" ", 1)[0] in apiserver_metrics.WRITE_VERBS)
    return sum(delta.values()) / seconds, writes / seconds, delta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds measured once idle")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for all Ready before measuring anyway")
    parser.add_argument("--canaries", type=int, default=100,
                        help="canaries of the wave after the idle measurement (0: none)")
    parser.add_argument("--pause", type=float, default=5.0,
                        help="seconds each canary step of the wave holds")
    parser.add_argument("--floor", action="store_true",
                        help="no operator: apply what its first passes would and time the "
                        "cluster alone to all Deployments available")
    args = parser.parse_args()

    for component in (tools.ETCD, tools.KUBERNETES, tools.KWOK, tools.PROMETHEUS):
        tools.build(component, log=lambda _line: None)
    work = Path(tempfile.mkdtemp(prefix="modelship-scale-"))
    cluster = LocalCluster(work / "cluster", log=lambda _line: None)
    operator: OperatorProcess | None = None
    try:
        cluster.up()
        install_crds(cluster)
        nodes = add_nodes(cluster, args.count)
        namespaces = [f"scale-{i}" for i in range(args.namespaces)]
        for ns in namespaces:
            cluster.kubectl("create", "namespace", ns)
        objects = [manifest(f"md-{i:04d}", namespaces[i % len(namespaces)])
                   for i in range(args.count)]
        if args.floor:
            floor(cluster, objects, args.timeout)
            return
        operator = OperatorProcess(cluster.kubeconfig, work / "operator",
                                   resync_seconds=RESYNC_SECONDS)
        operator.start()
        assert operator.proc is not None
        proc = Proc(operator.proc.pid)
        print(f"{len(nodes)} kwok nodes added for {args.count} pods; operator pid {proc.pid} "
              f"RSS {proc.rss_mb():.0f} MB before any ModelDeployment", flush=True)

        latency0 = apiserver_metrics.write_latency(cluster)
        before, cpu0 = apiserver_metrics.scrape(cluster), proc.cpu_seconds()
        requests0 = metric_sum(scrape_operator(operator), "modelship_kube_requests_total",
                               'watch="False"')
        phases = PhaseWatch(cluster)
        phases.thread.start()
        started = time.monotonic()
        asyncio.run(create_all(cluster, objects))
        created = time.monotonic() - started

        progress = [started]

        def all_ready() -> bool:
            ready = phases.ready()
            if time.monotonic() - progress[0] >= 10:
                progress[0] = time.monotonic()
                print(f"  {time.monotonic() - started:.0f}s: {ready} Ready", flush=True)
            return ready >= args.count
        deadline = started + args.timeout
        while not all_ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        converged = time.monotonic() - started
        phases.stop.set()
        after, cpu1 = apiserver_metrics.scrape(cluster), proc.cpu_seconds()
        text = scrape_operator(operator)
        requests1 = metric_sum(text, "modelship_kube_requests_total", 'watch="False"')
        listed = json.loads(cluster.kubectl("get", "md", "-A", "-o", "json").stdout)["items"]
        ready = sum(1 for md in listed if (md.get("status") or {}).get("phase") == "Ready")
        conv_rate, conv_writes, _ = rates(before, after, converged,
                                          {"POST modeldeployments": args.count})
        outcome = (f"all Ready after {converged:.1f}s" if ready >= args.count else
                   f"NOT CONVERGED: {ready}/{args.count} Ready after {converged:.1f}s")
        print(f"\nconvergence: {args.count} ModelDeployments over {len(namespaces)} "
              f"namespaces created in {created:.1f}s, {outcome} "
              f"(Ready as the API server lists them: {ready}/{args.count})")
        print(f"  operator: RSS {proc.rss_mb():.0f} MB (peak {proc.rss_mb('VmHWM'):.0f} MB), "
              f"CPU {100 * (cpu1 - cpu0) / converged:.0f}% of a core")
        print(f"  API server, operator's resources: {conv_rate:.0f} requests/s "
              f"({conv_writes:.0f} writes/s; includes the scheduler's and kwok's pod writes)")
        print(f"  operator client: {(requests1 - requests0) / converged:.0f} requests/s")
        latency1 = apiserver_metrics.write_latency(cluster)
        served = {k: (v[0] - latency0.get(k, (0.0, 0.0))[0], v[1] - latency0.get(k, (0.0, 0.0))[1])
                  for k, v in latency1.items()}
        print("  API server's mean time per write: " + ", ".join(
            f"{k} {1000 * t / n:.0f} ms ({n:.0f})"
            for k, (t, n) in sorted(served.items(), key=lambda kv: -kv[1][0]) if n > 0))
        print(f"  reconcile p99 {ms(histogram_quantile(text, 0.99, 'ModelDeployment'))}, "
              f"p50 {ms(histogram_quantile(text, 0.5, 'ModelDeployment'))}, "
              f"{metric_sum(text, 'modelship_reconciles_total', 'ModelDeployment'):.0f} "
              f"passes", flush=True)

        if ready < args.count:
            print("\nidle: not measured, the ModelDeployments did not all converge")
            return
        # Idle: let the passes that follow the last events run out (two resync periods).
        time.sleep(2 * RESYNC_SECONDS)
        text = scrape_operator(operator)
        idle0, cpu0 = apiserver_metrics.scrape(cluster), proc.cpu_seconds()
        requests0 = metric_sum(text, "modelship_kube_requests_total", 'watch="False"')
        writes0 = metric_sum(text, "modelship_kube_writes_total")
        passes0 = metric_sum(text, "modelship_reconciles_total", "ModelDeployment")
        t0 = time.monotonic()
        time.sleep(args.idle)
        idle1, cpu1 = apiserver_metrics.scrape(cluster), proc.cpu_seconds()
        seconds = time.monotonic() - t0
        text = scrape_operator(operator)
        idle_rate, idle_writes, idle_by = rates(idle0, idle1, seconds, {})
        everything = (apiserver_metrics.total(idle1, {s.resource for s in idle1})
                      - apiserver_metrics.total(idle0, {s.resource for s in idle0}))
        passes = metric_sum(text, "modelship_reconciles_total", "ModelDeployment") - passes0
        print(f"\nidle ({seconds:.0f}s, {passes:.0f} reconcile passes, "
              f"{passes / seconds:.0f}/s):")
        print(f"  operator: RSS {proc.rss_mb():.0f} MB (peak {proc.rss_mb('VmHWM'):.0f} MB), "
              f"CPU {100 * (cpu1 - cpu0) / seconds:.1f}% of a core")
        print(f"  API server, operator's resources: {idle_rate:.2f} requests/s, "
              f"{idle_writes:.2f} writes/s {idle_by or ''}")
        print(f"  API server, every resource and component (leases, nodes, ...): "
              f"{everything / seconds:.2f} requests/s")
        requests1 = metric_sum(text, "modelship_kube_requests_total", 'watch="False"')
        writes1 = metric_sum(text, "modelship_kube_writes_total")
        print(f"  operator client: {(requests1 - requests0) / seconds:.2f} requests/s, "
              f"{writes1 - writes0:.0f} writes")
        print(f"  reconcile p99 (whole run) "
              f"{ms(histogram_quantile(text, 0.99, 'ModelDeployment'))}", flush=True)
        if args.canaries:
            canary_wave(cluster, operator, proc, work, objects,
                        min(args.canaries, args.count), args.pause, args.timeout)
    finally:
        if operator is not None:
            operator.stop()
        cluster.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
