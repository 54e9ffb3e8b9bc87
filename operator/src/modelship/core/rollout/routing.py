"""What the route allows: when a stage may move on, how the replicas provider splits pods,
and when a version that lost its traffic may be removed.

- A stage advances (and a candidate is promoted) only once the gateway accepted the route of
  the current stage, with every backend resolved, for the route's current generation. A
  refused route holds the rollout and is reported (condition RouteAccepted, a Warning).
- The replicas provider approximates a weight by pod counts behind the one Service `<name>`,
  which then selects every Triton pod of the ModelDeployment: a weighted step (0 < weight <
  100) starts only once no third version runs, or it would take a share too.
- A version taken off the route drains: it is removed once the route without it is confirmed
  (the gateway's verdict on the new generation; the replicas provider's Service update counts
  as confirmed once written) and `abortScaleDownDelay` has passed since.
"""

from __future__ import annotations

from modelship.core.conditions import remove_condition, set_condition
from modelship.core.durations import parse_duration
from modelship.core.releases import Release
from modelship.core.rollout.clock import after, elapsed
from modelship.core.rollout.stages import Stage
from modelship.core.rollout.tick import Tick, release_of
from modelship_api.common import Condition
from modelship_api.modeldeployment import (
    DrainingVersion,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Rollout,
    WarmVersion,
)

ROUTE_CONDITION = "RouteAccepted"
# How often to look at the route while waiting for the gateway's verdict (it takes well under
# a second when the gateway is healthy), and while the gateway refuses it.
ROUTE_POLL_S = 1.0
REFUSED_POLL_S = 5.0


def candidate_replicas(stable_replicas: int, weight: int) -> int:
    """Pods of the candidate so that candidate / (stable + candidate) is closest to weight%."""
    if weight <= 0 or weight >= 100:
        return stable_replicas  # warm beside stable (preview, analysis) or serving alone
    return max(1, round(stable_replicas * weight / (100 - weight)))


def shares_service(spec: ModelDeploymentSpec, weight: int) -> bool:
    """The replicas provider's Service selects every version's pods at this weight."""
    return spec.traffic.provider == "replicas" and 0 < weight < 100


def plan_shares_service(spec: ModelDeploymentSpec, stages: list[Stage]) -> bool:
    return any(shares_service(spec, s.weight) for s in stages)


def warm_release(w: WarmVersion | DrainingVersion) -> Release:
    return Release(w.version, w.revision or 0)


def warm(status: ModelDeploymentStatus) -> list[Release]:
    return [warm_release(w) for w in status.warm_versions or []]


def third_versions(t: Tick) -> list[Release]:
    """Releases still observed (running or terminating) besides stable and candidate."""
    return sorted(r for r in t.obs.versions if r not in (t.stable, t.candidate))


def weight_blocker(t: Tick, weight: int) -> str:
    """Why the candidate cannot get `weight` now ('' when it can)."""
    if not shares_service(t.spec, weight):
        return ""
    others = third_versions(t)
    if not others:
        return ""
    listed = ", ".join(str(r) for r in others)
    return (f"waiting for {listed} to be removed first: the replicas provider's "
            "Service cannot leave it out of a weighted step")


def _off_route(t: Tick, release: Release) -> bool:
    """The route, as the gateway last confirmed it, sends `release` nothing."""
    route = t.obs.route
    if route is None or route.generation == 0:  # the Service as written / no route at all
        return True
    return route.accepted and not route.sends_to(release)


def route_blocker(t: Tick) -> str:
    """Why the route of the current stage is not known to be in effect ('' when it is)."""
    route = t.obs.route
    st = t.status
    if route is None or st.stable_version is None:
        return ""
    if route.state == "Refused":
        return f"the gateway refused the GRPCRoute: {route.reason}: {route.message}"
    if route.state == "Pending":
        return _pending(route.generation)
    weights = st.weights
    stable, candidate = t.stable, t.candidate
    assert weights is not None and stable is not None
    expected = {stable: 100 - weights.candidate}
    mirrors = {}
    if candidate is not None:
        expected[candidate] = weights.candidate
        if weights.mirror:
            mirrors[candidate] = weights.mirror
    if (dict(route.weights) != expected or dict(route.mirrors) != mirrors
            or route.preview != candidate):
        return "waiting for the gateway to take the route of this stage"
    return ""


