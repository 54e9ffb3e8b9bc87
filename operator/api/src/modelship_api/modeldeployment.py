"""ModelDeployment: serve a model with Triton and roll new versions out safely."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from modelship_api.common import (
    ApiModel,
    Condition,
    DnsLabel,
    Duration,
    ModelName,
    ModelRepository,
    ObjectMeta,
    PrometheusEndpoint,
    ResourceRequirements,
    Toleration,
    cel,
    schema_default,
    validations,
)
from modelship_api.monitoring import Monitoring, MonitoringStatus
from modelship_api.retraining import Retraining, RetrainingStatus

DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"

Backend = Literal["onnxruntime", "tensorrt", "python"]
CheckResultValue = Literal["Successful", "Failed", "Inconclusive"]
Phase = Literal["Pending", "Progressing", "Paused", "Ready", "RolledBack", "Failed"]


class TrainingRunSelector(ApiModel):
    """Selects TrainingRuns by label; the newest Blessed one among them is deployed."""

    match_labels: dict[str, str] = Field(
        min_length=1, description="Labels a TrainingRun must carry to be followed."
    )


class ModelRef(ApiModel):
    """The Triton model and the version to serve: pinned, or following TrainingRuns."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.version) != has(self.fromTrainingRuns)",
                "set exactly one of version (pinned, for GitOps) or fromTrainingRuns "
                "(continuous delivery)",
                reason="FieldValueInvalid",
            )
        )
    )

    name: ModelName = Field(
        description="Triton model name: the folder under the model repository root."
    )
    version: int | None = Field(
        default=None,
        ge=1,
        description="Model version to serve (a numbered folder under the model). Changing it "
        "starts a rollout.",
    )
    from_training_runs: TrainingRunSelector | None = Field(
        default=None,
        description="Follow the newest Blessed TrainingRun with these labels instead of a "
        "pinned version.",
    )


class DynamicBatching(ApiModel):
    """Triton dynamic batching settings."""

    max_queue_delay_microseconds: int = Field(
        default=100, ge=0, le=1_000_000,
        description="How long a request may wait for others to form a batch.",
    )
    preferred_batch_sizes: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, max_length=16, description="Batch sizes Triton tries to form."
    )


class InstanceGroup(ApiModel):
    """Model instances Triton runs in each pod (config.pbtxt `instance_group`)."""

    kind: Literal["CPU", "GPU"] = Field(
        description="CPU or GPU (KIND_CPU, KIND_GPU): where the instances run."
    )
    count: int = Field(default=1, ge=1, le=64, description="Instances of this kind.")


_HAS_GPU = ("has(self.resources) && has(self.resources.limits) && "
            "'nvidia.com/gpu' in self.resources.limits")


