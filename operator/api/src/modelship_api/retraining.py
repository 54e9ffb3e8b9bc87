"""ModelDeployment retraining: when the served model drifts, ages or loses accuracy on reviewed
production samples, the operator creates a TrainingRun from a template (spec.retraining), at
most one at a time, bounded by a cooldown and a daily cap, and checks after the retrained
version is promoted that the drift cleared (status.retraining, condition RetrainingEffective).

The provenance of each run (trigger, scores, reviewed-label count) is written into the
TrainingRun's annotations under these names, and each run is labelled with the
ModelDeployment it was made for.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from modelship_api.common import ApiModel, Duration, cel, validations
from modelship_api.names import GROUP
from modelship_api.trainingrun import SPEC_RULES, TrainingRunSpec

LABEL_RETRAINED_FOR = f"{GROUP}/retrained-for"
ANNOTATION_SEQUENCE = f"{GROUP}/retraining-sequence"
ANNOTATION_TRIGGER = f"{GROUP}/retraining-trigger"
ANNOTATION_SCORES = f"{GROUP}/retraining-scores"
ANNOTATION_LABELS = f"{GROUP}/retraining-labels"
ANNOTATION_WINDOW = f"{GROUP}/retraining-window"
EFFECTIVE_CONDITION = "RetrainingEffective"

TriggerName = Literal["DataDrift", "ModelAge", "ReviewedAccuracy", "Schedule"]


class TrainingRunTemplate(TrainingRunSpec):
    """A TrainingRun spec, validated as one at admission. Unlike a TrainingRun's own spec it
    may be edited: each retraining run copies the template as it is then."""

    # The TrainingRun's immutability rule (self == oldSelf) is its own; a template changes.
    model_config = ConfigDict(json_schema_extra=validations(*SPEC_RULES))


class DataDriftTrigger(ApiModel):
    """Retrain when DataDrift has been True this long (from the condition's
    lastTransitionTime)."""

    for_: Duration = Field(default="10m", alias="for",
                           description="How long DataDrift must hold before a run starts.")


class ReviewedAccuracyTrigger(ApiModel):
    """Retrain when people's (or an automated reviewer's) labels say the stable version is
    wrong too often: modelship_reviewed_accuracy{source="all"} of the stable version, as
    `modelship review` exports it, over at least minSamples labels."""

    below: float = Field(ge=0.0, le=1.0,
                         description="Start a run when the reviewed accuracy is below this.")
    min_samples: int = Field(
        default=50, ge=1, le=1_000_000,
        description="Labels the accuracy must be over (modelship_reviewed_samples); with "
        "fewer the trigger does not hold.")


class ScheduleTrigger(ApiModel):
    """Retrain regularly, whatever the monitoring says."""

    every: Duration = Field(description="Time between the starts of runs (e.g. 168h).")


class Triggers(ApiModel):
    """What starts a run; any one holding is enough. At least one must be set."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.dataDrift) || (has(self.modelAge) && self.modelAge) || "
                "has(self.reviewedAccuracy) || has(self.schedule)",
                "set at least one trigger: dataDrift, modelAge: true, reviewedAccuracy or "
                "schedule", reason="FieldValueRequired"),
        )
    )

    data_drift: DataDriftTrigger | None = Field(
        default=None, description="Sustained DataDrift of the stable version.")
    model_age: bool = Field(
        default=False, description="true: retrain when the stable version is Stale (its "
        "newest training data older than spec.monitoring.maxModelAge).")
    reviewed_accuracy: ReviewedAccuracyTrigger | None = Field(
        default=None, description="Accuracy on reviewed production samples below a bound.")
    schedule: ScheduleTrigger | None = Field(default=None, description="A regular run.")


class Retraining(ApiModel):
    """Create a TrainingRun from `template` when a trigger holds; the ModelDeployment's
    fromTrainingRuns picks up its version once Blessed, and the rollout judges it."""

    template: TrainingRunTemplate = Field(
        description="The TrainingRun spec of each run (validated as a TrainingRun). Its "
        "model must be spec.model.name, so that fromTrainingRuns follows it.")
    triggers: Triggers = Field(description="What starts a run.")
    cooldown: Duration = Field(
        default="1h", description="Least time between the start of one run and the next.")
    max_per_day: int = Field(
        default=4, ge=1, le=100, description="Most runs started in any 24 hours.")
    verify_within: Duration = Field(
        default="30m", description="After a retrained version becomes stable, DataDrift "
        "must clear within this time, else RetrainingEffective=False (DriftPersists).")
    min_new_labels: int = Field(
        default=100, ge=0, le=100_000_000,
        description="After a Rejected run, no run starts while the trigger still holds until "
        "modelship_reviewed_labels_total grew by this many since that run (the data "
        "changed; counted from the first reading after its start when there was none at "
        "its start); 0: retry after the cooldown alone.")


RunPhase = Literal["Pending", "Running", "Evaluating", "Succeeded", "Failed", "Rejected",
                   "Deleted"]


class RetrainingRun(ApiModel):
    """One retraining TrainingRun, as the operator started it and last saw it."""

    name: str = Field(description="TrainingRun name (<modeldeployment>-retrain-<sequence>).")
    sequence: int = Field(description="Its number among this ModelDeployment's runs.")
    trigger: str = Field(default="", description="What started it, e.g. DataDrift.")
    scores: str = Field(default="", description="The readings that held the trigger.")
    labels_total: int | None = Field(
        default=None, description="modelship_reviewed_labels_total when it started; absent "
        "when no review metrics were available.")
    started_at: str = Field(description="When it was created (RFC 3339).")
    phase: RunPhase = Field(default="Pending", description="Its phase, last seen.")
    version: int | None = Field(default=None, description="The version it published.")
    promoted_at: str | None = Field(
        default=None, description="When its version was first seen stable (RFC 3339).")


class RetrainingStatus(ApiModel):
    """Retraining bookkeeping; what bounds runs across restarts lives here."""

    sequence: int = Field(default=0, description="Runs started so far (the last one's "
                          "sequence number).")
    last_run: RetrainingRun | None = Field(default=None, description="The newest run.")
    starts: list[str] | None = Field(
        default=None, max_length=100,
        description="Start times within the last 24 hours (the daily cap), oldest first.")
    started_last_day: int = Field(default=0, description="Runs started in the last 24 hours.")
    next_allowed_at: str | None = Field(
        default=None, description="When the cooldown or the daily cap lets the next run "
        "start (RFC 3339).")
    triggered: str = Field(default="", description="The trigger holding now, with its "
                           "readings; empty while none holds.")
    not_started: str = Field(
        default="", description="Why no run starts although a trigger holds (one running, "
        "cooldown until, daily cap, last run rejected and the data unchanged).")
    history: list[RetrainingRun] | None = Field(
        default=None, max_length=20, description="Recent runs, newest first (bounded).")
