"""What the whole local loop runs: TrainingRuns and ModelDeployments placed on the node agent's
node (so their pods are real processes), and a gRPC client sending real inference requests
through the local gateway while recording what each answer says about who served it.

Shared by `modelship demo`, the end-to-end tests and the gateway benchmark.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]

from modelship import constants
from modelship_dev import images
from modelship_dev.autoreview import GroundTruth
from modelship_dev.background import Background
from modelship_dev.nodeagent.node import NODE_CLASS_LABEL
from modelship_trainer.data import FloatArray

NODE = "local-0"
NODE_TAINT = "modelship.io/local-processes"
# Pods land on the node agent's node only (kwok nodes run nothing for real).
PLACEMENT: dict[str, Any] = {
    "nodeSelector": {NODE_CLASS_LABEL: "local"},
    "tolerations": [{"key": NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
}
# The node agent runs pods from these (make images builds them into the local store).
TRAINER_IMAGE = images.ref("trainer")
TRITON_IMAGE = images.ref("triton")
# The user modelship's images run as (USER in their Containerfiles).
IMAGE_USER = 65532
# The node directory the samples publish to and serve from (crds/samples/*-local, -cpu).
SAMPLE_REPOSITORY = Path("/var/lib/modelship/model-repository")
IMAGE_SIZE = 32  # the generated dataset's default image side
BATCH = 8  # images per request, as a camera station sends its crops
# Batches a load cycles through: 2048 distinct images, so a drift window's histograms are
# those of the camera's distribution, not of a few images sent again and again.
POOL_BATCHES = 256
LIGHTING = 0.5  # GeneratedDataset's default brightness: the lighting models are trained in


def node_folder(path: Path) -> Path:
    """A node directory the trainer may publish into, as a platform team provisions one: a
    hostPath the kubelet creates (DirectoryOrCreate) is root's, 0755, and the trainer runs
    as its image's user."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, IMAGE_USER, IMAGE_USER)
    return path


def training_run(name: str, model: str, repository: Path, *, labels: dict[str, str],
                 seed: int, samples: int = 3000, hyperparameters: dict[str, str] | None = None,
                 min_accuracy: float = 0.85, baseline_deployment: str | None = None,
                 min_improvement: float = 0.0, max_regression: float | None = None,
                 ) -> dict[str, Any]:
    """A CPU TrainingRun of the built-in recipe, published for the Python-backend runner into
    a node directory; gated on accuracy and, when given, against the deployment's stable
    version on the same held-out split."""
    gate: dict[str, Any] = {"thresholds": [{"metric": "accuracy", "min": min_accuracy}]}
    if baseline_deployment is not None:
        baseline: dict[str, Any] = {"metric": "accuracy", "modelDeployment": baseline_deployment,
                                    "minImprovement": min_improvement}
        if max_regression is not None:
            baseline["maxRegression"] = max_regression
        gate["baseline"] = baseline
    return {
        "apiVersion": "modelship.io/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "model": model,
            "trainer": {"image": TRAINER_IMAGE, "hyperparameters": hyperparameters or {},
                        **PLACEMENT},
            "dataset": {"generated": {"seed": seed, "samples": samples,
                                      "imageSize": IMAGE_SIZE}},
            "gate": gate,
            "publish": {"backend": "python",
                        "repository": {"hostPath": {"path": str(repository)}}},
            "job": {"backoffLimit": 0, "activeDeadlineSeconds": 600},
        },
    }


def model_deployment(name: str, model: str, repository: Path, *, follow: dict[str, str],
                     parent_ref: dict[str, str], prometheus_url: str,
                     rollout: dict[str, Any], monitoring: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """A ModelDeployment that serves the newest blessed TrainingRun matching `follow`, behind
    the local gateway, judged by `prometheus_url`. `rollout` holds the strategy block; an
    analysis block is added when it has none. `monitoring`, when given, is its
    spec.monitoring (otherwise the defaults watch it)."""
    rollout = dict(rollout)
    rollout.setdefault("analysis", {
        "prometheus": {"address": prometheus_url, "timeout": "2s"},
        "interval": "1s", "window": "6s", "initialDelay": "3s", "failureLimit": 2,
        "inconclusiveLimit": 30,
        "checks": [{"name": "errors", "builtin": "errorRatio", "max": 0.05},
                   {"name": "latency", "builtin": "meanLatency", "relativeToStable": True,
                    "max": 2.0}],
    })
    rollout.setdefault("scaleDownDelay", "5s")
    rollout.setdefault("abortScaleDownDelay", "5s")
    return {
        "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": model, "fromTrainingRuns": {"matchLabels": follow}},
            "repository": {"hostPath": {"path": str(repository)}},
            "runtime": {"image": TRITON_IMAGE, "backend": "python", "replicas": 1,
                        "startupTimeout": "3m", **PLACEMENT},
            "traffic": {"provider": "gateway", "gateway": {"parentRefs": [parent_ref]}},
            "rollout": rollout,
            **({"monitoring": monitoring} if monitoring is not None else {}),
        },
    }