class Runtime(ApiModel):
    """How Triton runs: image, backend, replicas, resources and placement, and the serving
    config (backend, batching, instance groups) rendered into each pod's config.pbtxt."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"self.backend != 'tensorrt' || ({_HAS_GPU})",
                "backend tensorrt needs a GPU: set runtime.resources.limits['nvidia.com/gpu']",
                field_path=".backend",
                reason="FieldValueInvalid",
            ),
            cel(
                f"!has(self.instanceGroups) || ({_HAS_GPU}) || "
                "self.instanceGroups.all(g, g.kind != 'GPU')",
                "an instance group of kind GPU needs a GPU: set "
                "runtime.resources.limits['nvidia.com/gpu'], or use kind CPU",
                field_path=".instanceGroups",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.dynamicBatching) || !has(self.maxBatchSize) || "
                "self.maxBatchSize > 0",
                "dynamicBatching needs batching: set runtime.maxBatchSize above 0, or remove "
                "dynamicBatching",
                field_path=".dynamicBatching",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.dynamicBatching) || !has(self.dynamicBatching.preferredBatchSizes) "
                "|| !has(self.maxBatchSize) || "
                "self.dynamicBatching.preferredBatchSizes.all(b, b <= self.maxBatchSize)",
                "dynamicBatching.preferredBatchSizes must not exceed runtime.maxBatchSize",
                field_path=".dynamicBatching.preferredBatchSizes",
                reason="FieldValueInvalid",
            ),
        )
    )

    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(
        default=DEFAULT_TRITON_IMAGE, description="Triton Inference Server image."
    )
    backend: Backend = Field(
        default="onnxruntime",
        description="Triton backend that runs the model, written into the served "
        "config.pbtxt with its file: onnxruntime (model.onnx), tensorrt (model.plan, GPU), or "
        "python (model.py: modelship's onnxruntime runner, for CPU-only clusters; the image "
        "needs Triton's Python backend and the runner's Python packages).",
    )
    replicas: int = Field(default=1, ge=1, le=1000, description="Triton pods per version.")
    resources: ResourceRequirements | None = Field(
        default=None, description="Resources of the Triton container."
    )
    node_selector: dict[str, str] | None = Field(
        default=None, description="Node labels the Triton pods must land on."
    )
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="Tolerations, e.g. for tainted GPU nodes."
    )
    max_batch_size: int | None = Field(
        default=None, ge=0, le=65536,
        description="Largest batch Triton forms (config.pbtxt max_batch_size); absent: the "
        "published version's. Batching or not is fixed by the tensors the version was "
        "published with (with batching their dims leave the batch axis out), so 0 serves "
        "only a version published with 0, and above 0 only one published above 0.",
    )
    dynamic_batching: DynamicBatching | None = Field(
        default=None,
        description="Enable Triton's dynamic batcher; absent: none, whatever the published "
        "config says. Needs batching.",
    )
    instance_groups: list[InstanceGroup] | None = Field(
        default=None, max_length=8,
        description="Model instances per pod; absent: one on the GPU when the pod has one "
        "(runtime.resources.limits['nvidia.com/gpu']) and the backend is not python, else "
        "one on the CPU.",
    )
    startup_timeout: Duration = Field(
        default="10m",
        description="Budget for Triton to load the model before the pod is restarted.",
    )
    args: list[Annotated[str, StringConstraints(max_length=1024)]] | None = Field(
        default=None, max_length=64, description="Extra tritonserver arguments."
    )
    service_account_name: DnsLabel | None = Field(
        default=None, description="Service account of the Triton pods."
    )


class ParentRef(ApiModel):
    """A Gateway the GRPCRoute attaches to."""

    name: DnsLabel = Field(description="Gateway name.")
    namespace: DnsLabel | None = Field(
        default=None, description="Gateway namespace (default: the ModelDeployment's)."
    )
    section_name: DnsLabel | None = Field(default=None, description="Gateway listener name.")


class GatewayTraffic(ApiModel):
    """Gateway API settings: the operator owns one GRPCRoute per ModelDeployment."""

    parent_refs: list[ParentRef] = Field(
        min_length=1, max_length=8, description="Gateways the GRPCRoute attaches to."
    )
    hostnames: list[Annotated[str, StringConstraints(max_length=253)]] | None = Field(
        default=None, max_length=16, description="Hostnames the route matches."
    )


class Traffic(ApiModel):
    """How traffic is split between the stable and the candidate version."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.provider != 'gateway' || has(self.gateway)",
                "provider gateway needs traffic.gateway.parentRefs",
                reason="FieldValueRequired",
            )
        )
    )

    provider: Literal["gateway", "replicas"] = Field(
        default="replicas",
        description="gateway: a Gateway API GRPCRoute with weighted backends and mirroring. "
        "replicas: one Service across versions, weights approximated by pod counts "
        "(no shadow).",
    )
    gateway: GatewayTraffic | None = Field(default=None, description="Gateway API settings.")


