"""Kubernetes-style conditions: the transition time moves only when the status does."""

from __future__ import annotations

from modelship_api.common import Condition


def set_condition(
    conditions: list[Condition] | None,
    new: Condition,
    now: str,
) -> list[Condition]:
    """Return `conditions` with `new` in place of its type, keeping the old transition time
    when the status did not change (so a steady state writes nothing)."""
    out: list[Condition] = []
    replaced = False
    for cond in conditions or []:
        if cond.type != new.type:
            out.append(cond)
            continue
        replaced = True
        keep_time = cond.status == new.status and cond.last_transition_time
        out.append(new.model_copy(update={
            "last_transition_time": cond.last_transition_time if keep_time else now
        }))
    if not replaced:
        out.append(new.model_copy(update={"last_transition_time": now}))
    return sorted(out, key=lambda c: c.type)


def get_condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or [] if c.type == type_), None)


def remove_condition(conditions: list[Condition] | None, type_: str) -> list[Condition]:
    return [c for c in conditions or [] if c.type != type_]
