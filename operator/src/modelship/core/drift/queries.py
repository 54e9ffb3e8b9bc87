"""PromQL for the live statistics of one version (pure: strings out). One query per
statistic per version, each returning one sample per bucket (`le`) or per class."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from modelship.core.analysis.queries import label_selector, promql_duration
from modelship_api.profile import (
    INPUT_METRIC,
    NONFINITE_METRIC,
    OUTPUT_METRIC,
    PREDICTIONS_METRIC,
    CategoricalStatistic,
    NumericStatistic,
)

# Keys of the queries that are not about one profile statistic (statistic names are
# lowercase identifiers, so a key with ':' never collides with one).
NONFINITE = ":nonfinite"
CLASSES = ":classes"


@dataclass(frozen=True)
class VectorQuery:
    """One query: `by` is the label its samples are told apart by ("" for one number)."""

    key: str
    promql: str
    by: str = ""


@dataclass(frozen=True)
class VectorAnswer:
    """What Prometheus answered: {value of `by`: number}; empty: no series; `error`: none."""

    values: Mapping[str, float] = field(default_factory=dict)
    error: str = ""


def _increase(metric: str, selector: str, window: str, by: str) -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping}(increase({metric}{selector}[{promql_duration(window)}]))"


def statistic_query(name: str, statistic: NumericStatistic | CategoricalStatistic, model: str,
                    version: int, window: str, matchers: Mapping[str, str]) -> VectorQuery:
    if isinstance(statistic, CategoricalStatistic):
        return classes_query(model, version, window, matchers, key=name)
    family = INPUT_METRIC if statistic.source == "input" else OUTPUT_METRIC
    selector = label_selector(model, version, {**matchers, "statistic": name})
    return VectorQuery(name, _increase(f"{family}_bucket", selector, window, "le"), "le")


def classes_query(model: str, version: int, window: str, matchers: Mapping[str, str],
                  key: str = CLASSES) -> VectorQuery:
    """Predictions per class over the window (modelship_predictions_total)."""
    selector = label_selector(model, version, matchers)
    return VectorQuery(key, _increase(PREDICTIONS_METRIC, selector, window, "class"), "class")


def nonfinite_query(model: str, version: int, window: str,
                    matchers: Mapping[str, str]) -> VectorQuery:
    selector = label_selector(model, version, matchers)
    return VectorQuery(NONFINITE, _increase(NONFINITE_METRIC, selector, window, ""))
