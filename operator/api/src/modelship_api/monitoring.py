"""ModelDeployment monitoring: drift of the served version against its training profile,
staleness and numeric health (spec.monitoring and status.monitoring).

The operator compares what a version sees and predicts in production (histograms its Triton
pods export) with the version's profile.json (the same histograms on the held-out split),
every `interval`, over the last `window`. Nothing here ever blocks serving: the results are
conditions, events, metrics and, during a rollout, the analysis checks inputDrift,
predictionDrift and nonFinite.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from modelship_api.common import (
    ApiModel,
    Duration,
    PrometheusEndpoint,
    cel,
    schema_default,
    validations,
)
from modelship_api.trainingrun import DatasetVolume

# The statistics modelship's image recipe profiles and its runner exports (names as in
# profile.json and in the `statistic` label of the live histograms).
StatisticName = Literal["input_brightness", "input_contrast", "input_saturated_fraction",
                        "output_confidence", "output_entropy", "predicted_class"]
StatisticResult = Literal["Normal", "Drift", "Inconclusive", "Unavailable"]
# Where a version's age counts from, best first: its newest training data's time, recorded in
# profile.json or lineage.json, else its publish time (later than the data's: a lower bound).
AgeSource = Literal["ProfileDataTime", "LineageDataTime", "PublishTime"]


class DistanceThresholds(ApiModel):
    """When one distance raises a drift and when it clears it (hysteresis: clearBelow is
    under raiseAbove, so a score hovering near one bound does not flap)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self.clearBelow < self.raiseAbove",
                "clearBelow must be below raiseAbove (the band between them is the "
                "hysteresis)", reason="FieldValueInvalid"),
        )
    )

    raise_above: float = Field(ge=0, description="A score above this counts towards a drift.")
    clear_below: float = Field(ge=0, description="A score below this counts towards clearing.")


class Thresholds(ApiModel):
    """Thresholds per distance. A statistic drifts when either distance is above its
    raiseAbove, and clears when both are below their clearBelow."""

    psi: DistanceThresholds = Field(
        default_factory=lambda: DistanceThresholds(raise_above=0.25, clear_below=0.1),
        json_schema_extra={"default": {"raiseAbove": 0.25, "clearBelow": 0.1}},
        description="Population stability index (0: identical; 0.1 moderate, 0.25 major "
        "shift by the usual reading).",
    )
    js: DistanceThresholds = Field(
        default_factory=lambda: DistanceThresholds(raise_above=0.2, clear_below=0.1),
        json_schema_extra={"default": {"raiseAbove": 0.2, "clearBelow": 0.1}},
        description="Jensen-Shannon distance in bits (0: identical, 1: disjoint).",
    )


class Sampling(ApiModel):
    """A bounded, sampled record of the served version's production inputs, with prediction,
    confidence and request id, written by the runner on every Triton pod under
    `<volume path>/production/<model>/samples/` (modelship_api.samples; docs/production-data.md).
    Needs runtime.backend python (the modelship runner writes them). Sampling never slows
    or fails a request: a volume that fills up stops it (condition Sampling False) and
    serving goes on."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("!self.enabled || has(self.volume)",
                "sampling needs a volume to write to: set sampling.volume "
                "(persistentVolumeClaim or hostPath, and path)",
                field_path=".volume", reason="FieldValueRequired"),
        )
    )

    enabled: bool = Field(default=False, description="true: keep sampled production inputs.")
    volume: DatasetVolume | None = Field(
        default=None, description="The dataset volume to write to, mounted read-write into "
        "the Triton pods (a PersistentVolumeClaim every pod can write, e.g. ReadWriteMany, "
        "or a node directory).")
    rate: float = Field(default=0.01, gt=0.0, le=1.0,
                        description="Base probability that a served sample is kept.")
    hourly_cap: int = Field(
        default=1000, ge=1, le=1_000_000,
        description="Samples kept per served version, pod and hour at most (split evenly "
        "between the pod's model instances).")
    low_confidence_below: float = Field(
        default=0.6, ge=0.0, le=1.0,
        description="A sample whose top-1 confidence is below this is over-sampled "
        "(reason lowConfidence).")
    oversampling: float = Field(
        default=10.0, ge=1.0, le=1000.0,
        description="Factor on rate for low-confidence samples and samples in a slice the "
        "version's profile saw rarely (reason driftedSlice); each record keeps its "
        "probability, so the data can be re-weighted by 1/probability.")


class Monitoring(ApiModel):
    """How the served model is watched. Every field has a default: a ModelDeployment without
    a monitoring block is watched too."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("duration(self.interval) >= duration('1s')", "interval must be at least 1s",
                field_path=".interval", reason="FieldValueInvalid"),
            cel("duration(self.window) >= duration('1s')", "window must be at least 1s",
                field_path=".window", reason="FieldValueInvalid"),
            cel("self.enabled || !self.sampling.enabled",
                "sampling is part of monitoring (its condition comes from monitoring's "
                "Prometheus): set monitoring.enabled true, or sampling.enabled false",
                field_path=".sampling.enabled", reason="FieldValueInvalid"),
        )
    )

    enabled: bool = Field(default=True, description="false: no drift, age or numeric checks.")
    prometheus: PrometheusEndpoint | None = Field(
        default=None,
        description="Prometheus to query; absent: spec.rollout.analysis.prometheus, else the "
        "operator's MODELSHIP_PROMETHEUS_ADDRESS (chart value prometheusAddress).",
    )
    statistics: list[StatisticName] | None = Field(
        default=None, max_length=32,
        description="Statistics to compare with the profile; absent: every statistic in the "
        "version's profile.json.",
    )
    thresholds: Thresholds = Field(
        default_factory=Thresholds, json_schema_extra=schema_default(Thresholds),
        description="When a distance raises and clears a drift.",
    )
    window: Duration = Field(
        default="1m", description="The live histogram is the increase of the buckets over "
        "this window.")
    interval: Duration = Field(default="15s", description="Time between evaluations (>= 1s).")
    min_samples: int = Field(
        default=200, ge=1, le=100_000_000,
        description="Samples a statistic needs in the window; with fewer its result is "
        "Inconclusive, never a drift.",
    )
    raise_after: int = Field(
        default=2, ge=1, le=100,
        description="Consecutive evaluations above a raise threshold before a drift is raised.",
    )
    clear_after: int = Field(
        default=3, ge=1, le=100,
        description="Consecutive evaluations below the clear thresholds before a drift clears.",
    )
    max_model_age: Duration = Field(
        default="720h",
        description="Stale once the newest training data (profile.json or lineage.json "
        "dataTime) is older, or for a version without either, once its publish time is.",
    )
    sampling: Sampling = Field(
        default_factory=Sampling, json_schema_extra=schema_default(Sampling),
        description="Sampled production inputs on a dataset volume (off by default).",
    )


