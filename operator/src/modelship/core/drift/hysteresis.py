"""Raise and clear a drift with hysteresis (pure): a score must stay above a raise threshold
for `raise_after` evaluations in a row to raise, and below the (lower) clear thresholds for
`clear_after` evaluations in a row to clear. An inconclusive evaluation breaks a streak and
changes nothing else: too few samples never raise a drift, nor clear one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["raise", "clear", "hold", "none"]


@dataclass(frozen=True)
class State:
    drifted: bool = False
    streak: int = 0
    since: str | None = None


def direction(psi: float, js: float, psi_raise: float, psi_clear: float, js_raise: float,
              js_clear: float) -> Direction:
    """Where one conclusive evaluation points: raise (either distance above its raise
    threshold), clear (both below their clear thresholds), or hold (in the band between)."""
    if psi > psi_raise or js > js_raise:
        return "raise"
    if psi < psi_clear and js < js_clear:
        return "clear"
    return "hold"


def advance(state: State, towards: Direction, raise_after: int, clear_after: int,
            now: str) -> State:
    """The state after one evaluation. `towards` is "none" for an inconclusive one."""
    since = state.since or now
    wanted = "clear" if state.drifted else "raise"
    if towards != wanted:
        return State(state.drifted, 0, since)
    streak = state.streak + 1
    if streak >= (clear_after if state.drifted else raise_after):
        return State(not state.drifted, 0, now)
    return State(state.drifted, streak, since)
