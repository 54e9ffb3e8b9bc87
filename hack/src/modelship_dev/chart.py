"""The demo's chart: what the operator set (candidate weight) against what clients measured
(which version answered, error ratio, latency), second by second, and the accuracy each
version had on reviewed production samples, on one time axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# (second, answers per version, failures, mean latency in ms per version), as
# workload.InferenceLoad.series() gives them; its seconds count from the load's start.
Series = Sequence[tuple[int, dict[int, int], int, dict[int, float]]]


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the demo started
    stable: int | None
    candidate: int | None
    candidate_weight: int


@dataclass(frozen=True)
class ReviewReading:
    """`modelship review`'s gauges as Prometheus had them at one time."""

    at: float  # seconds since the demo started
    labels_total: int  # samples resolved to a class so far
    by_version: dict[int, tuple[float, int]]  # version -> (accuracy, labels it is over)


def write_chart(path: Path, series: Series, samples: Sequence[Sample],
                events: Sequence[tuple[float, str]], load_offset: float = 0.0,
                reviewed: Sequence[ReviewReading] = (),
                title: str = "modelship demo") -> None:
    """Four panels sharing the time axis; `load_offset` shifts the load's seconds onto the
    demo's clock."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, (share, errors, latency, accuracy) = plt.subplots(4, 1, figsize=(11, 11),
                                                           sharex=True)
    versions = sorted({v for _, ok, _, _ in series for v in ok})
    xs = [s + load_offset for s, _, _, _ in series]

    share.step([s.at for s in samples], [s.candidate_weight for s in samples], where="post",
               color="black", linewidth=2, label="candidate weight set by the operator")
    for v in versions:
        points = [(x, 100.0 * ok[v] / (sum(ok.values()) + failed))
                  for x, (_, ok, failed, _) in zip(xs, series, strict=True) if ok.get(v)]
        share.plot([x for x, _ in points], [y for _, y in points], ".", markersize=3,
                   label=f"answered by v{v} (clients)")
    share.set_ylabel("traffic %")
    share.set_ylim(-5, 105)
    share.legend(loc="center left", fontsize=8)

    ratio = [100.0 * f / (sum(ok.values()) + f) if sum(ok.values()) + f else float("nan")
             for _, ok, f, _ in series]
    errors.plot(xs, ratio, color="tab:red")
    errors.set_ylabel("errors %")
    errors.set_ylim(bottom=0)

    for v in versions:
        latency.plot([x for x, (_, _, _, lat) in zip(xs, series, strict=True) if v in lat],
                     [lat[v] for _, _, _, lat in series if v in lat], ".", markersize=3,
                     label=f"v{v}")
    latency.set_ylabel("client latency ms")
    latency.set_yscale("log")
    latency.legend(loc="upper left", fontsize=8)

    for v in sorted({v for r in reviewed for v in r.by_version}):
        points = [(r.at, r.by_version[v][0]) for r in reviewed if v in r.by_version]
        accuracy.plot([x for x, _ in points], [y for _, y in points], ".-", markersize=2,
                      linewidth=0.8, label=f"v{v}")
    accuracy.set_ylabel("reviewed accuracy")
    accuracy.set_ylim(-0.05, 1.05)
    accuracy.set_xlabel("seconds since the demo started")
    if reviewed:
        accuracy.legend(loc="lower left", fontsize=8,
                        title="newest reviewed samples (automated labels)", title_fontsize=7)

    for at, text in events:
        for ax in (share, errors, latency, accuracy):
            ax.axvline(at, color="grey", linewidth=0.5, alpha=0.6)
        share.annotate(text, (at, 102), fontsize=6, rotation=90, va="top", ha="right")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