class CanaryStep(ApiModel):
    """One canary step: send `weight` percent to the candidate, then wait `pause`."""

    weight: int = Field(ge=0, le=100, description="Percent of traffic to the candidate (0-100).")
    pause: Duration | None = Field(
        default=None,
        description="How long to hold this step while analysis runs. Absent: hold until "
        "`modelship promote`.",
    )


class Canary(ApiModel):
    """Shift traffic in steps, with analysis running throughout."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.steps.map(s, s.weight).isSorted()",
                "canary step weights must not decrease",
                field_path=".steps",
                reason="FieldValueInvalid",
            )
        )
    )

    steps: list[CanaryStep] = Field(
        min_length=1, max_length=20,
        description="Steps in order; weights must not decrease. After the last, the "
        "candidate is promoted to 100%.",
    )


class BlueGreen(ApiModel):
    """Run the candidate beside stable, analyse its preview, switch all traffic at once."""

    preview_duration: Duration = Field(
        default="1m", description="Analysis on the preview before the switch."
    )
    post_switch_duration: Duration = Field(
        default="1m",
        description="Analysis after the switch while the old version stays warm for an "
        "instant switch-back.",
    )
    auto_promote: bool = Field(
        default=True,
        description="Switch when the preview analysis passes; false waits for "
        "`modelship promote`.",
    )


class Shadow(ApiModel):
    """Mirror a share of live traffic to the candidate (responses discarded) and analyse it."""

    mirror_percent: int = Field(
        default=100, ge=1, le=100, description="Percent of requests mirrored to the candidate."
    )
    duration: Duration = Field(default="2m", description="How long the shadow phase lasts.")
    canary_steps: list[CanaryStep] | None = Field(
        default=None, max_length=20,
        description="Continue into these canary steps after the shadow phase; absent: "
        "promote directly.",
    )


Builtin = Literal["errorRatio", "meanLatency", "p99Latency", "inputDrift", "predictionDrift",
                  "nonFinite"]


class Check(ApiModel):
    """A PromQL check run every interval: Successful, Failed or Inconclusive."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.builtin) != has(self.query)",
                "set exactly one of builtin or query",
                reason="FieldValueInvalid",
            ),
            cel(
                "has(self.max) || has(self.min)",
                "set max, min or both",
                reason="FieldValueRequired",
            ),
            cel(
                "!has(self.max) || !has(self.min) || self.min <= self.max",
                "min must not exceed max",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.builtin) || !(self.builtin in ['inputDrift', 'nonFinite']) || "
                "!has(self.relativeToStable) || !self.relativeToStable",
                "inputDrift and nonFinite are absolute: only predictionDrift compares with "
                "stable (relativeToStable)",
                field_path=".relativeToStable",
                reason="FieldValueInvalid",
            ),
        )
    )

    name: DnsLabel = Field(description="Check name, shown in status and events.")
    builtin: Builtin | None = Field(
        default=None,
        description="errorRatio: failed / all requests of the candidate version; meanLatency: "
        "mean request duration in milliseconds over the window; p99Latency: 99th percentile "
        "of request duration in milliseconds over Triton's own sliding 60s window (its "
        "latency summary, which modelship enables), the worst pod's. All from Triton's own "
        "metrics. inputDrift: the largest PSI of the candidate's input statistics against "
        "its profile.json; predictionDrift: the same for its output statistics, or with "
        "relativeToStable the PSI of its class distribution against the stable version's "
        "over the same window (the value is that distance, not a ratio); nonFinite: outputs "
        "with NaN or infinity in the window. The drift checks need spec.monitoring.minSamples "
        "samples in the window.",
    )
    query: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        default=None,
        description="PromQL returning one number. Placeholders: {{model}}, {{candidate}}, "
        "{{stable}}, {{namespace}}, {{window}}, {{pods}} (regex of the judged release's pod "
        "names: tells two revisions of one version apart).",
    )
    max: float | None = Field(default=None, description="Fail when the value is above.")
    min: float | None = Field(default=None, description="Fail when the value is below.")
    relative_to_stable: bool = Field(
        default=False,
        description="Compare candidate / stable instead of the raw value (max 1.5: at most "
        "50% worse than stable); for predictionDrift, score the candidate's predictions "
        "against stable's instead of against its profile.",
    )


