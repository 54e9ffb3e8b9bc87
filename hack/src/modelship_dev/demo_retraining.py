"""The demo's closing act: the closed retraining loop, with no human step.

The served version keeps sampled production data on a dataset volume
(`spec.monitoring.sampling`); an automated reviewer stands in for people and labels those
samples with the generator's ground truth (autoreview.py, each label marked `source:
automated`); `modelship review` exports the reviewed accuracy per version, which Prometheus
scrapes. Once the lights dim, DataDrift holds for `TRIGGER_FOR` and the operator starts a
retraining TrainingRun from `spec.retraining.template` by itself: the original generated
data plus the reviewed production samples, gated against the serving version overall, on
the dark slice and on the reviewed samples. The canary promotes it, the drift clears
(RetrainingEffective) and the reviewed accuracy of the new version recovers. The same loop
as an end-to-end test: tests/e2e/test_retraining_loop.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelship_api import samples
from modelship_api.retraining import (
    ANNOTATION_LABELS,
    ANNOTATION_SCORES,
    ANNOTATION_TRIGGER,
    ANNOTATION_WINDOW,
    EFFECTIVE_CONDITION,
    LABEL_RETRAINED_FOR,
)
from modelship_dev.autoreview import REVIEWER, AutoReviewer
from modelship_dev.chart import ReviewReading
from modelship_dev.cluster import LocalCluster
from modelship_dev.demo_watch import (
    FOLLOW,
    MD,
    MODEL,
    NAMESPACE,
    Timeline,
    Watcher,
    expect,
    wait_md,
    wait_run,
    wait_status,
)
from modelship_dev.polling import wait
from modelship_dev.workload import training_run

PLANT = "plant"  # the dataset volume's folder for this factory
# Automated labels a second (a team of people would be far slower): it keeps up with the
# dark images sampling keeps (about 80 a second), so that the run finds most of them labelled.
REVIEW_RATE = 100.0
ACCURACY_WINDOW = 200  # `modelship review --accuracy-window` (its default)
# Long enough for a few thousand dark samples to be kept and reviewed before the run starts:
# it trains on them, and its drift reference is the production samples served since the
# drift was raised (at least 100 are needed, docs/retraining.md).
TRIGGER_FOR = "30s"
TRAINING_SAMPLES = 3000  # as v1 and v2
VERIFY_WITHIN = "5m"
# Labels of the retrained version that tell its reviewed accuracy: dark images are common in
# its profile, so sampling keeps them at the base rate only (about one a second).
NEW_LABELS = 50


def monitoring(datasets: Path) -> dict[str, Any]:
    """spec.monitoring: drift judged every 5 s over the last 30 s with the default
    thresholds (20 requests/s of 8 images give 4800 samples a window), and sampling to the
    dataset volume: 0.5 % of what is served, images in a slice the served version's profile
    barely holds (dark ones, once the lights dim) over-sampled 100 times."""
    return {
        "window": "30s", "interval": "5s",
        "sampling": {"enabled": True, "rate": 0.005, "oversampling": 100,
                     "lowConfidenceBelow": 0.05, "hourlyCap": 100000,
                     "volume": {"hostPath": str(datasets), "path": PLANT}},
    }


def retraining(repository: Path, datasets: Path) -> dict[str, Any]:
    """spec.retraining: a run once DataDrift held TRIGGER_FOR, at most one an hour and four a
    day; the drift must clear within 5 minutes of the new version's promotion."""
    spec: dict[str, Any] = training_run(
        "template", MODEL, repository, labels=FOLLOW, seed=6, samples=TRAINING_SAMPLES,
        hyperparameters={"epochs": "5"}, baseline_deployment=MD, max_regression=0.02)["spec"]
    # The operator adds referenceSince (when the drift was raised) to a run DataDrift
    # started: the new version's drift reference is what production looks like since.
    spec["dataset"]["production"] = {"volume": {"hostPath": str(datasets), "path": PLANT}}
    spec["gate"]["slices"] = [
        {"name": "dark", "inputStatistic": {"statistic": "input_brightness", "max": 0.3},
         "min": 0.8, "maxRegression": 0.0, "minSamples": 20},
        {"name": "reviewed", "reviewedProduction": True, "min": 0.8},
    ]
    return {"triggers": {"dataDrift": {"for": TRIGGER_FOR}}, "cooldown": "1h",
            "maxPerDay": 4, "verifyWithin": VERIFY_WITHIN, "template": spec}


def area(datasets: Path) -> Path:
    """The production area, as the serving runner writes it and the trainer reads it."""
    return samples.production_area(datasets / PLANT, MODEL)


def provenance(run: dict[str, Any]) -> str:
    """What the operator wrote on a retraining run: why it started, on which readings."""
    notes = run["metadata"].get("annotations") or {}
    return (f"trigger {notes.get(ANNOTATION_TRIGGER, '?')} ({notes.get(ANNOTATION_SCORES, '')})"
            f", {notes.get(ANNOTATION_WINDOW, '')}, reviewed labels so far "
            f"{notes.get(ANNOTATION_LABELS, 'unknown')}")


def gate_lines(gate: dict[str, Any]) -> list[str]:
    """The gate's checks, one line each, with their figures."""
    lines = []
    for check in gate.get("checks") or []:
        name = check["name"]
        verdict = "passed" if check["passed"] else "FAILED"
        value = check.get("value")
        detail = check.get("message") or (f"{name}: {value:.3f}" if value is not None
                                          else name)
        lines.append(f"{verdict}: {detail}")
    return lines