def camera_images(brightness: float = LIGHTING, seed: int = 5,
                  batches: int = POOL_BATCHES) -> FloatArray:
    """`batches` request batches of the built-in recipe's generated images (the distribution
    its models are trained and profiled on) under `brightness` lighting, GeneratedDataset's
    drift knob: lower is a darker factory."""
    return camera_data(brightness, seed, batches)[0]


def camera_data(brightness: float = LIGHTING, seed: int = 5, batches: int = POOL_BATCHES
                ) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """camera_images and their true labels, (batches, BATCH)."""
    # Imported here: the recipe's module brings torch (seconds to import), which this
    # module's other users never need.
    from modelship_api.trainingrun import GeneratedDataset
    from modelship_trainer.surface_defects import generate

    spec = GeneratedDataset(seed=seed, samples=batches * BATCH, image_size=IMAGE_SIZE,
                            brightness=brightness)
    data = generate(spec)
    return (data.images.reshape(batches, BATCH, 1, IMAGE_SIZE, IMAGE_SIZE),
            np.asarray(data.labels, dtype=np.int64).reshape(batches, BATCH))


@dataclass
class Second:
    """What clients saw in one second, per answering version."""

    ok: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    failed: int = 0
    latency_ms: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))


class InferenceLoad(Background):
    """Bounded background gRPC traffic to `model` through `target`: `rate` requests a second,
    each a batch of `BATCH` camera images (`camera_images`), for at most `max_seconds`.
    Triton names the version that answered in each response, so the split the gateway made
    is measured, not assumed. `set_lighting` changes the images' brightness mid-run. Each
    request carries a request id that `truth` (the generator's labels) resolves: the demo's
    automated reviewer labels the samples serving kept with it."""

    def __init__(self, target: str, model: str, rate: float = 20.0,
                 max_seconds: float = 600.0, seed: int = 5,
                 brightness: float = LIGHTING) -> None:
        super().__init__("inference-load")
        self.target, self.model = target, model
        self.rate, self.max_seconds = rate, max_seconds
        self.seed = seed
        self.truth = GroundTruth()
        pool = self._add_pool(brightness)
        # One attribute, read once per request: a batch is never sent under another
        # pool's request id.
        self._current = (pool, self.truth.pools[pool][0])
        # (seconds since the start, brightness) of each lighting the clients sent under.
        self.lighting: list[tuple[float, float]] = [(0.0, brightness)]
        self.seconds: dict[int, Second] = defaultdict(Second)
        self.errors: dict[str, int] = defaultdict(int)
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def _starting(self) -> None:
        self.started = time.monotonic()

    def set_lighting(self, brightness: float) -> float:
        """From the next request on, images under `brightness` lighting (new images of the
        same parts); returns when, in seconds since the start, the switch took effect."""
        pool = self._add_pool(brightness)
        with self._lock:
            self._current = (pool, self.truth.pools[pool][0])
            at = self.now_s()
            self.lighting.append((at, brightness))
        return at

    @property
    def _images(self) -> FloatArray:
        """The batches sent now."""
        return self._current[1]

    def _add_pool(self, brightness: float) -> str:
        name = f"light{round(brightness * 1000)}"
        if name not in self.truth.pools:
            self.truth.add_pool(name, *camera_data(brightness, self.seed))
        return name

    def _run(self) -> None:
        client = grpcclient.InferenceServerClient(
            self.target, channel_args=[("grpc.enable_http_proxy", 0)])
        try:
            n = 0
            while not self._stop.is_set():
                now = time.monotonic()
                if now - self.started > self.max_seconds:
                    return
                pool, images = self._current
                batch = n % len(images)
                self._one(client, images[batch], now,
                          GroundTruth.request_id(pool, batch, n))
                n += 1
                # Paced to the rate from the start, so a slow answer does not lower it.
                self._stop.wait(max(0.0, self.started + n / self.rate - time.monotonic()))
        finally:
            client.close()

    def _one(self, client: grpcclient.InferenceServerClient, image: Any, now: float,
             request_id: str = "") -> None:
        data = grpcclient.InferInput("images", list(image.shape), "FP32")
        data.set_data_from_numpy(image)
        second = int(now - self.started)
        try:
            result = client.infer(self.model, [data], client_timeout=10,
                                  request_id=request_id)
            version = int(result.get_response().model_version)
            elapsed = (time.monotonic() - now) * 1000
            with self._lock:
                self.seconds[second].ok[version] += 1
                self.seconds[second].latency_ms[version].append(elapsed)
        except grpcclient.InferenceServerException as err:
            with self._lock:
                self.seconds[second].failed += 1
                self.errors[str(err.status())] += 1

    # --- summaries ------------------------------------------------------------------------

    def answered(self, since_s: float = 0.0, until_s: float = float("inf")
                 ) -> dict[int, int]:
        """Answers per version in the whole seconds from `since_s` to `until_s`."""
        total: dict[int, int] = defaultdict(int)
        with self._lock:
            for second, data in self.seconds.items():
                if since_s <= second <= until_s:
                    for version, n in data.ok.items():
                        total[version] += n
        return dict(total)

    def failed(self, since_s: float = 0.0) -> int:
        with self._lock:
            return sum(d.failed for s, d in self.seconds.items() if s >= since_s)

    def now_s(self) -> float:
        return time.monotonic() - self.started

    def series(self) -> list[tuple[int, dict[int, int], int, dict[int, float]]]:
        """(second, answers per version, failures, mean latency ms per version), in order."""
        with self._lock:
            return [(s, dict(d.ok), d.failed,
                     {v: sum(x) / len(x) for v, x in d.latency_ms.items() if x})
                    for s, d in sorted(self.seconds.items())]