class Analysis(ApiModel):
    """How the candidate is judged."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "duration(self.interval) >= duration('1s')",
                "interval must be at least 1s",
                field_path=".interval",
                reason="FieldValueInvalid",
            ),
        )
    )

    prometheus: PrometheusEndpoint = Field(description="Prometheus to query.")
    interval: Duration = Field(default="10s", description="Time between analysis runs (>= 1s).")
    initial_delay: Duration = Field(
        default="0s", description="Wait after traffic first reaches the candidate."
    )
    window: Duration = Field(
        default="1m", description="Range for rate() in built-in checks and {{window}}."
    )
    failure_limit: int = Field(
        default=2, ge=1, le=100,
        description="Consecutive failed runs that roll the candidate back. After a failed "
        "run the next one waits a whole window, so each failure counted is fresh evidence.",
    )
    min_requests: int = Field(
        default=10, ge=0, le=1_000_000,
        description="Requests the candidate (and, for checks relative to stable, the stable "
        "version) must have served in the window; with fewer the run is Inconclusive, "
        "never Successful or Failed. 0 turns the minimum off.",
    )
    inconclusive_limit: int = Field(
        default=5, ge=1, le=1000,
        description="Consecutive inconclusive runs before inconclusivePolicy applies.",
    )
    inconclusive_policy: Literal["Hold", "Rollback"] = Field(
        default="Hold",
        description="Hold: stay at the current step, paused, until a run is conclusive and "
        "successful again (or `modelship resume`). Rollback: roll back. Inconclusive results "
        "never promote.",
    )
    checks: list[Check] | None = Field(
        default=None, max_length=20,
        description="Checks; absent: errorRatio max 0.01 and meanLatency max 1.5x stable.",
    )


# Tensor types the smoke load can send as JSON numbers (KServe v2 datatypes; BYTES is not
# offered: its JSON form is not a number).
SampleDatatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                         "INT32", "INT64", "FP16", "FP32", "FP64"]
MAX_SAMPLE_DIMS = 4


def _elements_rule() -> str:
    """CEL: data holds exactly the product of shape's dimensions (at most MAX_SAMPLE_DIMS)."""
    dims = " * ".join(f"(self.shape.size() > {i} ? self.shape[{i}] : 1)"
                      for i in range(MAX_SAMPLE_DIMS))
    return f"self.data.size() == {dims}"


