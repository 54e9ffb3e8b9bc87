"""A model version's reference profile (`profile.json`) and the live statistics that match it.

The trainer computes, on the held-out split, the statistics that serving computes on live
traffic, as histograms with fixed bucket edges, and publishes them as `profile.json` inside
the version folder. Every served version exports the same histograms to Prometheus; the
operator compares the two (drift). This module is the contract between the three: stdlib and
pydantic only, importable by the trainer, the operator and anything else.

Statistics. Each has a name, a source (`input` or `output`), a measure (how one sample's
value is computed) and a kind:
- `numeric`: fixed ascending, finite bucket upper edges. A value v falls in bucket i when
  edges[i-1] < v <= edges[i] (bucket 0: v <= edges[0]; the last bucket, index len(edges):
  v > edges[-1]), which is Prometheus' `le` convention: the cumulative sum of counts[0..i]
  is the series `..._bucket{le="edges[i]"}` and the total is `le="+Inf"`.
- `categorical`: a list of categories; counts[i] is how many samples were categories[i].

Measures (per sample; x is one input sample flattened, p the softmax of its logits):
- input `mean` (brightness for images in [0, 1]), `std` (contrast), `saturated_fraction`
  (fraction of x with x <= SATURATION_LOW or x >= SATURATION_HIGH, i.e. <= 0.02 or >= 0.98:
  clipped shadows and highlights), `feature` (x[feature], one element of the sample: the
  per-feature statistic of a tabular recipe; a categorical feature is expressed as numeric
  over its integer codes with edges at the codes, e.g. [0, 1, 2]);
- output `confidence` (max p), `entropy` (-sum p ln p, natural log), `predicted_class`
  (argmax p, categorical over the model's class labels).
The image recipe's statistics are `image_statistics(classes)`: input_brightness,
input_contrast, input_saturated_fraction, output_confidence, output_entropy, predicted_class.

profile.json (schemaVersion 1), canonical JSON (`Profile.dumps`), digest = sha256 of it:
    {"schemaVersion": 1, "dataTime": RFC 3339 (newest training data), "createdAt": RFC 3339,
     "samples": N,
     "statistics": {name: {"kind": "numeric", "source": ..., "measure": ..., ["feature": i,]
                           "edges": [...], "counts": [... len(edges)+1], "mean": x}
                        | {"kind": "categorical", "source": ..., "measure": ...,
                           "categories": [...], "counts": [...]}}}

Live metrics, exported by every served version on Triton's metrics port (Triton custom
metrics, `pb_utils.MetricFamily`), labels model and version as Triton's own nv_* metrics:
- `modelship_input_statistic` / `modelship_output_statistic`: Prometheus classic-histogram
  series of each numeric statistic, labels {model, version, statistic}: `<name>_bucket{le}`
  (cumulative, le = each profile edge as Python's repr spells it, e.g. "0.05", "1.0", plus
  "+Inf"), `<name>_count` and `<name>_sum`. They are built from Triton COUNTER families
  (`_sum` a GAUGE) rather than one HISTOGRAM family: a HISTOGRAM takes one value per
  observe() call, each a crossing from the Python stub to the server (measured +0.14 ms),
  while counters take a batch's aggregate in one increment. Every series exists (at 0) from
  the moment the version is loaded. Queries (increase(..._bucket[w]), histogram_quantile)
  read them as any classic histogram; only the `# TYPE` lines say counter/gauge.
- `modelship_predictions_total`: counter, labels {model, version, class}: the
  `predicted_class` statistic (class = the category label).
- `modelship_nonfinite_outputs_total`: counter, labels {model, version}: samples whose
  output has a NaN or an infinity (they enter no output statistic).
A version published without profile.json still exports the two counters (class = the
labels of its lineage.json, else the class index). Triton's warmup requests are not counted.
The Python-backend runner (trainer/src/modelship_trainer/triton_runner.py) exports them,
aggregated in the model and exported every few seconds (MODELSHIP_STATISTICS_FLUSH_S, 5 s);
docs/profiles.md has the design and its measured cost.
"""

from __future__ import annotations

import hashlib
import json
import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from modelship_api.common import ApiModel

SCHEMA_VERSION = 1
PROFILE_FILE = "profile.json"

