"""Profiles and live answers shared by the monitoring and drift-check tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelship.core.drift import monitor, profiles
from modelship.core.drift.queries import NONFINITE, VectorAnswer
from modelship_api.profile import NumericStatistic, Profile, image_statistics

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TARGET = monitor.Target("defects", 3, {"namespace": "prod"})
CLASSES = ["ok", "scratch", "dent"]


def profile(data_age_days: float = 10) -> Profile:
    definitions = image_statistics(CLASSES)
    values: dict[str, list[float]] = {}
    for d in definitions:
        if d.kind == "numeric":
            edges = d.edges or []
            mid = edges[len(edges) // 2]  # every sample near the middle bucket
            values[d.name] = [mid * (0.95 + 0.1 * i / 1000) for i in range(1000)]
    values["predicted_class"] = [0] * 800 + [1] * 100 + [2] * 100
    when = NOW - timedelta(days=data_age_days)
    return Profile.build(definitions, values, 1000, when, when)


def read(p: Profile | None = None) -> profiles.ProfileRead:
    p = p or profile()
    return profiles.ProfileRead(profile=p, digest=p.digest())


def cumulative(stat: NumericStatistic, live_counts: list[float]) -> dict[str, float]:
    out, total = {}, 0.0
    for edge, c in zip([*map(str, stat.edges), "+Inf"], live_counts, strict=True):
        total += c
        out[edge] = total
    return out


def answers(p: Profile, scale: float = 1.0, dark: bool = False, nonfinite: float = 0.0,
            classes: dict[str, float] | None = None) -> dict[str, VectorAnswer]:
    """Live answers in the profile's proportions (times `scale`), with the input
    statistics moved to the lowest bucket when `dark`."""
    out = {NONFINITE: VectorAnswer({"": nonfinite})}
    for name, stat in p.statistics.items():
        if isinstance(stat, NumericStatistic):
            counts = [c * scale for c in stat.counts]
            if dark and stat.source == "input":
                counts = [sum(counts)] + [0.0] * (len(counts) - 1)
            out[name] = VectorAnswer(cumulative(stat, counts))
        else:
            out[name] = VectorAnswer(classes or {c: n * scale for c, n in
                                                 zip(stat.categories, stat.counts,
                                                     strict=True)})
    return out