class SampleInput(ApiModel):
    """One input tensor of the sample request, as in a KServe v2 (Triton) ModelInfer
    request: its name, datatype, shape and data (row-major, flattened)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                _elements_rule(),
                "data must hold one value per element of shape (the product of its "
                "dimensions), flattened row-major",
                field_path=".data",
                reason="FieldValueInvalid",
            )
        )
    )

    name: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="The model's input name, as in its config.pbtxt."
    )
    datatype: SampleDatatype = Field(description="KServe v2 datatype, e.g. FP32, INT64, BOOL.")
    shape: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        max_length=MAX_SAMPLE_DIMS,
        description="Dimensions (batch included when the model batches), e.g. [1, 4].",
    )
    data: list[float] = Field(
        min_length=1, max_length=4096,
        description="The values, flattened row-major: one per element of shape.",
    )


class SmokeLoad(ApiModel):
    """Requests the operator itself sends to a candidate that gets no client traffic, so
    that its analysis has samples: while the rollout is at a stage that gives the candidate
    weight 0 (blueGreen's Preview, shadow, a canary step of weight 0; `during: EveryStage`:
    at every stage), the same sample request at `rate` a second, for at most `maxDuration`
    from the stage's start."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "duration(self.maxDuration) <= duration('1h')",
                "maxDuration must be at most 1h",
                field_path=".maxDuration",
                reason="FieldValueInvalid",
            ),
            cel(
                "duration(self.timeout) >= duration('100ms') && "
                "duration(self.timeout) <= duration('30s')",
                "timeout must be between 100ms and 30s",
                field_path=".timeout",
                reason="FieldValueInvalid",
            ),
        )
    )

    inputs: list[SampleInput] = Field(
        min_length=1, max_length=16,
        description="The sample request's input tensors (KServe v2 ModelInfer inputs).",
    )
    rate: int = Field(
        default=5, ge=1, le=50, description="Requests a second (1-50)."
    )
    max_duration: Duration = Field(
        default="10m",
        description="The load stops this long after the stage began, even if the stage "
        "lasts longer (at most 1h).",
    )
    timeout: Duration = Field(default="2s", description="Per-request timeout (100ms-30s).")
    during: Literal["ZeroWeight", "EveryStage"] = Field(
        default="ZeroWeight",
        description="ZeroWeight: only at stages that give the candidate no client traffic. "
        "EveryStage: at weighted stages and blueGreen's PostSwitch too, for models without "
        "steady clients; beside real traffic the sample then dilutes the candidate's error "
        "ratio with requests it is known to answer.",
    )


class Rollout(ApiModel):
    """How a new version replaces the stable one: exactly one of canary, blueGreen, shadow."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "[has(self.canary), has(self.blueGreen), has(self.shadow)]"
                ".filter(x, x).size() == 1",
                "set exactly one rollout strategy: canary, blueGreen or shadow",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.smokeLoad) || has(self.analysis)",
                "smokeLoad feeds the analysis: set rollout.analysis too",
                field_path=".smokeLoad",
                reason="FieldValueRequired",
            ),
        )
    )

    canary: Canary | None = Field(default=None, description="Stepwise traffic shifting.")
    blue_green: BlueGreen | None = Field(default=None, description="Preview, then switch.")
    shadow: Shadow | None = Field(default=None, description="Mirror traffic, then promote.")
    analysis: Analysis | None = Field(
        default=None, description="Metric analysis; absent: steps advance on time alone."
    )
    smoke_load: SmokeLoad | None = Field(
        default=None,
        description="Sample requests the operator sends to a candidate at weight 0 "
        "(blueGreen's preview, shadow, a canary step of weight 0), so that its analysis has "
        "samples without client traffic.",
    )
    progress_deadline: Duration = Field(
        default="10m",
        description="The candidate must become ready within this time or it is rolled back.",
    )
    scale_down_delay: Duration = Field(
        default="10m",
        description="How long the previous stable version stays warm after a promotion, "
        "for an instant switch-back.",
    )
    abort_scale_down_delay: Duration = Field(
        default="30s",
        description="How long a version that lost its traffic (rolled back, aborted, "
        "superseded, or replaced without scaleDownDelay) keeps running after the gateway "
        "confirmed the route without it, so requests in flight and gateways still "
        "programming the change reach live pods. 0s: removed as soon as confirmed.",
    )


class ModelDeploymentSpec(ApiModel):
    """Desired state: which model version serves, how, and how new versions roll out."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.rollout) || !has(self.rollout.shadow) || "
                "(has(self.traffic) && self.traffic.provider == 'gateway')",
                "shadow needs traffic.provider gateway: the replicas provider cannot mirror",
                field_path=".rollout.shadow",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.retraining) || has(self.model.fromTrainingRuns)",
                "retraining needs model.fromTrainingRuns: a pinned model.version never "
                "follows the runs it would create",
                field_path=".retraining",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.retraining) || self.retraining.template.model == self.model.name",
                "retraining.template.model must be model.name, or fromTrainingRuns never "
                "serves what the runs publish",
                field_path=".retraining.template.model",
                reason="FieldValueInvalid",
            ),
            cel(
                "!self.monitoring.sampling.enabled || self.runtime.backend == 'python'",
                "sampling is done by modelship's runner: set runtime.backend python, or "
                "monitoring.sampling.enabled false",
                field_path=".monitoring.sampling.enabled",
                reason="FieldValueInvalid",
            ),
            cel(
                "self.runtime.backend == 'python' || !has(self.rollout) || "
                "!has(self.rollout.analysis) || !has(self.rollout.analysis.checks) || "
                "self.rollout.analysis.checks.all(c, !has(c.builtin) || "
                "!(c.builtin in ['inputDrift', 'predictionDrift', 'nonFinite']))",
                "inputDrift, predictionDrift and nonFinite read the model statistics that "
                "modelship's runner exports, and Triton's own backends export none: set "
                "runtime.backend python, or judge with other checks",
                field_path=".rollout.analysis.checks",
                reason="FieldValueInvalid",
            ),
            cel(
                "self.runtime.backend == 'python' || !has(self.retraining) || "
                "!has(self.retraining.triggers.dataDrift)",
                "the dataDrift trigger needs the model statistics that modelship's runner "
                "exports, and Triton's own backends export none: set runtime.backend python, "
                "or use the modelAge, reviewedAccuracy or schedule trigger",
                field_path=".retraining.triggers.dataDrift",
                reason="FieldValueInvalid",
            ),
        )
    )

    model: ModelRef = Field(description="Model and version to serve.")
    repository: ModelRepository = Field(description="Triton model repository volume.")
    runtime: Runtime = Field(
        default_factory=Runtime, json_schema_extra=schema_default(Runtime),
        description="Triton settings.",
    )
    traffic: Traffic = Field(
        default_factory=Traffic, json_schema_extra=schema_default(Traffic),
        description="Traffic provider.",
    )
    rollout: Rollout | None = Field(
        default=None,
        description="Rollout strategy; absent: a new version replaces the old one once ready.",
    )
    monitoring: Monitoring = Field(
        default_factory=Monitoring, json_schema_extra=schema_default(Monitoring),
        description="Drift against the training profile, staleness and numeric health of "
        "the served version (on by default).",
    )
    retraining: Retraining | None = Field(
        default=None,
        description="Create TrainingRuns from a template when the served model drifts, "
        "ages or loses reviewed accuracy (needs model.fromTrainingRuns).",
    )


