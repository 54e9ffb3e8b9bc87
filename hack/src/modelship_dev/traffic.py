"""Real Triton model versions that behave well or badly, and a traffic generator that plays
the gateway's part.

Until the full data plane exists, no gateway routes the traffic: the generator
reads the GRPCRoute the operator wrote from the real API server and honours it, sending each
request to the version its weights pick and mirroring the share its RequestMirror filter
names. Like a gateway it then reports, in the route's status, that it accepted the generation
it now serves (the operator holds a rollout until its route is accepted, and removes a version
only once a route without it is). Requests really go over gRPC to a real Triton, whose real
metrics a real Prometheus scrapes, and the operator judges the candidate from those.
"""

from __future__ import annotations

import json
import random
import re
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]

from modelship_dev.background import Background
from modelship_dev.cluster import LocalCluster

Behaviour = Literal["good", "failing", "slow", "steady", "tail", "collapsed"]
# "steady": every request takes STEADY_S. "tail": the same, except that every TAIL_EVERY-th
# request takes TAIL_S longer: a mean within 1.5x of "steady" over a slow 2% tail.
# "collapsed": answers like "good", but predicts "ok" for every request where the others
# predict ok, scratch and dent 8:1:1 (modelship_predictions_total, as the runner counts).
STEADY_S, TAIL_EVERY, TAIL_S = 0.02, 50, 0.2

# A Python-backend model whose behaviour is fixed per version folder. Like modelship's
# runner, a failing version raises from execute() (Triton then counts the request in
# nv_inference_request_failure) and counts it in modelship_runner_errors_total.
MODEL_PY = textwrap.dedent('''
    import time
    import numpy as np
    import triton_python_backend_utils as pb_utils

    BEHAVIOUR = "{behaviour}"

    class TritonPythonModel:
        def initialize(self, args):
            family = pb_utils.MetricFamily(
                name="modelship_runner_errors_total", description="runner errors",
                kind=pb_utils.MetricFamily.COUNTER)
            self.errors = family.Metric(labels={{"model": args["model_name"],
                                                 "version": args["model_version"],
                                                 "reason": "inference"}})
            self.served = 0
            # Kept: a Metric outlives its MetricFamily only as long as the family lives.
            self.family = pb_utils.MetricFamily(
                name="modelship_predictions_total", description="predictions by class",
                kind=pb_utils.MetricFamily.COUNTER)
            self.predictions = {{c: self.family.Metric(labels={{
                "model": args["model_name"], "version": args["model_version"], "class": c}})
                for c in ("ok", "scratch", "dent")}}
            self.predicted = 0

        def execute(self, requests):
            if BEHAVIOUR == "failing":
                self.errors.increment(len(requests))
                raise pb_utils.TritonModelException("inference failed: bad weights")
            if BEHAVIOUR == "slow":
                time.sleep(0.1)
            if BEHAVIOUR in ("steady", "tail"):
                time.sleep({steady_s})
            if BEHAVIOUR == "tail":
                before, self.served = self.served, self.served + len(requests)
                if self.served // {tail_every} > before // {tail_every}:
                    time.sleep({tail_s})
            out = []
            for request in requests:
                label = "ok" if BEHAVIOUR == "collapsed" else (
                    ("ok",) * 8 + ("scratch", "dent"))[self.predicted % 10]
                self.predicted += 1
                self.predictions[label].increment(1)
                x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
                out.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("y", (x * 2).astype(np.float32))]))
            return out
''')
# No model_warmup, on purpose: a version's first request is slow (30-290 ms measured here),
# and the rollout tests prove the analysis does not roll a good version back for it.
CONFIG = textwrap.dedent('''
    name: "{model}"
    backend: "python"
    max_batch_size: 0
    input [ {{ name: "x" data_type: TYPE_FP32 dims: [ 4 ] }} ]
    output [ {{ name: "y" data_type: TYPE_FP32 dims: [ 4 ] }} ]
    instance_group [ {{ kind: KIND_CPU count: 1 }} ]
    version_policy: {{ all: {{}} }}
''')


def write_model(repository: Path, model: str, behaviours: dict[int, Behaviour]) -> None:
    """`<repository>/<model>/` with one version folder per behaviour."""
    root = repository / model
    for version, behaviour in behaviours.items():
        (root / str(version)).mkdir(parents=True, exist_ok=True)
        (root / str(version) / "model.py").write_text(MODEL_PY.format(
            behaviour=behaviour, steady_s=STEADY_S, tail_every=TAIL_EVERY, tail_s=TAIL_S))
    (root / "config.pbtxt").write_text(CONFIG.format(model=model))


@dataclass
class Route:
    """The traffic split as the GRPCRoute says: version -> weight, mirror target, percent."""

    weights: dict[int, int]
    mirror_version: int | None = None
    mirror_percent: int = 0
    generation: int = 0
    parent_refs: list[dict[str, str]] = field(default_factory=list)


CONTROLLER_NAME = "modelship.io/traffic-generator"


def backend_version(backend: str, name: str) -> int:
    """The model version of a backend Service `<name>-v<N>` or `<name>-v<N>-r<R>` (a later
    pod-template revision). This stand-in sends every request to one Triton by model
    version, so two revisions of one version are one destination: their weights add up."""
    m = re.fullmatch(re.escape(name) + r"-v(\d+)(?:-r\d+)?", backend)
    if m is None:
        raise ValueError(f"backend {backend!r} is not a version Service of {name!r}")
    return int(m.group(1))