INPUT_METRIC = "modelship_input_statistic"
OUTPUT_METRIC = "modelship_output_statistic"
PREDICTIONS_METRIC = "modelship_predictions_total"
NONFINITE_METRIC = "modelship_nonfinite_outputs_total"

SATURATION_LOW = 0.02
SATURATION_HIGH = 0.98
DEFAULT_BUCKETS = 20

Source = Literal["input", "output"]
Measure = Literal["mean", "std", "saturated_fraction", "feature",
                  "confidence", "entropy", "predicted_class"]
INPUT_MEASURES: frozenset[str] = frozenset({"mean", "std", "saturated_fraction", "feature"})
OUTPUT_MEASURES: frozenset[str] = frozenset({"confidence", "entropy", "predicted_class"})
CATEGORICAL_MEASURES: frozenset[str] = frozenset({"predicted_class"})
StatisticName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=63)]


def equal_edges(low: float, high: float, buckets: int = DEFAULT_BUCKETS) -> list[float]:
    """`buckets` equal buckets on (low, high]: their upper edges, rounded for stable JSON."""
    if not (math.isfinite(low) and math.isfinite(high) and high > low and buckets >= 1):
        raise ValueError(f"equal_edges: need finite low < high and buckets >= 1, got "
                         f"{low}, {high}, {buckets}")
    return [round(low + (high - low) * (i + 1) / buckets, 6) for i in range(buckets)]


def bucket_index(edges: Sequence[float], value: float) -> int:
    """The bucket of `value` under the `le` convention (len(edges) is the overflow bucket)."""
    return bisect_left(edges, value)


def _check_edges(edges: Sequence[float], where: str) -> None:
    if not edges:
        raise ValueError(f"{where}: numeric statistics need at least one bucket edge")
    if not all(math.isfinite(e) for e in edges):
        raise ValueError(f"{where}: bucket edges must be finite (the last bucket is open)")
    if any(b <= a for a, b in pairwise(edges)):
        raise ValueError(f"{where}: bucket edges must be strictly ascending")


class StatisticDefinition(ApiModel):
    """What one statistic is: where it is measured, how, and its buckets or categories."""

    name: StatisticName = Field(description="e.g. input_brightness; unique in a profile.")
    source: Source = Field(description="input (the request) or output (the prediction).")
    measure: Measure = Field(description="How one sample's value is computed.")
    kind: Literal["numeric", "categorical"] = Field(description="Histogram or categories.")
    feature: int | None = Field(default=None, ge=0,
                                description="Element of the flattened sample (measure feature).")
    edges: list[float] | None = Field(default=None, description="Bucket upper edges (numeric).")
    categories: list[str] | None = Field(default=None,
                                         description="Categories (categorical).")

    @model_validator(mode="after")
    def _consistent(self) -> StatisticDefinition:
        where = f"statistic {self.name!r}"
        wanted = INPUT_MEASURES if self.source == "input" else OUTPUT_MEASURES
        if self.measure not in wanted:
            raise ValueError(f"{where}: measure {self.measure!r} is not an {self.source} "
                             f"measure (one of {sorted(wanted)})")
        if (self.measure == "feature") != (self.feature is not None):
            raise ValueError(f"{where}: set feature exactly when measure is feature")
        categorical = self.measure in CATEGORICAL_MEASURES
        if categorical != (self.kind == "categorical"):
            raise ValueError(f"{where}: measure {self.measure!r} is "
                             f"{'categorical' if categorical else 'numeric'}")
        if self.kind == "numeric":
            _check_edges(self.edges or [], where)
            if self.categories is not None:
                raise ValueError(f"{where}: a numeric statistic has edges, not categories")
        else:
            if not self.categories or len(set(self.categories)) != len(self.categories):
                raise ValueError(f"{where}: categorical statistics need distinct categories")
            if self.edges is not None:
                raise ValueError(f"{where}: a categorical statistic has categories, not edges")
        return self