class CheckResult(ApiModel):
    """The latest result of one check."""

    name: str = Field(description="Check name.")
    result: CheckResultValue = Field(description="Successful, Failed or Inconclusive.")
    value: float | None = Field(default=None, description="Measured value.")
    threshold: str = Field(default="", description="The bound it was held against.")
    message: str = Field(default="", description="Why, when not Successful.")
    at: str | None = Field(default=None, description="When it ran (RFC 3339).")
    stable_value: float | None = Field(
        default=None,
        description="The stable version's value, for checks relative to stable (value is "
        "then candidate / stable).",
    )
    requests: int | None = Field(
        default=None,
        description="Requests the candidate served in the window (the run's sample size).",
    )


class AnalysisStatus(ApiModel):
    """Analysis bookkeeping that must survive an operator restart."""

    consecutive_failures: int = Field(default=0, description="Failed runs in a row.")
    consecutive_inconclusive: int = Field(default=0, description="Inconclusive runs in a row.")
    successful_runs: int = Field(default=0, description="Successful runs in this step.")
    last_run_at: str | None = Field(default=None, description="Last run (RFC 3339).")
    checks: list[CheckResult] | None = Field(default=None, description="Latest results.")
    last_result: CheckResultValue | None = Field(
        default=None,
        description="The last run as a whole: Failed if any check failed, else Inconclusive "
        "if any was, else Successful.",
    )


