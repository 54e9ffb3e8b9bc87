"""The retraining TrainingRun a ModelDeployment's template describes (pure)."""

from __future__ import annotations

from typing import Any

from modelship import constants
from modelship.core.retraining import Start
from modelship_api.modeldeployment import ModelDeployment
from modelship_api.retraining import (
    ANNOTATION_LABELS,
    ANNOTATION_SCORES,
    ANNOTATION_SEQUENCE,
    ANNOTATION_TRIGGER,
    ANNOTATION_WINDOW,
    LABEL_RETRAINED_FOR,
)


def training_run(md: ModelDeployment, start: Start) -> dict[str, Any]:
    """Labelled so that the ModelDeployment's fromTrainingRuns follows it, and with its
    provenance in annotations. No owner reference: the run and the version it publishes
    are a record that outlives the ModelDeployment."""
    assert md.spec.retraining is not None and md.spec.model.from_training_runs is not None
    notes = {ANNOTATION_SEQUENCE: str(start.sequence), ANNOTATION_TRIGGER: start.trigger,
             ANNOTATION_SCORES: start.scores[:4096], ANNOTATION_WINDOW: start.window[:1024]}
    if start.labels_total is not None:
        notes[ANNOTATION_LABELS] = str(start.labels_total)
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.TRAINING_RUN_KIND,
        "metadata": {
            "name": start.name,
            "namespace": md.metadata.namespace,
            "labels": {**md.spec.model.from_training_runs.match_labels,
                       LABEL_RETRAINED_FOR: md.metadata.name},
            "annotations": notes,
        },
        "spec": _spec(md, start),
    }


def _spec(md: ModelDeployment, start: Start) -> dict[str, Any]:
    """The template; a run that DataDrift started builds its drift reference from the
    production samples served since the drift was raised (the new normal), unless the
    template says otherwise."""
    assert md.spec.retraining is not None
    spec = md.spec.retraining.template.to_api()
    production = spec.get("dataset", {}).get("production")
    if start.drift_since and production is not None:
        production.setdefault("referenceSince", start.drift_since)
    return spec
