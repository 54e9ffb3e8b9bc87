"""Every strategy as one linear list of stages, so one loop drives them all.

canary:    Canary 0 .. Canary n-1                       then promote
shadow:    Shadow, then Canary 0 .. n-1 when canarySteps  then promote
blueGreen: Preview (0%), PostSwitch (100%, old stays warm) then promote
replace:   no stage: promote as soon as the candidate is ready
Status stores the stage name and canary step index, which locate the position again after a
restart or a spec edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelship.core.durations import parse_duration
from modelship_api.modeldeployment import CanaryStep, Rollout

Strategy = Literal["canary", "blueGreen", "shadow", "replace"]
STARTING = "Starting"


@dataclass(frozen=True)
class Stage:
    name: str
    step: int
    weight: int  # percent of live traffic to the candidate
    mirror: int  # percent of requests mirrored to the candidate
    hold: float  # seconds the stage lasts at least
    manual: bool  # after `hold` and a passing analysis, wait for `modelship promote`


def strategy_of(rollout: Rollout | None) -> Strategy:
    if rollout is None:
        return "replace"
    if rollout.blue_green is not None:
        return "blueGreen"
    if rollout.shadow is not None:
        return "shadow"
    return "canary" if rollout.canary is not None else "replace"


def _canary(steps: list[CanaryStep]) -> list[Stage]:
    return [Stage("Canary", i, s.weight, 0, parse_duration(s.pause) if s.pause else 0.0,
                  s.pause is None)
            for i, s in enumerate(steps)]


def stages_of(rollout: Rollout | None) -> list[Stage]:
    strategy = strategy_of(rollout)
    if rollout is None or strategy == "replace":
        return []
    if rollout.blue_green is not None:
        bg = rollout.blue_green
        return [Stage("Preview", 0, 0, 0, parse_duration(bg.preview_duration),
                      not bg.auto_promote),
                Stage("PostSwitch", 0, 100, 0, parse_duration(bg.post_switch_duration), False)]
    if rollout.shadow is not None:
        sh = rollout.shadow
        shadow = Stage("Shadow", 0, 0, sh.mirror_percent, parse_duration(sh.duration), False)
        return [shadow, *_canary(sh.canary_steps or [])]
    assert rollout.canary is not None
    return _canary(rollout.canary.steps)


def locate(stages: list[Stage], name: str, step: int) -> int | None:
    """The position of a persisted (stage, step); a canary step beyond an edited, shorter
    list maps to the last step. None: the stage is not in this plan (strategy changed)."""
    same = [i for i, s in enumerate(stages) if s.name == name]
    if not same:
        return None
    exact = [i for i in same if stages[i].step == step]
    return exact[0] if exact else same[-1]