class RolloutStatus(ApiModel):
    """Where the rollout of the candidate stands."""

    strategy: Literal["canary", "blueGreen", "shadow", "replace"] = Field(
        description="Strategy in use."
    )
    stage: str = Field(default="", description="Stage within the strategy (e.g. Shadow, Canary, "
                       "Preview, PostSwitch).")
    step: int = Field(default=0, description="Index of the current canary step.")
    started_at: str | None = Field(default=None, description="When the rollout began.")
    stage_started_at: str | None = Field(default=None, description="When the stage began.")
    paused: bool = Field(default=False, description="Held by `modelship pause` or a policy.")
    pause_reason: str = Field(default="", description="Why it is paused.")
    held_for_data: bool = Field(
        default=False,
        description="Paused by inconclusive analysis (inconclusivePolicy Hold): lifts itself "
        "at the next conclusive, successful run. A pause by `modelship pause` does not.",
    )
    traffic_since: str | None = Field(
        default=None,
        description="When the first stage began, the candidate ready and routed (mirrored, "
        "weighted or preview); analysis starts initialDelay after it (RFC 3339).",
    )
    unready_since: str | None = Field(
        default=None,
        description="When the candidate stopped being ready during the rollout; it is rolled "
        "back once this exceeds progressDeadline (RFC 3339).",
    )


class Weights(ApiModel):
    """Traffic split in percent."""

    stable: int = Field(default=100, description="Percent to the stable version.")
    candidate: int = Field(default=0, description="Percent to the candidate.")
    mirror: int = Field(default=0, description="Percent mirrored to the candidate (shadow).")


REVISION_DOC = (
    "Pod-template revision (absent: 0). A change of spec.runtime or spec.repository is a new "
    "revision of the same model version, rolled out like a new version; its Deployment and "
    "Service are named <name>-v<version>-r<revision> (revision 0: <name>-v<version>)."
)
TEMPLATE_DOC = "Hash of the Triton pod template of this revision."


class HistoryEntry(ApiModel):
    """One finished rollout."""

    version: int = Field(description="Candidate version.")
    previous_version: int | None = Field(default=None, description="Stable version before it.")
    strategy: str = Field(default="", description="Strategy used.")
    outcome: Literal["Promoted", "RolledBack", "Aborted", "Superseded"] = Field(
        description="How it ended."
    )
    reason: str = Field(default="", description="Why, e.g. the failing check and value.")
    started_at: str | None = Field(default=None, description="Start (RFC 3339).")
    finished_at: str | None = Field(default=None, description="End (RFC 3339).")
    revision: int | None = Field(
        default=None, description="Pod-template revision of the candidate (absent: 0)."
    )
    previous_revision: int | None = Field(
        default=None, description="Pod-template revision of the stable before it (absent: 0)."
    )


class WarmVersion(ApiModel):
    """A former stable version kept running for a fast switch-back."""

    version: int = Field(description="Model version.")
    revision: int | None = Field(default=None, description=REVISION_DOC)
    template: str | None = Field(default=None, description=TEMPLATE_DOC)
    until: str = Field(description="When it is scaled down (RFC 3339).")


class QueryCheck(ApiModel):
    """The user checks' PromQL as the Prometheus of spec.rollout.analysis parsed it, kept so an
    unchanged spec is not asked about again."""

    digest: str = Field(
        description="Digest of the Prometheus address and the queries checked (placeholders "
        "filled in); a spec whose digest differs is checked again."
    )
    errors: list[str] | None = Field(
        default=None,
        description="Prometheus' parse error for each query that does not parse, with its "
        "field; none: every query parses.",
    )
    checked_at: str | None = Field(default=None, description="When Prometheus answered.")


class DrainingVersion(ApiModel):
    """A version taken off the route, removed once the route is confirmed without it and
    abortScaleDownDelay has passed since."""

    version: int = Field(description="Model version.")
    revision: int | None = Field(default=None, description=REVISION_DOC)
    since: str = Field(description="When the route stopped sending it traffic (RFC 3339).")
    route_confirmed_at: str | None = Field(
        default=None,
        description="When the gateway was first seen to have accepted a route that sends it "
        "no traffic (RFC 3339); absent while that is not confirmed.",
    )