# --- a bare Triton pod, for checks of the gateway itself (no operator involved) -----------

ECHO_CONFIG = """name: "{model}"
backend: "python"
max_batch_size: 0
input [{{ name: "IN", data_type: TYPE_FP32, dims: [ -1 ] }}]
output [{{ name: "VERSION", data_type: TYPE_FP32, dims: [ 1 ] }}]
"""
# Answers with the version it was loaded as, so a client can tell who served it.
ECHO_MODEL_PY = """import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.version = np.array([float(args["model_version"])], dtype=np.float32)

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("VERSION", self.version)])
                for _ in requests]
"""


def echo_repository(root: Path, model: str, version: int) -> Path:
    """A model repository holding only `version` of an echo model (as the operator's pods
    see theirs)."""
    (root / model / str(version)).mkdir(parents=True)
    (root / model / "config.pbtxt").write_text(ECHO_CONFIG.format(model=model))
    (root / model / str(version) / "model.py").write_text(ECHO_MODEL_PY)
    return root


def triton_pod(name: str, model: str, version: int, repository: Path
               ) -> list[dict[str, Any]]:
    """A Triton pod on the local node serving `version` of `model`, and its gRPC Service
    `name` (selecting the pod by app=name)."""
    labels = {"app": name}

    def probe(path: str) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": 1,
                "timeoutSeconds": 2, "failureThreshold": 180}

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
           "spec": {**PLACEMENT, "terminationGracePeriodSeconds": 5, "containers": [{
               "name": "triton", "image": TRITON_IMAGE, "command": ["tritonserver"],
               "args": ["--model-repository=/models", "--model-control-mode=explicit",
                        f"--load-model={model}", "--strict-readiness=true",
                        f"--http-port={constants.PORT_HTTP}",
                        f"--grpc-port={constants.PORT_GRPC}",
                        f"--metrics-port={constants.PORT_METRICS}"],
               "ports": [{"name": "http", "containerPort": constants.PORT_HTTP},
                         {"name": "grpc", "containerPort": constants.PORT_GRPC},
                         {"name": "metrics", "containerPort": constants.PORT_METRICS}],
               "startupProbe": probe("/v2/health/live"),
               "readinessProbe": probe(f"/v2/models/{model}/versions/{version}/ready"),
               "volumeMounts": [{"name": "repo", "mountPath": "/models", "readOnly": True}],
               "terminationMessagePolicy": "FallbackToLogsOnError"}],
               "volumes": [{"name": "repo",
                            "hostPath": {"path": str(repository), "type": "Directory"}}]}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": labels, "ports": [{
                   "name": "grpc", "port": constants.PORT_GRPC, "targetPort": "grpc",
                   "appProtocol": "kubernetes.io/h2c"}]}}
    return [pod, service]
