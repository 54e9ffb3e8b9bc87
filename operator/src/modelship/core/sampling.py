"""Sampled production data (spec.monitoring.sampling): where the Triton pods write, what the
runner is told, and the condition `Sampling` read from the runner's stopped gauge (pure).

The runner (modelship_trainer.triton_runner, which the operator cannot import) reads the
config.pbtxt parameters named here and exports modelship_sampling_stopped{model,version,
reason} on every pod: 0 for each reason while it writes, 1 for the reason it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelship.core.analysis.queries import label_selector
from modelship.core.conditions import get_condition, remove_condition, set_condition
from modelship.core.drift.queries import VectorAnswer, VectorQuery
from modelship.core.rollout.decisions import Event
from modelship_api.common import Condition
from modelship_api.monitoring import Sampling
from modelship_api.samples import PRODUCTION_FOLDER

CONDITION = "Sampling"
VOLUME = "production-samples"
MOUNT = "/modelship-samples"
STOPPED_METRIC = "modelship_sampling_stopped"
QUERY_KEY = ":sampling"  # never a statistic name (see core.drift.queries)
# config.pbtxt parameters the runner reads (triton_runner.SAMPLING_*).
AREA_PARAMETER = "modelship_sampling_area"
RATE_PARAMETER = "modelship_sampling_rate"
HOURLY_CAP_PARAMETER = "modelship_sampling_hourly_cap"
LOW_CONFIDENCE_PARAMETER = "modelship_sampling_low_confidence_below"
OVERSAMPLING_PARAMETER = "modelship_sampling_oversampling"
_FIXES = {
    "VolumeFull": "the volume is full: free space or grow it",
    "ReadOnly": "the volume is mounted read-only: give the Triton pods write access",
    "PermissionDenied": "the Triton pods may not write there: fix the directory's owner "
                        "or mode",
}


def area(sampling: Sampling, model: str) -> str:
    """The production area inside a Triton pod: <mount>/<volume path>/production/<model>."""
    sub = sampling.volume.path.strip("/") if sampling.volume is not None else ""
    return "/".join(p for p in (MOUNT, sub, PRODUCTION_FOLDER, model) if p)


def describe(sampling: Sampling, model: str) -> str:
    """The production area as the user named it, for messages."""
    v = sampling.volume
    if v is None:
        return "no volume"
    base = f"hostPath {v.host_path}" if v.host_path else f"claim {v.persistent_volume_claim}"
    sub = "/".join(p for p in (v.path.strip("/"), PRODUCTION_FOLDER, model) if p)
    return f"{base}, {sub}"


def volume(sampling: Sampling) -> dict[str, object]:
    """The pod volume (read-write) the samples go to."""
    v = sampling.volume
    assert v is not None  # the CRD's CEL rule: enabled needs a volume
    if v.persistent_volume_claim is not None:
        return {"name": VOLUME, "persistentVolumeClaim": {
            "claimName": v.persistent_volume_claim}}
    return {"name": VOLUME, "hostPath": {"path": v.host_path, "type": "DirectoryOrCreate"}}


def _pbtxt_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parameters(sampling: Sampling, model: str) -> str:
    """config.pbtxt `parameters` entries telling the runner where and how to sample ("" when
    sampling is off); entries of a map field, so they add to the published ones."""
    if not sampling.enabled:
        return ""
    values = {AREA_PARAMETER: area(sampling, model), RATE_PARAMETER: repr(sampling.rate),
              HOURLY_CAP_PARAMETER: str(sampling.hourly_cap),
              LOW_CONFIDENCE_PARAMETER: repr(sampling.low_confidence_below),
              OVERSAMPLING_PARAMETER: repr(sampling.oversampling)}
    return "".join(f"parameters {{ key: {_pbtxt_string(k)} value: {{ string_value: "
                   f"{_pbtxt_string(v)} }} }}\n" for k, v in values.items())


def stopped_query(model: str, version: int, matchers: Mapping[str, str]) -> VectorQuery:
    """Per stop reason, 1 when any pod of the version stopped for it."""
    selector = label_selector(model, version, matchers)
    return VectorQuery(QUERY_KEY, f"max by (reason) ({STOPPED_METRIC}{selector})", "reason")


def condition(answer: VectorAnswer | None, version: int, where: str,
              generation: int | None) -> Condition:
    """Sampling: True while every pod writes, False (reason: why) once one stopped, Unknown
    when Prometheus cannot tell."""
    if answer is None or answer.error:
        why = answer.error if answer is not None else "no Prometheus to query"
        return Condition(type=CONDITION, status="Unknown", reason="NoData",
                         message=f"sampling state unknown: {why}", observed_generation=generation)
    if not answer.values:
        return Condition(type=CONDITION, status="Unknown", reason="NoData",
                         message=f"version {version} exports no {STOPPED_METRIC} series (its "
                         "pods are starting, or they serve without modelship's runner)",
                         observed_generation=generation)
    stopped = sorted(r for r, v in answer.values.items() if v >= 0.5)
    if stopped:
        fixes = "; ".join(_FIXES.get(r, f"writes fail ({r}): see the Triton pods' logs")
                          for r in stopped)
        return Condition(type=CONDITION, status="False", reason=stopped[0],
                         message=f"sampling stopped on version {version} ({where}): {fixes}. "
                         "Serving goes on; the pods try to write again every minute",
                         observed_generation=generation)
    return Condition(type=CONDITION, status="True", reason="Writing",
                     message=f"version {version} writes sampled production data to {where}",
                     observed_generation=generation)


def apply(existing: Sequence[Condition] | None, sampling: Sampling, model: str,
          answers: Mapping[str, VectorAnswer] | None, version: int, now: str,
          generation: int | None) -> tuple[list[Condition], list[Event]]:
    """The conditions with Sampling set (absent when sampling is off), and an event when
    it stops or writes again."""
    if not sampling.enabled:
        return remove_condition(list(existing or []), CONDITION), []
    where = describe(sampling, model)
    new = condition(answers.get(QUERY_KEY) if answers is not None else None, version, where,
                    generation)
    old = get_condition(list(existing or []), CONDITION)
    if old is not None and (old.status, old.reason, old.message) == (
            new.status, new.reason, new.message):
        return list(existing or []), []
    events = []
    if new.status == "False" and (old is None or old.reason != new.reason):
        events.append(Event("Warning", f"Sampling{new.reason}", new.message))
    elif new.status == "True" and old is not None and old.status == "False":
        events.append(Event("Normal", "SamplingResumed", new.message))
    return set_condition(list(existing or []), new, now), events