def accuracy_text(reading: ReviewReading | None, version: int) -> str:
    """`0.512 over 200 labels`, or `none yet`."""
    got = reading.by_version.get(version) if reading is not None else None
    return f"{got[0]:.3f} over {got[1]} labels" if got is not None else "none yet"


def cycle_line(dimmed_at: float, promoted_at: float, version: int) -> str:
    cycle = promoted_at - dimmed_at
    return (f"cycle time: {cycle:.0f} s from the lights changing ({dimmed_at:.1f}s) to the "
            f"retrained v{version} at 100% ({promoted_at:.1f}s), no human step "
            f"(goal: 300 s on 2 cores)")


def closed_loop(cluster: LocalCluster, timeline: Timeline, watcher: Watcher,
                reviewer: AutoReviewer, dimmed_at: float, labelled_at_dim: int,
                stable: int) -> None:
    """From DataDrift on (the act "lights dim" ran): the retraining run the operator starts,
    its gate, the canary, the drift clearing, and the reviewed accuracy before and after."""
    before = watcher.last_reading_before(dimmed_at)
    # Then v<stable>'s window is dark images (the first labels after the switch may still be
    # of bright ones, served before it and flushed after).
    enough = labelled_at_dim + ACCURACY_WINDOW + 100
    dropped: ReviewReading = wait(
        f"{ACCURACY_WINDOW} labels of dark images in the review gauges", lambda: (
            watcher.review_reading(lambda r: r.labels_total >= enough
                                   and stable in r.by_version)), timeout=120, interval=0.5)
    timeline(f"reviewed accuracy of v{stable} (modelship_reviewed_accuracy, newest "
             f"{ACCURACY_WINDOW} labelled samples): {accuracy_text(before, stable)} before "
             f"the lights changed, {accuracy_text(dropped, stable)} now; "
             f"{reviewer.labelled} samples labelled so far")
    watcher.events.append((dropped.at, f"v{stable} reviewed accuracy "
                                       f"{dropped.by_version[stable][0]:.2f}"))

    def started() -> dict[str, Any] | None:
        out = cluster.kubectl("-n", NAMESPACE, "get", "trainingruns", "-l",
                              f"{LABEL_RETRAINED_FOR}={MD}", "-o", "json", check=False)
        items = json.loads(out.stdout)["items"] if out.returncode == 0 else []
        return dict(items[0]) if items else None
    run: dict[str, Any] = wait("a retraining TrainingRun", started, timeout=180, interval=0.5)
    name = run["metadata"]["name"]
    created = timeline.now()
    watcher.events.append((created, f"{name} started"))
    timeline(f"the operator started TrainingRun {name} by itself, {created - dimmed_at:.0f} s "
             f"after the lights changed: {provenance(run)}")
    st = wait_run(cluster, name, timeout=420)
    expect(st, "Succeeded")
    version = int(st["version"])
    used = (st.get("lineage") or {}).get("production") or {}
    timeline(f"{name} trained v{version} on the original {TRAINING_SAMPLES} generated "
             f"images plus {used.get('train', 0)} reviewed production samples "
             f"({used.get('heldOut', 0)} more held out for its gate, weighted: "
             f"{used.get('weighted', False)}); {st.get('keyMetric')}")
    for line in gate_lines(st.get("gate") or {}):
        timeline(f"  gate {line}")
    timeline(f"  v{version}'s drift reference (profile.json): "
             f"{used.get('reference') or 'not said'}")
    watcher.events.append((timeline.now(), f"v{version} blessed"))
    wait_md(cluster, "Ready", version, timeout=300)
    promoted = timeline.now()
    timeline(cycle_line(dimmed_at, promoted, version))
    recovered: ReviewReading = wait(
        f"reviewed accuracy of v{version}", lambda: watcher.review_reading(
            lambda r: r.by_version.get(version, (0.0, 0))[1] >= NEW_LABELS),
        timeout=180, interval=0.5)
    timeline(f"reviewed accuracy on new dark samples: v{version} "
             f"{accuracy_text(recovered, version)} (v{stable} had "
             f"{accuracy_text(dropped, stable)})")
    watcher.events.append((recovered.at, f"v{version} reviewed accuracy "
                                         f"{recovered.by_version[version][0]:.2f}"))
    # Judged within verifyWithin of the promotion: True, or False (DriftPersists).
    st = wait_status(cluster, "modeldeployment", MD, lambda st: any(
        c["type"] == EFFECTIVE_CONDITION and c["status"] in ("True", "False")
        for c in st.get("conditions") or []), "has no RetrainingEffective verdict",
        timeout=500)
    effective = next(c for c in st["conditions"] if c["type"] == EFFECTIVE_CONDITION)
    if effective["status"] != "True":
        raise RuntimeError(f"RetrainingEffective={effective['status']}: "
                           f"{effective.get('message')}")
    drift = next(c for c in st["conditions"] if c["type"] == "DataDrift")
    scores = ", ".join(f"{s['name']} PSI {s['psi']:.2f}" for s in
                       (st.get("monitoring") or {}).get("statistics") or []
                       if s.get("source") == "input" and s.get("psi") is not None)
    timeline(f"DataDrift={drift['status']} against v{version}'s own profile ({scores}), "
             f"{timeline.now() - promoted:.0f} s after the promotion; the retraining is "
             f"judged effective")
    timeline(f"the automated reviewer labelled {reviewer.labelled} samples (reviewer "
             f"{REVIEWER!r}, each marked source: automated); {reviewer.unknown} it could "
             f"not know were left unlabelled")