def image_statistics(classes: Sequence[str]) -> list[StatisticDefinition]:
    """The image recipe's statistics (inputs in [0, 1]); entropy's range is [0, ln K]."""
    k = len(classes)
    if k < 2:
        raise ValueError(f"image_statistics: need at least 2 classes, got {k}")
    saturated = [0.0, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]

    def numeric(name: str, source: Source, measure: Measure,
                edges: list[float]) -> StatisticDefinition:
        return StatisticDefinition(name=name, source=source, measure=measure, kind="numeric",
                                   edges=edges)

    return [
        numeric("input_brightness", "input", "mean", equal_edges(0.0, 1.0)),
        numeric("input_contrast", "input", "std", equal_edges(0.0, 0.25)),
        numeric("input_saturated_fraction", "input", "saturated_fraction", saturated),
        numeric("output_confidence", "output", "confidence", equal_edges(0.0, 1.0)),
        numeric("output_entropy", "output", "entropy", equal_edges(0.0, math.log(k))),
        StatisticDefinition(name="predicted_class", source="output",
                            measure="predicted_class", kind="categorical",
                            categories=list(classes)),
    ]


class NumericStatistic(ApiModel):
    """A histogram: counts per bucket (not cumulative) and the mean of the values."""

    kind: Literal["numeric"] = "numeric"
    source: Source
    measure: Measure
    feature: int | None = None
    edges: list[float]
    counts: list[int]
    mean: float | None = Field(default=None, description="None when no sample was counted.")

    @model_validator(mode="after")
    def _shape(self) -> NumericStatistic:
        _check_edges(self.edges, "numeric statistic")
        if len(self.counts) != len(self.edges) + 1 or min(self.counts) < 0:
            raise ValueError(f"numeric statistic: counts must be {len(self.edges) + 1} "
                             f"non-negative integers (one per edge plus the overflow bucket)")
        return self


class CategoricalStatistic(ApiModel):
    """Counts per category."""

    kind: Literal["categorical"] = "categorical"
    source: Source
    measure: Measure
    categories: list[str]
    counts: list[int]

    @model_validator(mode="after")
    def _shape(self) -> CategoricalStatistic:
        if len(self.counts) != len(self.categories) or min(self.counts, default=0) < 0:
            raise ValueError("categorical statistic: one non-negative count per category")
        return self


Statistic = Annotated[NumericStatistic | CategoricalStatistic, Field(discriminator="kind")]


def _scaled(weighted: Sequence[float], samples: int) -> list[int]:
    """Weighted bucket sums as counts that add up to the samples counted: the histogram of a
    weighted sample (over-sampled slices at their real share) in profile.json's integers."""
    total = sum(weighted)
    return [round(w * samples / total) if total else 0 for w in weighted]


def numeric_statistic(definition: StatisticDefinition, values: Iterable[float],
                      weights: Sequence[float] | None = None) -> NumericStatistic:
    """The histogram of `values` (each counting its weight, default 1); non-finite values are
    not counted (serving counts them apart, in modelship_nonfinite_outputs_total)."""
    edges = definition.edges or []
    sums = [0.0] * (len(edges) + 1)
    total, mass, n = 0.0, 0.0, 0
    for i, v in enumerate(values):
        if math.isfinite(v):
            w = 1.0 if weights is None else weights[i]
            sums[bucket_index(edges, v)] += w
            total += w * v
            mass += w
            n += 1
    counts = [int(c) for c in sums] if weights is None else _scaled(sums, n)
    return NumericStatistic(source=definition.source, measure=definition.measure,
                            feature=definition.feature, edges=list(edges), counts=counts,
                            mean=total / mass if mass else None)


def categorical_statistic(definition: StatisticDefinition, indices: Iterable[int],
                          weights: Sequence[float] | None = None) -> CategoricalStatistic:
    """Counts of category indices, each counting its weight (default 1); out-of-range indices
    are an error: a model with more outputs than categories is a bug of the caller."""
    categories = definition.categories or []
    sums = [0.0] * len(categories)
    n = 0
    for j, i in enumerate(indices):
        if not 0 <= i < len(categories):
            raise ValueError(f"statistic {definition.name!r}: category index {i} outside "
                             f"0..{len(categories) - 1}")
        sums[i] += 1.0 if weights is None else weights[j]
        n += 1
    counts = [int(c) for c in sums] if weights is None else _scaled(sums, n)
    return CategoricalStatistic(source=definition.source, measure=definition.measure,
                                categories=list(categories), counts=counts)


class StatisticSummary(ApiModel):
    """One statistic in a status summary: the mean (numeric) or the top class."""

    mean: float | None = Field(default=None, description="Mean value (numeric).")
    top: str | None = Field(default=None, description="Most frequent category (categorical).")
    top_fraction: float | None = Field(default=None,
                                       description="Share of the most frequent category.")


