"""TrainingRun: train in a Job, export, bless or veto, publish a new model version."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from modelship_api.common import (
    ApiModel,
    Condition,
    DnsLabel,
    ModelName,
    ModelRepository,
    ObjectMeta,
    ResourceRequirements,
    Toleration,
    cel,
    schema_default,
    validations,
)
from modelship_api.profile import ProfileSummary

DEFAULT_TRAINER_IMAGE = "ghcr.io/modelship/trainer:0.1.0"

TrainingPhase = Literal["Pending", "Running", "Evaluating", "Succeeded", "Failed", "Rejected"]
MetricName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z][a-zA-Z0-9_]*$", max_length=63)]


class GeneratedDataset(ApiModel):
    """A synthetic surface-defect image set made from a seed (no downloads)."""

    seed: int = Field(default=0, ge=0, description="Seed; the same seed gives the same data.")
    samples: int = Field(default=4000, ge=100, le=1_000_000, description="Number of images.")
    image_size: int = Field(default=32, ge=16, le=256, description="Image side in pixels.")
    brightness: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Mean lighting level (drift knob)."
    )
    noise: float = Field(default=0.05, ge=0.0, le=1.0, description="Sensor noise std-dev.")
    defect_rate: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Fraction of images with a defect."
    )


class DatasetVolume(ApiModel):
    """A dataset directory on a volume (layout documented in trainer/README.md)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "[has(self.persistentVolumeClaim), has(self.hostPath)].filter(x, x).size() == 1",
                "set exactly one of persistentVolumeClaim or hostPath",
                reason="FieldValueInvalid",
            )
        )
    )

    persistent_volume_claim: DnsLabel | None = Field(
        default=None, description="PersistentVolumeClaim name holding the dataset."
    )
    host_path: Annotated[str, StringConstraints(pattern=r"^/", max_length=4096)] | None = Field(
        default=None, description="Node directory holding the dataset."
    )
    path: Annotated[str, StringConstraints(max_length=1024)] = Field(
        default="", description="Folder inside the volume."
    )


class Dataset(ApiModel):
    """Training data: exactly one of generated or volume."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.generated) != has(self.volume)",
                "set exactly one of generated or volume",
                reason="FieldValueInvalid",
            )
        )
    )

    generated: GeneratedDataset | None = Field(default=None, description="Synthetic data.")
    volume: DatasetVolume | None = Field(default=None, description="Data on a volume.")
    validation_fraction: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="Held-out share used for evaluation and the gate."
    )


class Trainer(ApiModel):
    """The training container."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(
        default=DEFAULT_TRAINER_IMAGE, description="Trainer image."
    )
    command: list[str] | None = Field(
        default=None, description="Command override; default runs `modelship-train`."
    )
    recipe: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.:-]*$",
                                             max_length=253)] = Field(
        default="surface-defects",
        description="Built-in recipe name or a `modelship.recipes` entry point.",
    )
    hyperparameters: dict[str, Annotated[str, StringConstraints(max_length=256)]] | None = Field(
        default=None, description="Recipe hyperparameters as strings, e.g. {epochs: '5'}."
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Resources; request GPUs in limits['nvidia.com/gpu']."
    )
    node_selector: dict[str, str] | None = Field(default=None, description="Node labels.")
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="Tolerations, e.g. for GPU taints."
    )
    env: dict[str, str] | None = Field(default=None, description="Extra environment variables.")
    pod_annotations: dict[str, str] | None = Field(
        default=None, description="Annotations for the training pod (e.g. for a service mesh)."
    )
    service_account_name: DnsLabel | None = Field(
        default=None, description="Service account of the training pod."
    )


