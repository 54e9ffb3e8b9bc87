"""Whether the user checks' PromQL parses, judged by Prometheus' own parser (pure: what to ask
and what the answers mean; adapters.prometheus asks).

The operator asks the Prometheus the spec names as soon as it sees a spec, with the
placeholders filled in with harmless values, so a typo is an InvalidSpec at once instead of
a rollout that sits Inconclusive. The answer is kept in status.queryCheck under a digest of
the address and the queries: an unchanged spec is never asked again, across restarts too.
A Prometheus that gives no verdict (unreachable, timeout, an unexpected answer) leaves the
spec valid and the question open for the next pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from modelship.core.analysis.queries import (
    ANY_POD,
    analysis_checks,
    promql_duration,
    render_template,
)
from modelship.core.validation import SpecError
from modelship_api.modeldeployment import Analysis, QueryCheck

# The version placeholders are filled with a version number that may not exist: parsing
# does not look at data.
SAMPLE_VERSION = "1"
_PREFIX = 'invalid parameter "query": '  # how Prometheus' API wraps a parse error


@dataclass(frozen=True)
class UserQuery:
    """One check's query as it is sent for parsing."""

    field: str  # e.g. spec.rollout.analysis.checks[2].query
    check: str
    promql: str


@dataclass(frozen=True)
class ParseAnswer:
    """Prometheus' verdict on one query: `error` is its parse error ("" when the query
    parses); `unavailable` says why there is no verdict."""

    error: str = ""
    unavailable: str = ""


def user_queries(analysis: Analysis, model: str, namespace: str) -> list[UserQuery]:
    """The user checks' queries with placeholders filled in. Call only once the templates
    are known to render (queries.check_errors is empty)."""
    values = {"model": model, "namespace": namespace, "candidate": SAMPLE_VERSION,
              "stable": SAMPLE_VERSION, "window": promql_duration(analysis.window),
              "pods": ANY_POD}
    return [UserQuery(f"spec.rollout.analysis.checks[{i}].query", c.name,
                      render_template(c.query, values))
            for i, c in enumerate(analysis_checks(analysis)) if c.query is not None]


def digest(address: str, queries: Sequence[UserQuery]) -> str:
    text = "\n".join([address, *(f"{q.field}\t{q.promql}" for q in queries)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record(address: str, queries: Sequence[UserQuery], answers: Sequence[ParseAnswer],
           at: str) -> QueryCheck | None:
    """What status keeps of the answers, or None when any query got no verdict (the spec
    stays valid and the queries are asked about again on the next pass)."""
    if any(a.unavailable for a in answers):
        return None
    errors = [str(SpecError(q.field, f"check {q.check}: Prometheus at {address} cannot parse "
                            f"it (placeholders filled in): {a.error.removeprefix(_PREFIX)}; "
                            "fix the PromQL"))
              for q, a in zip(queries, answers, strict=True) if a.error]
    return QueryCheck(digest=digest(address, queries), errors=errors or None, checked_at=at)


def unanswered(answers: Sequence[ParseAnswer]) -> str:
    """Why the queries are still open ("" when every query got a verdict)."""
    return next((a.unavailable for a in answers if a.unavailable), "")


def known(check: QueryCheck | None, address: str, queries: Sequence[UserQuery]) -> bool:
    """True when `check` answers exactly these queries at this address."""
    return check is not None and check.digest == digest(address, queries)


def parse_errors(check: QueryCheck | None) -> list[SpecError]:
    """The recorded parse errors as spec errors (each was written as "field: message")."""
    out = []
    for error in (check.errors or []) if check is not None else []:
        field, _, message = error.partition(": ")
        out.append(SpecError(field, message))
    return out
