"""What the gateway did with the GRPCRoute, reduced to plain values for the pure core.

A Gateway API implementation reports, per parent Gateway, whether it took the route
(`Accepted`) and found every backend (`ResolvedRefs`), each condition stamped with the route
generation it judged. Only a verdict on the route's current generation counts: anything
older says nothing about the route the operator last wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modelship.core.releases import Release, parse_label

RouteState = Literal["Accepted", "Refused", "Pending"]
REQUIRED = ("Accepted", "ResolvedRefs")


@dataclass(frozen=True)
class RouteObservation:
    """The GRPCRoute as last read. `weights`: release -> weight of its backendRefs;
    `mirrors`: release -> percent of its RequestMirror filters; `state`: Accepted when every
    parent accepted the current generation with all refs resolved, Refused when a parent
    rejected it (`reason`, `message` are the gateway's words), else Pending (no verdict on
    this generation yet; generation 0: there is no route). `preview`: the release that rules
    with matches (the preview route, `x-modelship-preview: true`) send to; None without one."""

    generation: int
    state: RouteState
    weights: Mapping[Release, int] = field(default_factory=dict)
    mirrors: Mapping[Release, int] = field(default_factory=dict)
    reason: str = ""
    message: str = ""
    preview: Release | None = None

    @property
    def accepted(self) -> bool:
        return self.state == "Accepted"

    def sends_to(self, release: Release) -> bool:
        """Whether the route, as written, can send any request to `release`."""
        return (self.weights.get(release, 0) > 0 or self.mirrors.get(release, 0) > 0
                or self.preview == release)


MISSING = RouteObservation(generation=0, state="Pending")


def _version(backend: str, name: str) -> Release | None:
    prefix = f"{name}-v"
    return parse_label(backend[len(prefix):]) if backend.startswith(prefix) else None


def _same_parent(ref: Mapping[str, Any], reported: Mapping[str, Any], namespace: str) -> bool:
    return (ref.get("name") == reported.get("name")
            and (ref.get("namespace") or namespace) == (reported.get("namespace") or namespace)
            and ref.get("sectionName") == reported.get("sectionName"))


def observe_route(route: Mapping[str, Any] | None, name: str) -> RouteObservation:
    """Reduce the GRPCRoute `name` (None: not there) to what the rollout needs."""
    if route is None:
        return MISSING
    meta = route.get("metadata") or {}
    spec = route.get("spec") or {}
    namespace = meta.get("namespace", "")
    generation = int(meta.get("generation", 0))
    weights: dict[Release, int] = {}
    mirrors: dict[Release, int] = {}
    preview: Release | None = None
    for rule in spec.get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            version = _version(str(ref.get("name", "")), name)
            if version is not None and rule.get("matches"):
                preview = version  # a header-matched rule: the preview route
            elif version is not None:
                weights[version] = weights.get(version, 0) + int(ref.get("weight", 1))
        for f in rule.get("filters") or []:
            mirror = f.get("requestMirror") if f.get("type") == "RequestMirror" else None
            version = _version(str((mirror or {}).get("backendRef", {}).get("name", "")), name)
            if mirror is not None and version is not None:
                mirrors[version] = int(mirror.get("percent", 100))
    parents = (route.get("status") or {}).get("parents") or []
    accepted_all = bool(spec.get("parentRefs"))
    for ref in spec.get("parentRefs") or []:
        verdicts = [_current(p, generation) for p in parents
                    if _same_parent(ref, p.get("parentRef") or {}, namespace)]
        refusal = next((v for v in verdicts if isinstance(v, tuple)), None)
        if refusal is not None:
            return RouteObservation(generation, "Refused", weights, mirrors, *refusal,
                                    preview=preview)
        accepted_all = accepted_all and any(v is True for v in verdicts)
    return RouteObservation(generation, "Accepted" if accepted_all else "Pending", weights,
                            mirrors, preview=preview)


def _current(parent: Mapping[str, Any], generation: int) -> bool | tuple[str, str] | None:
    """True: accepted with refs resolved at `generation`; (reason, message): refused at
    `generation`; None: no verdict on this generation yet."""
    conditions = {c.get("type"): c for c in parent.get("conditions") or []
                  if int(c.get("observedGeneration", -1)) == generation}
    for type_ in REQUIRED:
        cond = conditions.get(type_)
        if cond is not None and cond.get("status") == "False":
            return (str(cond.get("reason") or type_),
                    f"{type_}=False: {cond.get('message') or ''}".rstrip(": "))
    return all((conditions.get(t) or {}).get("status") == "True" for t in REQUIRED) or None
