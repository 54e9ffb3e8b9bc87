"""A small simulated cluster that applies decisions the way the operator does, so tests can
drive the state machine tick by tick."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from modelship.core.analysis import CheckQuery, Measurement
from modelship.core.observations import VersionObservation
from modelship.core.releases import Release
from modelship.core.rollout import (
    Decision,
    EnsureVersion,
    Event,
    Observations,
    RemoveVersion,
    SetTraffic,
    due_queries,
    parse_command,
    step,
)
from modelship.core.route_status import RouteObservation
from modelship_api.modeldeployment import (
    Analysis,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    PrometheusEndpoint,
    Rollout,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
PROMETHEUS = PrometheusEndpoint(address="http://prometheus:9090")

Measure = Callable[[CheckQuery], Measurement]


def analysis(**kwargs: Any) -> Analysis:
    # Windows as long as the interval: consecutive runs judge requests of their own.
    return Analysis(prometheus=PROMETHEUS, **{"interval": "1s", "window": "1s", **kwargs})


def make_spec(rollout: Rollout | None = None, version: int | None = 2,
              replicas: int = 1, provider: str = "replicas") -> ModelDeploymentSpec:
    traffic: dict[str, Any] = {"provider": provider}
    if provider == "gateway":
        traffic["gateway"] = {"parentRefs": [{"name": "gw"}]}
    return ModelDeploymentSpec.model_validate({
        "model": {"name": "resnet", "version": version},
        "repository": {"hostPath": {"path": "/models"}},
        "runtime": {"replicas": replicas},
        "traffic": traffic,
        **({"rollout": rollout.to_api()} if rollout is not None else {}),
    })


def healthy(query: CheckQuery) -> Measurement:
    """Error ratio 0, latency equal to stable."""
    if query.check.builtin == "errorRatio":
        return Measurement(value=0.0)
    return Measurement(value=10.0, stable=10.0 if query.stable is not None else None)


def erroring(query: CheckQuery) -> Measurement:
    if query.check.builtin == "errorRatio":
        return Measurement(value=0.25)
    return healthy(query)


def slow(query: CheckQuery) -> Measurement:
    if query.check.builtin == "meanLatency":
        return Measurement(value=40.0, stable=10.0)
    return healthy(query)


def unreachable(query: CheckQuery) -> Measurement:
    return Measurement(error="connection refused")


def no_data(query: CheckQuery) -> Measurement:
    return Measurement(value=float("nan"), stable=10.0)


def with_sample(query: CheckQuery, measurement: Measurement, requests: float) -> Measurement:
    """The measurement with the sample sizes Prometheus would give for the queries asked."""
    return replace(
        measurement,
        requests=measurement.requests if query.candidate_requests is None
        or measurement.requests is not None else requests,
        stable_requests=measurement.stable_requests if query.stable_requests is None
        or measurement.stable_requests is not None else requests)


@dataclass
class Sim:
    """Applies actions to a set of running versions and a route, as the operator would.

    With provider gateway it also plays the gateway: a route written in one tick is seen
    accepted from the next one on while `accepting`; `refusal` (reason, message) makes it
    refuse every generation instead. Removed versions vanish at once.

    Releases (version, pod-template revision) are what runs; `template` is the pod template
    the spec describes (None: not tracked). A release is healthy when it, or its version,
    is in `healthy_versions`. `templates` records the template each release was ensured
    with, and fails the test if a release is ever asked to run another one."""

    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    now: datetime = T0
    desired: int | None = 2
    healthy_versions: set[int | Release] = field(default_factory=lambda: {1, 2, 3, 4})
    live: set[Release] = field(default_factory=set)
    template: str | None = None
    templates: dict[Release, str | None] = field(default_factory=dict)
    route: SetTraffic | None = None
    measure: Measure = healthy
    mirroring: bool = True
    generation: int = 1
    decisions: list[Decision] = field(default_factory=list)
    queried: int = 0
    requests: float = 100.0  # each version's requests in every window
    replicas: dict[int | Release, int] = field(default_factory=dict)  # as last asked (key)
    route_generation: int = 0
    accepted_generation: int = 0
    accepting: bool = True
    refusal: tuple[str, str] | None = None
    removal_ticks: int = 0  # ticks a removed version is still observed, terminating
    terminating: dict[Release, int] = field(default_factory=dict)  # release -> ticks left

    @property
    def running(self) -> set[int | Release]:
        """What runs, a revision 0 by its plain version number (see `key`)."""
        return {key(r) for r in self.live}

    def healthy(self, release: Release) -> bool:
        return release in self.healthy_versions or release.version in self.healthy_versions

    def route_observation(self) -> RouteObservation | None:
        if self.spec.traffic.provider != "gateway":
            return None
        if self.accepting:
            self.accepted_generation = self.route_generation
        gen, route = self.route_generation, self.route
        weights: dict[Release, int] = {}
        mirrors: dict[Release, int] = {}
        preview = route.candidate if route is not None else None  # the header rule
        if route is not None:
            weights[route.stable] = 100 - route.candidate_weight
            if route.candidate is not None:
                weights[route.candidate] = route.candidate_weight
                if route.mirror_percent:
                    mirrors[route.candidate] = route.mirror_percent
        if gen == 0:
            return RouteObservation(0, "Pending")
        if self.refusal is not None:
            return RouteObservation(gen, "Refused", weights, mirrors, *self.refusal,
                                    preview=preview)
        state = "Accepted" if self.accepted_generation >= gen else "Pending"
        return RouteObservation(gen, state, weights, mirrors, preview=preview)

    def observations(self, command: str | None = None) -> Observations:
        queries = due_queries(self.spec, self.status, "prod", self.now, deployment="md")
        measurements = ({q.name: with_sample(q, self.measure(q), self.requests)
                         for q in queries} if queries else None)
        self.queried += len(queries)
        versions = {
            r: VersionObservation(version=r.version, replicas=1,
                                  ready_replicas=1 if self.healthy(r) else 0,
                                  available=self.healthy(r),
                                  terminating=r in self.terminating, revision=r.revision)
            for r in sorted(self.live)
        }
        return Observations(desired_version=self.desired, versions=versions,
                            generation=self.generation, measurements=measurements,
                            command=parse_command(command) if command else None,
                            mirroring_supported=self.mirroring,
                            route=self.route_observation(), template=self.template)

    def tick(self, seconds: float = 0.0, command: str | None = None) -> Decision:
        self.now += timedelta(seconds=seconds)
        decision = step(self.spec, self.status, self.observations(command), self.now)
        self.apply(decision)
        return decision

    def apply(self, decision: Decision) -> None:
        for version, left in list(self.terminating.items()):
            if left <= 1:
                del self.terminating[version]
                self.live.discard(version)
            else:
                self.terminating[version] = left - 1
        for action in decision.actions:
            if isinstance(action, EnsureVersion):
                release = action.release
                if release in self.live and self.template is not None:
                    assert self.templates[release] == action.template, (
                        f"{release} runs template {self.templates[release]}, asked to run "
                        f"{action.template}")
                self.templates[release] = action.template
                self.live.add(release)
                self.replicas[key(release)] = action.replicas
            elif isinstance(action, SetTraffic):
                if action != self.route:
                    self.route_generation += 1
                self.route = action
            elif isinstance(action, RemoveVersion):
                if self.removal_ticks > 0:
                    self.terminating[action.release] = self.removal_ticks
                else:
                    self.live.discard(action.release)
        self.status = decision.status
        self.decisions.append(decision)

    def run(self, seconds: float, every: float = 1.0) -> Decision:
        """Tick every `every` seconds for `seconds`; returns the last decision."""
        decision = self.tick()
        elapsed = 0.0
        while elapsed < seconds:
            decision = self.tick(every)
            elapsed += every
        return decision

    def run_until(self, done: Callable[[Sim], bool], limit: float = 3600.0,
                  every: float = 1.0) -> Decision:
        decision = self.tick()
        elapsed = 0.0
        while not done(self):
            assert elapsed < limit, f"not done after {limit}s: {self.status.message}"
            decision = self.tick(every)
            elapsed += every
        return decision

    def events(self) -> list[Event]:
        return [a for d in self.decisions for a in d.actions if isinstance(a, Event)]

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events()]


def key(release: Release) -> int | Release:
    """A release as tests name it: revision 0 by its version number."""
    return release.version if release.revision == 0 else release


def phase(sim: Sim) -> str | None:
    """The phase now (a call, so that type checkers do not carry a narrowed value across
    ticks)."""
    return sim.status.phase


def serving(spec: ModelDeploymentSpec, version: int = 1, **kwargs: Any) -> Sim:
    """A Sim whose stable `version` already serves all traffic."""
    sim = Sim(spec=spec, desired=version, **kwargs)
    sim.tick()
    sim.tick()
    assert sim.status.phase == "Ready" and sim.status.stable_version == version
    sim.decisions.clear()
    return sim


def stored(status: ModelDeploymentStatus) -> ModelDeploymentStatus:
    """The status as the API server keeps it: JSON, whole floats turned into integers."""
    def shrink(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {k: shrink(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shrink(v) for v in value]
        return value
    return ModelDeploymentStatus.model_validate(
        shrink(json.loads(json.dumps(status.to_api()))))