class Threshold(ApiModel):
    """A fixed bound on one evaluation metric."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.min) || has(self.max)", "set min, max or both",
                reason="FieldValueRequired"),
            cel("!has(self.min) || !has(self.max) || self.min <= self.max",
                "min must not exceed max", reason="FieldValueInvalid"),
        )
    )

    metric: MetricName = Field(description="Metric name, e.g. accuracy or f1.")
    min: float | None = Field(default=None, description="Reject below this.")
    max: float | None = Field(default=None, description="Reject above this.")


class Baseline(ApiModel):
    """Compare with the version now in production, evaluated on the same held-out split."""

    metric: MetricName = Field(default="accuracy", description="Metric compared.")
    higher_is_better: bool = Field(default=True, description="Direction of the metric.")
    min_improvement: float = Field(
        default=0.0, description="Required gain over production (may be negative)."
    )
    max_regression: float | None = Field(
        default=None, ge=0.0,
        description="Largest allowed loss versus production; overrides minImprovement.",
    )
    production_version: int | None = Field(
        default=None, ge=1,
        description="Version to compare against; default: modelDeployment's stable version, "
        "else the newest published version.",
    )
    model_deployment: DnsLabel | None = Field(
        default=None,
        description="A ModelDeployment in this namespace whose stable version is the one in "
        "production: the operator pins productionVersion to it when the Job starts.",
    )


class Gate(ApiModel):
    """Bless or veto: a rejected model is never published."""

    thresholds: list[Threshold] | None = Field(
        default=None, max_length=20, description="Fixed bounds on metrics."
    )
    baseline: Baseline | None = Field(default=None, description="Comparison with production.")


class Export(ApiModel):
    """Export formats."""

    onnx_opset: int = Field(default=17, ge=13, le=21, description="ONNX opset.")
    parity_tolerance: float = Field(
        default=1e-4, gt=0.0, le=1.0,
        description="Largest allowed |onnxruntime - PyTorch| on the held-out split.",
    )
    tensorrt: Literal["Auto", "Always", "Never"] = Field(
        default="Auto", description="Build a TensorRT plan: Auto (when a GPU is present), "
        "Always (fail without GPU), Never.",
    )


class Publish(ApiModel):
    """Where and how the blessed model is published."""

    repository: ModelRepository = Field(description="Triton model repository volume.")
    backend: Literal["onnxruntime", "tensorrt", "python"] = Field(
        default="onnxruntime", description="Backend written into config.pbtxt."
    )
    max_batch_size: int = Field(default=64, ge=0, le=65536, description="Triton max_batch_size.")


class JobSettings(ApiModel):
    """Settings of the Kubernetes Job."""

    backoff_limit: int = Field(default=0, ge=0, le=10, description="Retries of a failed pod.")
    active_deadline_seconds: int = Field(
        default=3600, ge=10, le=7 * 24 * 3600, description="Deadline for the whole run."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=86400, ge=0, description="Delete the finished Job after this long."
    )


class TrainingRunSpec(ApiModel):
    """Desired training run. A run is a record: its spec cannot change once created."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self == oldSelf",
                "spec is immutable: a TrainingRun records one run; create a new TrainingRun",
                reason="FieldValueForbidden"),
        )
    )

    model: ModelName = Field(description="Triton model name the version is published under.")
    trainer: Trainer = Field(
        default_factory=Trainer, json_schema_extra=schema_default(Trainer),
        description="Training container.",
    )
    dataset: Dataset = Field(description="Training data.")
    export: Export = Field(
        default_factory=Export, json_schema_extra=schema_default(Export),
        description="Export settings.",
    )
    gate: Gate | None = Field(default=None, description="Bless-or-veto rules.")
    publish: Publish = Field(description="Publishing settings.")
    job: JobSettings = Field(
        default_factory=JobSettings, json_schema_extra=schema_default(JobSettings),
        description="Job settings.",
    )


class GateCheck(ApiModel):
    """One gate rule's outcome."""

    name: str = Field(description="Rule, e.g. accuracy>=0.9.")
    passed: bool = Field(description="Whether it held.")
    value: float | None = Field(default=None, description="Measured value.")
    message: str = Field(default="", description="Detail.")


class GateStatus(ApiModel):
    """Bless-or-veto outcome."""

    verdict: Literal["Blessed", "Rejected"] = Field(description="Blessed or Rejected.")
    reason: str = Field(default="", description="Why.")
    checks: list[GateCheck] | None = Field(default=None, description="Each rule.")


class Lineage(ApiModel):
    """Where the model came from."""

    dataset_digest: str = Field(default="", description="sha256 of the training data.")
    code_version: str = Field(default="", description="Trainer version.")
    hyperparameters: dict[str, str] | None = Field(default=None, description="Used values.")
    parent_version: int | None = Field(default=None, description="Production version compared.")


class Artifact(ApiModel):
    """The published files."""

    digest: str = Field(default="", description="sha256 of the model file.")
    path: str = Field(default="", description="Folder in the model repository.")
    formats: list[str] | None = Field(default=None, description="onnx, tensorrt.")
    tensorrt: str = Field(default="", description="TensorRT outcome or why it was skipped.")


class TrainingRunStatus(ApiModel):
    """Observed state, written only by the operator."""

    observed_generation: int | None = Field(default=None, description="Generation acted upon.")
    phase: TrainingPhase | None = Field(default=None, description="Lifecycle phase.")
    message: str = Field(default="", description="Human-readable summary.")
    job_name: str | None = Field(default=None, description="The Job running the trainer.")
    start_time: str | None = Field(default=None, description="When the Job started.")
    completion_time: str | None = Field(default=None, description="When it finished.")
    version: int | None = Field(default=None, description="Published model version.")
    key_metric: str | None = Field(default=None, description="e.g. accuracy=0.973.")
    metrics: dict[str, float] | None = Field(default=None, description="Evaluation metrics.")
    gate: GateStatus | None = Field(default=None, description="Gate outcome.")
    artifact: Artifact | None = Field(default=None, description="Published files.")
    lineage: Lineage | None = Field(default=None, description="Provenance.")
    profile: ProfileSummary | None = Field(
        default=None, description="The published version's reference profile (profile.json): "
        "its digest, sample count, data time and each statistic's mean or top class.")
    conditions: list[Condition] | None = Field(
        default=None,
        description="Conditions: ReconcileError while the Kubernetes API refuses the operator "
        "a request (its message is the API's, e.g. which RBAC verb is missing).",
    )


class TrainingRun(ApiModel):
    """Trains a model in a Job, gates it, and publishes it into a Triton model repository."""

    api_version: str = Field(default="modelship.io/v1alpha1", description="API version.")
    kind: str = Field(default="TrainingRun", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Metadata.")
    spec: TrainingRunSpec = Field(description="Desired state.")
    status: TrainingRunStatus = Field(
        default_factory=TrainingRunStatus, description="Observed state."
    )
