"""TrainingRun: train in a Job, export, bless or veto, publish a new model version."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, WithJsonSchema

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


class ProductionData(ApiModel):
    """Reviewed production samples added to the training data (layout: modelship_api.samples;
    docs/production-data.md). Only complete parts with a resolved label are used; a stable hash
    of each sample's id puts it in the held-out part, which no run ever trains on."""

    volume: DatasetVolume = Field(
        description="The volume sampling writes to; its path holds production/<model>/.")
    model: ModelName | None = Field(
        default=None, description="The production area's model; default spec.model.")
    label_set: Annotated[str, StringConstraints(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")] = Field(
        default="default", description="Which label set's labels are used.")
    held_out_fraction: float = Field(
        default=0.3, gt=0.0, lt=1.0,
        description="Share of reviewed samples held out for evaluation and the gate. Keep it "
        "fixed across runs: with the same value a sample's side never changes; raising it only "
        "moves samples from train to held-out.")
    reference: Literal["Production", "HeldOut"] = Field(
        default="Production",
        description="What the version's drift reference (profile.json) is computed on. "
        "Production: the newest production samples it was not trained on (held-out reviewed "
        "and unreviewed ones, at most 5000, weighted 1/probability to undo over-sampling), "
        "i.e. what it will serve; with fewer than 100 of them, the held-out split. HeldOut: "
        "the held-out split (the original data's and the reviewed production samples').")
    reference_since: Annotated[str, StringConstraints(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})$")] | None = Field(
        default=None,
        description="Only production samples served at or after this time (RFC 3339) make "
        "the Production reference. A retraining run that DataDrift started gets the time the "
        "drift began, so the reference is the new normal, not the data before it.")


class Dataset(ApiModel):
    """Training data: exactly one of generated or volume, plus optional production samples."""

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
    production: ProductionData | None = Field(
        default=None, description="Reviewed production samples trained and evaluated on too.")


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


# A min/max pair: at least one bound, in order.
RANGE_RULES = (
    cel("has(self.min) || has(self.max)", "set min, max or both", reason="FieldValueRequired"),
    cel("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not exceed max",
        reason="FieldValueInvalid"),
)


class Threshold(ApiModel):
    """A fixed bound on one evaluation metric."""

    model_config = ConfigDict(json_schema_extra=validations(*RANGE_RULES))

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


# A class by name or by index, as an int-or-string like a Pod's port.
ClassRef = Annotated[
    int | Annotated[str, StringConstraints(min_length=1, max_length=63)],
    WithJsonSchema({"x-kubernetes-int-or-string": True,
                    "anyOf": [{"type": "integer"}, {"type": "string"}]}),
]


class InputStatisticRange(ApiModel):
    """Samples whose input statistic lies in [min, max], measured as the profile measures it."""

    model_config = ConfigDict(json_schema_extra=validations(*RANGE_RULES))

    statistic: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$",
                                                max_length=63)] = Field(
        description="An input statistic of the recipe's profile, e.g. input_brightness.")
    min: float | None = Field(default=None, description="Lowest value in the slice (inclusive).")
    max: float | None = Field(default=None,
                              description="Highest value in the slice (inclusive).")


