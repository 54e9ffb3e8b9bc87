"""The rollout state machine (pure): `step(spec, status, observations, now) -> Decision`.

Per tick the operator: reads the resource, resolves the desired version, observes each
version's Deployment and any manual command annotation; asks `due_queries` which PromQL
queries to run now and runs them; calls `step`; applies `Decision.actions` in order; writes
`Decision.status`; and runs again after `Decision.requeue_after` seconds or on any change.
"""

from modelship.core.rollout.clock import format_time, parse_time
from modelship.core.rollout.decisions import (
    Action,
    Decision,
    EnsureVersion,
    Event,
    RemoveVersion,
    SetTraffic,
)
from modelship.core.rollout.inputs import (
    COMMAND_ACTIONS,
    Command,
    CommandAction,
    Observations,
    parse_command,
)
from modelship.core.rollout.machine import READINESS_POLL_S, step
from modelship.core.rollout.schedule import analysis_due, analysis_due_at, due_queries
from modelship.core.rollout.stages import Stage, stages_of, strategy_of
from modelship.core.rollout.tick import HISTORY_LIMIT

__all__ = [
    "COMMAND_ACTIONS",
    "HISTORY_LIMIT",
    "READINESS_POLL_S",
    "Action",
    "Command",
    "CommandAction",
    "Decision",
    "EnsureVersion",
    "Event",
    "Observations",
    "RemoveVersion",
    "SetTraffic",
    "Stage",
    "analysis_due",
    "analysis_due_at",
    "due_queries",
    "format_time",
    "parse_command",
    "parse_time",
    "stages_of",
    "step",
    "strategy_of",
]