def _pending(generation: int) -> str:
    if generation == 0:
        return "waiting for the GRPCRoute to be written"
    return f"waiting for the gateway to accept generation {generation} of the GRPCRoute"


def update_route_condition(t: Tick) -> None:
    """RouteAccepted from the gateway's verdict; a Warning when it turns to a refusal. A
    pending verdict (right after a change) leaves the last one standing."""
    st = t.status
    route = t.obs.route
    if route is None:
        st.conditions = remove_condition(st.conditions, ROUTE_CONDITION) or None
        return
    previous = next((c for c in st.conditions or [] if c.type == ROUTE_CONDITION), None)
    if route.state == "Accepted":
        status, reason = "True", "Accepted"
        message = f"the gateway accepted generation {route.generation} of the GRPCRoute"
    elif route.state == "Refused":
        status, reason, message = "False", route.reason, route.message
    elif previous is None:
        status, reason, message = "Unknown", "Pending", _pending(route.generation)
    else:
        return
    if status == "False" and (previous is None or previous.status != "False"):
        t.emit("Warning", "RouteRefused", f"the gateway refused the GRPCRoute (generation "
               f"{route.generation}): {reason}: {message}; the rollout holds until it is "
               "accepted")
    elif status == "True" and previous is not None and previous.status == "False":
        t.emit("Normal", "RouteAccepted", message)
    st.conditions = set_condition(st.conditions, Condition(
        type=ROUTE_CONDITION, status=status, reason=reason, message=message,
        observed_generation=t.obs.generation), t.at)


def drain_delay(spec: ModelDeploymentSpec) -> float:
    return parse_duration((spec.rollout or Rollout()).abort_scale_down_delay)


def update_drains(t: Tick, before: ModelDeploymentStatus) -> None:
    """Versions that served in `before` and no longer have a place drain; a drained version
    stays listed until its Deployment is gone."""
    st = t.status
    placed = {t.stable, t.candidate, *warm(st)}
    entries = [d for d in st.draining or [] if warm_release(d) not in placed
               and warm_release(d) in t.obs.versions]
    for release in (release_of(before.stable_version, before.stable_revision),
                    release_of(before.candidate_version, before.candidate_revision)):
        if (release is not None and release not in placed and release in t.obs.versions
                and all(warm_release(d) != release for d in entries)):
            entries.append(DrainingVersion(version=release.version,
                                           revision=release.revision or None, since=t.at))
    for entry in entries:
        if entry.route_confirmed_at is None and _off_route(t, warm_release(entry)):
            entry.route_confirmed_at = t.at
    st.draining = entries or None


def removable(t: Tick, release: Release) -> bool:
    """A release without a place may be deleted now."""
    observed = t.obs.versions.get(release)
    if observed is not None and observed.terminating:
        return False  # already being deleted
    entry = next((d for d in t.status.draining or [] if warm_release(d) == release), None)
    if entry is None:
        return _off_route(t, release)
    return (entry.route_confirmed_at is not None
            and elapsed(entry.route_confirmed_at, t.now) >= drain_delay(t.spec))


def route_delays(t: Tick) -> list[float]:
    """Seconds until the route or a drain could let something move on."""
    delays = []
    route = t.obs.route
    for entry in t.status.draining or []:
        if entry.route_confirmed_at is None:
            delays.append(ROUTE_POLL_S)
        else:
            due = after(entry.route_confirmed_at, drain_delay(t.spec))
            if due > t.now:
                delays.append((due - t.now).total_seconds())
    if t.waiting_for:
        refused = route is not None and route.state == "Refused"
        delays.append(REFUSED_POLL_S if refused else ROUTE_POLL_S)
    elif route is not None and not route.accepted:
        delays.append(REFUSED_POLL_S)  # nothing waits on it: keep RouteAccepted current
    return delays