class GateSlice(ApiModel):
    """Thresholds on one slice of the evaluation data (original held-out + reviewed held-out
    production samples), selected by exactly one of class, inputStatistic or
    reviewedProduction."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("[has(self.class), has(self.inputStatistic), has(self.reviewedProduction)]"
                ".filter(x, x).size() == 1",
                "set exactly one selector: class, inputStatistic or reviewedProduction",
                reason="FieldValueInvalid"),
            cel("!has(self.reviewedProduction) || self.reviewedProduction",
                "reviewedProduction selects the reviewed production samples: set it to true "
                "or choose another selector", reason="FieldValueInvalid"),
            cel("has(self.min) || has(self.maxRegression)", "set min, maxRegression or both",
                reason="FieldValueRequired"),
        )
    )

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$",
                                           max_length=40)] = Field(
        description="Named in gate checks and in the reason of a veto, e.g. dark.")
    class_: ClassRef | None = Field(
        default=None, alias="class", description="Samples whose true label is this class "
        "(a name of the dataset's classes, or an index).")
    input_statistic: InputStatisticRange | None = Field(
        default=None, description="Samples whose input statistic lies in a range.")
    reviewed_production: bool | None = Field(
        default=None, description="true: the held-out reviewed production samples "
        "(needs dataset.production).")
    metric: MetricName = Field(default="accuracy", description="accuracy, macro_f1 or loss.")
    higher_is_better: bool = Field(default=True, description="Direction of the metric.")
    min: float | None = Field(
        default=None, description="Reject when the metric on the slice is below this "
        "(above it when higherIsBetter is false).")
    max_regression: float | None = Field(
        default=None, ge=0.0, description="Reject when the metric on the slice is worse than "
        "the production version's on the same slice by more than this.")
    min_samples: int = Field(
        default=20, ge=1, description="Fewer samples in the slice reject the candidate: a "
        "slice too small to judge never blesses.")


class Gate(ApiModel):
    """Bless or veto: a rejected model is never published."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("!has(self.slices) || self.slices.all(a, "
                "self.slices.exists_one(b, b.name == a.name))",
                "slice names must be unique", field_path=".slices",
                reason="FieldValueInvalid"),
        )
    )

    thresholds: list[Threshold] | None = Field(
        default=None, max_length=20, description="Fixed bounds on metrics."
    )
    baseline: Baseline | None = Field(default=None, description="Comparison with production.")
    slices: list[GateSlice] | None = Field(
        default=None, max_length=20,
        description="Thresholds per slice of the evaluation data, each optionally against "
        "production; a candidate better on average but worse on a slice is rejected.")


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


# Rules on the whole spec that a retraining template (modelship_api.retraining) shares; the
# TrainingRun adds its immutability, which a template does not have.
SPEC_RULES = (
    cel("!has(self.gate) || !has(self.gate.slices) || has(self.dataset.production) || "
        "!self.gate.slices.exists(s, has(s.reviewedProduction))",
        "a reviewedProduction slice needs dataset.production",
        field_path=".gate.slices", reason="FieldValueInvalid"),
)


class TrainingRunSpec(ApiModel):
    """Desired training run. A run is a record: its spec cannot change once created."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self == oldSelf",
                "spec is immutable: a TrainingRun records one run; create a new TrainingRun",
                reason="FieldValueForbidden"),
            *SPEC_RULES,
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


class ProductionDataUsed(ApiModel):
    """Which production data a run used, and what it skipped."""

    parts: int = Field(default=0, description="Complete parts read.")
    corrupt_parts: int = Field(
        default=0, description="Parts skipped: files that do not parse, or images that do not "
        "load or do not match their records or the dataset's sample shape.")
    bad_label_lines: int = Field(default=0, description="Label lines that did not parse.")
    excluded_labels: int = Field(
        default=0, description="Labelled samples left out: unclear, unresolved (no majority) "
        "or a class outside the dataset.")
    train: int = Field(default=0, description="Reviewed samples trained on.")
    held_out: int = Field(default=0, description="Reviewed samples held out (never trained on).")
    weighted: bool = Field(
        default=False, description="Whether training weighted samples 1/probability.")
    newest_sample: str | None = Field(
        default=None, description="Time of the newest reviewed sample used, RFC 3339.")
    reference: str = Field(
        default="", description="What profile.json was computed on: production samples "
        "(how many, since when) or the held-out split, and why.")
    parts_digest: str = Field(default="", description="sha256 of the parts used (their files).")
    labels_digest: str = Field(
        default="", description="sha256 of the resolved labels used and each sample's side.")


# lineage.json in each version folder: Lineage's fields, with the recipe, the dataset spec,
# the classes and LINEAGE_DATA_TIME, the time of the newest training data (the profile's
# dataTime; versions published before it was recorded lack it).
LINEAGE_FILE = "lineage.json"
LINEAGE_DATA_TIME = "dataTime"


class Lineage(ApiModel):
    """Where the model came from."""

    dataset_digest: str = Field(
        default="", description="sha256 of the original dataset (generated or volume).")
    code_version: str = Field(default="", description="Trainer version.")
    hyperparameters: dict[str, str] | None = Field(default=None, description="Used values.")
    parent_version: int | None = Field(default=None, description="Production version compared.")
    production: ProductionDataUsed | None = Field(
        default=None, description="Reviewed production data used (dataset.production).")


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
