"""A request the Kubernetes API refused, as the resource reports it.

The condition carries the API server's own message: for a 403 it names the account, the
verb, the resource and the namespace, so a rule missing from the operator's RBAC shows on
the resource (`kubectl describe`) and not only in the operator's log.
"""

from __future__ import annotations

from modelship_api.common import Condition

# Present while passes fail on a refused request; a pass that completes removes it.
RECONCILE_ERROR = "ReconcileError"


def refused(code: int, reason: str, message: str, generation: int | None) -> Condition:
    reason = reason or f"HTTP{code}"
    text = f"the Kubernetes API refused a request ({code} {reason}): {message}"
    if code == 403:
        text += ("; grant this to the operator's service account (the chart's RBAC); the "
                 "operator retries on its own")
    return Condition(type=RECONCILE_ERROR, status="True", reason=reason, message=text,
                     observed_generation=generation)