class StatisticStatus(ApiModel):
    """One statistic of the watched version, against its profile."""

    name: str = Field(description="Statistic name, as in profile.json.")
    source: Literal["input", "output"] = Field(description="input (DataDrift) or output "
                                               "(PredictionDrift).")
    result: StatisticResult = Field(
        description="The last evaluation: Normal, Drift (a score above a raise threshold), "
        "Inconclusive (too few samples, no data) or Unavailable (cannot be computed).")
    drifted: bool = Field(default=False, description="The hysteresis state: raised and not "
                          "cleared yet.")
    since: str | None = Field(default=None, description="When `drifted` last changed, or "
                              "when the statistic was first evaluated (RFC 3339).")
    streak: int = Field(
        default=0, description="Consecutive evaluations that point to the other state "
        "(towards raising while not drifted, towards clearing while drifted).")
    psi: float | None = Field(default=None, description="Population stability index.")
    js: float | None = Field(default=None, description="Jensen-Shannon distance (bits).")
    samples: int | None = Field(default=None, description="Live samples in the window.")
    message: str = Field(default="", description="Why, when not Normal.")


class MonitoringStatus(ApiModel):
    """The latest evaluation of the served (stable) version; what must survive a restart
    (hysteresis streaks, since-when) lives here."""

    version: int | None = Field(default=None, description="The version evaluated.")
    evaluated_at: str | None = Field(default=None, description="Last evaluation (RFC 3339).")
    window: str = Field(default="", description="The window of the live histograms.")
    profile_digest: str | None = Field(default=None, description="sha256 of the profile.json "
                                       "compared with; absent without one.")
    data_time: str | None = Field(default=None, description="Newest training data of the "
                                  "version (profile.json or lineage.json dataTime).")
    published_at: str | None = Field(
        default=None, description="When the version was published (its folder's and model "
        "file's modification time), when the age counts from it: no dataTime is recorded.")
    age_source: AgeSource | None = Field(
        default=None, description="What modelAgeSeconds counts from: ProfileDataTime, "
        "LineageDataTime (dataTime), or PublishTime (publishedAt; the data is older, so the "
        "age is a lower bound).")
    model_age_seconds: float | None = Field(
        default=None, description="Seconds since dataTime, or at least this many: since "
        "publishedAt (ageSource PublishTime).")
    non_finite: int | None = Field(default=None, description="Outputs with NaN or infinity in "
                                   "the window; absent when the version exports no count.")
    statistics: list[StatisticStatus] | None = Field(default=None,
                                                     description="Per statistic.")
    unavailable: list[str] | None = Field(
        default=None, description="Checks that cannot run, each with why (e.g. a version "
        "without profile.json: only non-finite outputs, the model age and, in rollouts, "
        "prediction drift relative to stable run).")