class ProfileSummary(ApiModel):
    """What the TrainingRun's status records of the published profile."""

    digest: str = Field(description="sha256 of profile.json (canonical JSON).")
    samples: int = Field(description="Samples the profile was computed on.")
    data_time: str = Field(description="Time of the newest training data (RFC 3339).")
    statistics: dict[str, StatisticSummary] | None = Field(
        default=None, description="Per statistic: mean or top class.")


class Profile(ApiModel):
    """profile.json: the reference statistics of one model version."""

    schema_version: Literal[1] = 1
    data_time: AwareDatetime = Field(description="Newest training data (for staleness).")
    created_at: AwareDatetime = Field(description="When the profile was computed.")
    samples: int = Field(ge=0, description="Samples the statistics were computed on.")
    statistics: dict[StatisticName, Statistic]

    @field_validator("data_time", "created_at")
    @classmethod
    def _utc(cls, t: datetime) -> datetime:
        # One spelling per instant, so that the same profile always has the same digest.
        return t.astimezone(UTC)

    @classmethod
    def build(cls, definitions: Sequence[StatisticDefinition],
              values: Mapping[str, Sequence[float]], samples: int, data_time: datetime,
              created_at: datetime,
              weights: Mapping[str, Sequence[float]] | None = None) -> Profile:
        """A profile from per-sample values of each statistic (category indices for the
        categorical ones); every definition must have its values, and its weights (one per
        value) when `weights` is given."""
        names = [d.name for d in definitions]
        if len(set(names)) != len(names):
            raise ValueError(f"statistic names must be unique, got {names}")
        stats: dict[str, NumericStatistic | CategoricalStatistic] = {}
        for d in definitions:
            if d.name not in values:
                raise ValueError(f"no values for statistic {d.name!r}")
            w = weights[d.name] if weights is not None else None
            if w is not None and len(w) != len(values[d.name]):
                raise ValueError(f"statistic {d.name!r}: {len(w)} weights for "
                                 f"{len(values[d.name])} values")
            stats[d.name] = (numeric_statistic(d, values[d.name], w) if d.kind == "numeric"
                             else categorical_statistic(d, (int(v) for v in values[d.name]), w))
        return cls(data_time=data_time, created_at=created_at, samples=samples,
                   statistics=stats)

    def definitions(self) -> list[StatisticDefinition]:
        """The statistic definitions this profile was computed with (serving uses these)."""
        return [StatisticDefinition(
            name=name, source=s.source, measure=s.measure, kind=s.kind,
            feature=s.feature if isinstance(s, NumericStatistic) else None,
            edges=s.edges if isinstance(s, NumericStatistic) else None,
            categories=s.categories if isinstance(s, CategoricalStatistic) else None)
            for name, s in sorted(self.statistics.items())]

    def dumps(self) -> str:
        """Canonical JSON: sorted keys, no spaces; the digest is over these bytes."""
        data = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.dumps().encode()).hexdigest()

    def dump(self, path: Path) -> None:
        path.write_text(self.dumps() + "\n", encoding="utf-8")

    @classmethod
    def loads(cls, text: str) -> Profile:
        """Raises pydantic.ValidationError (a ValueError) on anything but a valid profile."""
        return cls.model_validate_json(text)

    @classmethod
    def load(cls, path: Path) -> Profile:
        return cls.loads(path.read_text(encoding="utf-8"))

    def summary(self) -> ProfileSummary:
        stats: dict[str, StatisticSummary] = {}
        for name, s in sorted(self.statistics.items()):
            if isinstance(s, NumericStatistic):
                stats[name] = StatisticSummary(
                    mean=round(s.mean, 6) if s.mean is not None else None)
            else:
                total = sum(s.counts)
                top = max(range(len(s.counts)), key=lambda i: s.counts[i]) if total else None
                stats[name] = StatisticSummary(
                    top=s.categories[top] if top is not None else None,
                    top_fraction=round(s.counts[top] / total, 6) if top is not None else None)
        return ProfileSummary(digest=self.digest(), samples=self.samples,
                              data_time=rfc3339(self.data_time), statistics=stats or None)


def rfc3339(t: datetime) -> str:
    """UTC, seconds precision, 'Z': how dates appear in status."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