def read_route(cluster: LocalCluster, namespace: str, name: str) -> Route | None:
    out = cluster.kubectl("-n", namespace, "get", "grpcroute", name, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    obj = json.loads(out.stdout)
    rule = obj["spec"]["rules"][0]  # the weighted rule (the preview rule follows it)
    weights: dict[int, int] = {}
    for ref in rule["backendRefs"]:
        version = backend_version(ref["name"], name)
        weights[version] = weights.get(version, 0) + int(ref.get("weight", 1))
    route = Route(weights)
    for f in rule.get("filters") or []:
        if f["type"] == "RequestMirror":
            ref = f["requestMirror"]["backendRef"]["name"]
            route.mirror_version = backend_version(ref, name)
            route.mirror_percent = int(f["requestMirror"].get("percent", 100))
    route.generation = int(obj["metadata"].get("generation", 0))
    route.parent_refs = list(obj["spec"].get("parentRefs") or [])
    return route


def accept_route(cluster: LocalCluster, namespace: str, name: str, route: Route) -> None:
    """Report, as a gateway does, that `route.generation` is accepted with its backends
    resolved (on every parent it names)."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conditions = [{"type": t, "status": "True", "reason": t, "observedGeneration":
                   route.generation, "lastTransitionTime": at,
                   "message": "served by the traffic generator"}
                  for t in ("Accepted", "ResolvedRefs")]
    status = {"parents": [{"parentRef": ref, "controllerName": CONTROLLER_NAME,
                           "conditions": conditions} for ref in route.parent_refs]}
    cluster.kubectl("-n", namespace, "patch", "grpcroute", name, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": status}), check=False)


@dataclass
class TrafficStats:
    sent: dict[int, int] = field(default_factory=dict)
    failed: dict[int, int] = field(default_factory=dict)
    mirrored: int = 0
    weights_seen: list[dict[int, int]] = field(default_factory=list)
    first_failure_at: dict[int, float] = field(default_factory=dict)  # time.monotonic()


class TrafficGenerator(Background):
    """Bounded background traffic: `rate` requests a second for at most `max_seconds`."""

    def __init__(self, cluster: LocalCluster, namespace: str, name: str, model: str,
                 grpc_url: str, rate: float = 40.0, max_seconds: float = 240.0,
                 preview_percent: int = 0) -> None:
        super().__init__("traffic-generator")
        self.cluster, self.namespace, self.name, self.model = cluster, namespace, name, model
        self.client = grpcclient.InferenceServerClient(url=grpc_url)
        self.rate, self.max_seconds = rate, max_seconds
        # Blue-green previews get synthetic requests on the preview Service, as a smoke
        # tester would; `preview_percent` of requests go to a weight-0 candidate.
        self.preview_percent = preview_percent
        self.stats = TrafficStats()
        self._rng = random.Random(7)
        self.route: Route | None = None
        self._accepted = 0  # the route generation last reported accepted

    def _stopped(self) -> None:
        self.client.close()

    def _infer(self, version: int) -> bool:
        x = grpcclient.InferInput("x", [4], "FP32")
        x.set_data_from_numpy(np.ones(4, dtype=np.float32))
        try:
            self.client.infer(self.model, [x], model_version=str(version),
                              client_timeout=10)
            return True
        except Exception:  # any error response is a failed request for the stats
            return False

    def _pick(self, route: Route) -> int:
        total = sum(route.weights.values())
        if total == 0:
            return min(route.weights)
        point = self._rng.uniform(0, total)
        for version, weight in sorted(route.weights.items()):
            point -= weight
            if point <= 0 and weight > 0:
                return version
        return max(v for v, w in route.weights.items() if w > 0)

    def _run(self) -> None:
        started = time.monotonic()
        next_read = 0.0
        while not self._stop.is_set() and time.monotonic() - started < self.max_seconds:
            now = time.monotonic()
            if now >= next_read:
                self.route = read_route(self.cluster, self.namespace, self.name) or self.route
                if self.route is not None:
                    self.stats.weights_seen.append(dict(self.route.weights))
                    if self.route.generation != self._accepted:
                        accept_route(self.cluster, self.namespace, self.name, self.route)
                        self._accepted = self.route.generation
                next_read = now + 0.3
            route = self.route
            if route is not None:
                version = self._pick(route)
                zero = [v for v, w in route.weights.items() if w == 0]
                if zero and self._rng.uniform(0, 100) < self.preview_percent:
                    version = zero[0]
                ok = self._infer(version)
                self.stats.sent[version] = self.stats.sent.get(version, 0) + 1
                if not ok:
                    self.stats.failed[version] = self.stats.failed.get(version, 0) + 1
                    self.stats.first_failure_at.setdefault(version, time.monotonic())
                if (route.mirror_version is not None
                        and self._rng.uniform(0, 100) < route.mirror_percent):
                    self._infer(route.mirror_version)  # the mirror's answer is discarded
                    self.stats.mirrored += 1
            self._stop.wait(1.0 / self.rate)