class ModelDeploymentStatus(ApiModel):
    """Observed state, written only by the operator."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation last acted upon."
    )
    phase: Phase | None = Field(default=None, description="Summary of the state.")
    message: str = Field(default="", description="Human-readable summary.")
    desired_version: int | None = Field(
        default=None, description="The version the spec resolves to."
    )
    desired_revision: int | None = Field(
        default=None, description="The pod-template revision the spec resolves to."
    )
    desired_template: str | None = Field(
        default=None, description="Hash of the pod template the spec describes now."
    )
    stable_version: int | None = Field(default=None, description="Version serving production.")
    stable_revision: int | None = Field(default=None, description=REVISION_DOC)
    stable_template: str | None = Field(default=None, description=TEMPLATE_DOC)
    candidate_version: int | None = Field(default=None, description="Version being rolled out.")
    candidate_revision: int | None = Field(default=None, description=REVISION_DOC)
    candidate_template: str | None = Field(default=None, description=TEMPLATE_DOC)
    rolled_back_version: int | None = Field(
        default=None,
        description="The version last rolled back or aborted. It is not rolled out again "
        "while the spec names it (with the same pod template), until `modelship retry`.",
    )
    rolled_back_revision: int | None = Field(default=None, description=REVISION_DOC)
    rolled_back_template: str | None = Field(default=None, description=TEMPLATE_DOC)
    last_command: str | None = Field(
        default=None,
        description="The last manual command handled (the annotation value), so that each "
        "command acts once.",
    )
    weights: Weights | None = Field(default=None, description="Current traffic split.")
    rollout: RolloutStatus | None = Field(default=None, description="Current rollout.")
    analysis: AnalysisStatus | None = Field(default=None, description="Current analysis.")
    warm_versions: list[WarmVersion] | None = Field(
        default=None, description="Former stable versions still running."
    )
    draining: list[DrainingVersion] | None = Field(
        default=None,
        description="Versions taken off the route and still running until the gateway "
        "confirmed the change and abortScaleDownDelay passed.",
    )
    history: list[HistoryEntry] | None = Field(
        default=None, max_length=20, description="Recent rollouts, newest first (bounded)."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Ready, Progressing, Degraded, InvalidSpec, RouteAccepted (provider "
        "gateway: whether the gateway accepted the GRPCRoute, with its reason), the "
        "monitoring conditions DataDrift, PredictionDrift, Stale and NumericFault, Sampling "
        "(with spec.monitoring.sampling: True while the pods write samples, False with why "
        "once one stopped, e.g. VolumeFull), RetrainingEffective (whether DataDrift cleared "
        "after a retrained version was promoted), and "
        "ReconcileError while the Kubernetes API refuses the operator a request (its "
        "message is the API's, e.g. which RBAC verb is missing).",
    )
    monitoring: MonitoringStatus | None = Field(
        default=None, description="Drift, age and numeric health of the stable version.")
    retraining: RetrainingStatus | None = Field(
        default=None, description="Retraining runs, bounds and why none starts now.")
    query_check: QueryCheck | None = Field(
        default=None,
        description="Whether the user checks' PromQL parses, as Prometheus said; absent "
        "while there are none or Prometheus has not answered yet.",
    )


class ModelDeployment(ApiModel):
    """Serves a model with NVIDIA Triton and rolls out new versions judged by Prometheus."""

    api_version: str = Field(default="modelship.io/v1alpha1", description="API version.")
    kind: str = Field(default="ModelDeployment", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Metadata.")
    spec: ModelDeploymentSpec = Field(description="Desired state.")
    status: ModelDeploymentStatus = Field(
        default_factory=ModelDeploymentStatus, description="Observed state."
    )
