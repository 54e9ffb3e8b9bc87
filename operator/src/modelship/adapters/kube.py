"""The Kubernetes API, spoken in plain dicts: get, list, apply (server-side), delete, status.

Writes are skipped when the cluster already holds what would be written, so a converged
reconcile makes no API writes at all; every write that happens is counted. With watch caches
attached (the operator's process), reads of the kinds they hold come from memory once
synced and every write's response goes into them, so a converged pass sends no request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx2 as httpx
from lightkube import ApiError, AsyncClient
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Event, Pod, Service
from lightkube.types import CascadeType, PatchType

from modelship import constants
from modelship.adapters import metrics
from modelship.adapters.cache import Caches, Kind, Store
from modelship.core.quantities import same_quantity

_KINDS: dict[tuple[str, str], type[NamespacedResource]] = {
    ("apps/v1", "Deployment"): Deployment,
    ("v1", "Service"): Service,
    ("v1", "Pod"): Pod,
    ("batch/v1", "Job"): Job,
    ("v1", "Event"): Event,
}


def _generic(api_version: str, kind: str, plural: str) -> type[NamespacedResource]:
    group, version = api_version.split("/")
    res = create_namespaced_resource(group, version, kind, plural)
    _KINDS[(api_version, kind)] = res
    return res


ModelDeploymentRes = _generic(
    constants.API_VERSION, constants.MODEL_DEPLOYMENT_KIND, constants.MODEL_DEPLOYMENT_PLURAL)
TrainingRunRes = _generic(
    constants.API_VERSION, constants.TRAINING_RUN_KIND, constants.TRAINING_RUN_PLURAL)
GRPCRouteRes = _generic("gateway.networking.k8s.io/v1", "GRPCRoute", "grpcroutes")


def resource_for(api_version: str, kind: str) -> type[NamespacedResource]:
    try:
        return _KINDS[(api_version, kind)]
    except KeyError:
        raise KeyError(f"modelship does not manage {kind} {api_version}") from None


def _plain(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    out: dict[str, Any] = obj.to_dict()
    return out


# Maps whose values are resource quantities (a container's requests and limits).
QUANTITY_MAPS = frozenset({"requests", "limits"})


def contains(actual: Any, desired: Any, quantities: bool = False) -> bool:
    """True when every field of `desired` is in `actual` with the same value.

    Fields the API server adds (defaults, status, managedFields) are ignored, so a freshly
    rendered manifest `contains`-matches the object that was applied from it. Values in
    `requests` and `limits` are compared as quantities: the server returns them in
    canonical form (a GPU limit rendered as 1 reads back as "1", "1000m" as "1")."""
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(
            k in actual and contains(actual[k], v, quantities=quantities or k in QUANTITY_MAPS)
            for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (isinstance(actual, list) and len(actual) == len(desired)
                and all(contains(a, d) for a, d in zip(actual, desired, strict=True)))
    if quantities and same_quantity(actual, desired):
        return True
    return bool(actual == desired)


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns `old` into `new` (removed keys become null)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif before != value:
            patch[key] = value
    return patch


def decision_inputs(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a pass decides from: everything of the resource but Kopf's bookkeeping (its
    finalizer and annotations), which Kopf writes on its own schedule."""
    meta = body.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if not k.startswith(constants.KOPF_ANNOTATION_PREFIX)}
    return (meta.get("generation"), meta.get("labels"), annotations,
            meta.get("deletionTimestamp"), body.get("spec"), body.get("status"))


class StatusConflictError(Exception):
    """The resource changed since the pass read it: its status write was refused (409)."""


async def _count_request(request: httpx.Request) -> None:
    metrics.KUBE_REQUESTS.labels(method=request.method,
                                 watch=str(request.url.params.get("watch") == "true")).inc()


def counted(client: AsyncClient) -> AsyncClient:
    """`client`, every request it sends counted in modelship_kube_requests_total."""
    http: httpx.AsyncClient = client._client._client
    hooks = http.event_hooks
    hooks["request"] = [*hooks.get("request", []), _count_request]
    http.event_hooks = hooks
    return client


class Kube:
    """A thin async facade over lightkube for the operator and the CLI."""

    def __init__(self, client: AsyncClient | None = None) -> None:
        self.client = counted(client or AsyncClient(field_manager=constants.FIELD_MANAGER))
        self.caches: Caches | None = None

    async def close(self) -> None:
        await self.client.close()

    def _store(self, api_version: str, kind: str, namespace: str) -> Store | None:
        return self.caches.store(api_version, kind, namespace) if self.caches else None

    def _remember(self, obj: dict[str, Any]) -> None:
        """Read-your-writes: what a write returned is what the next pass reads."""
        if self.caches is not None:
            store = self.caches.stores.get((obj.get("apiVersion", ""), obj.get("kind", "")))
            if store is not None:
                store.put(obj)

    async def get(self, api_version: str, kind: str, name: str,
                  namespace: str) -> dict[str, Any] | None:
        """The object, or None; from the watch cache when it holds the kind (callers must
        not mutate what they get)."""
        store = self._store(api_version, kind, namespace)
        if store is not None:
            return store.get(namespace, name)
        try:
            obj = await self.client.get(resource_for(api_version, kind), name,
                                        namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        return _plain(obj)

    async def list(self, api_version: str, kind: str, namespace: str,
                   labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        store = self._store(api_version, kind, namespace)
        if store is not None:
            return store.select(namespace, labels)
        res = resource_for(api_version, kind)
        return [_plain(o) async for o in self.client.list(
            res, namespace=namespace, labels=dict(labels) if labels else None)]

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply `obj` unless the cluster already matches it."""
        meta = obj["metadata"]
        current = await self.get(obj["apiVersion"], obj["kind"], meta["name"],
                                 meta["namespace"])
        if current is not None and contains(current, obj):
            return current
        metrics.KUBE_WRITES.labels(verb="apply", kind=obj["kind"]).inc()
        res = resource_for(obj["apiVersion"], obj["kind"])
        applied = await self.client.patch(
            res, meta["name"], obj, namespace=meta["namespace"],
            patch_type=PatchType.APPLY, field_manager=constants.FIELD_MANAGER, force=True)
        out = _plain(applied)
        self._remember(out)
        return out

    async def create(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create `obj`; when an object of its name exists already (409), that one, so a
        create repeated after a restart or a refused status write makes one object. Also
        whether this call created it."""
        meta = obj["metadata"]
        res = resource_for(obj["apiVersion"], obj["kind"])
        metrics.KUBE_WRITES.labels(verb="create", kind=obj["kind"]).inc()
        try:
            created = await self.client.create(res.from_dict(obj))  # type: ignore[attr-defined]
        except ApiError as err:
            if err.status.code != 409:
                raise
            existing = _plain(await self.client.get(res, meta["name"],
                                                    namespace=meta["namespace"]))
            self._remember(existing)
            return existing, False
        out = _plain(created)
        self._remember(out)
        return out, True

    async def delete(self, api_version: str, kind: str, name: str, namespace: str,
                     foreground: bool = False) -> bool:
        """Delete if present; False when absent. Children go too: in the background, or with
        `foreground` before the object itself (it stays, being deleted, until they are gone)."""
        metrics.KUBE_WRITES.labels(verb="delete", kind=kind).inc()
        store = self._store(api_version, kind, namespace)
        if store is not None:
            store.remove(namespace, name)
        try:
            await self.client.delete(resource_for(api_version, kind), name,
                                     namespace=namespace,
                                     cascade=(CascadeType.FOREGROUND if foreground
                                              else CascadeType.BACKGROUND))
        except ApiError as err:
            if err.status.code == 404:
                return False
            raise
        return True

    async def patch_status(self, api_version: str, kind: str, name: str, namespace: str,
                           old: Mapping[str, Any], new: Mapping[str, Any],
                           basis: Mapping[str, Any]) -> bool:
        """Write the status delta as a merge patch; nothing when there is none.

        `basis` is the resource as the pass read it. The patch carries its resourceVersion,
        so the API server refuses it if anyone wrote the resource since. When the only
        writes since were Kopf's bookkeeping (finalizers, its annotations), the decision's
        inputs are unchanged and the patch is sent again on the fresh resourceVersion;
        otherwise StatusConflictError: a stale pass never overwrites a newer status, and the
        next pass reads again and decides."""
        patch = merge_patch(old, new)
        if not patch:
            return False
        res = resource_for(api_version, kind)
        version = basis["metadata"]["resourceVersion"]
        for _ in range(3):
            metrics.KUBE_WRITES.labels(verb="status", kind=kind).inc()
            try:
                patched = await self.client.patch(
                    res.Status, name,  # type: ignore[attr-defined]
                    {"metadata": {"resourceVersion": version}, "status": patch},
                    namespace=namespace, patch_type=PatchType.MERGE)
            except ApiError as err:
                if err.status.code != 409:
                    raise
                fresh = _plain(await self.client.get(res, name, namespace=namespace))
                if decision_inputs(fresh) != decision_inputs(basis):
                    raise StatusConflictError(
                        f"{kind} {namespace}/{name} changed since it was read "
                        f"(resourceVersion {version})") from err
                version = fresh["metadata"]["resourceVersion"]
                continue
            self._remember(_plain(patched))
            return True
        raise StatusConflictError(f"{kind} {namespace}/{name}: status write kept conflicting")

    async def event(self, involved: Mapping[str, Any], type_: str, reason: str,
                    message: str) -> None:
        """Record a Kubernetes Event on `involved` (kubectl describe shows it)."""
        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        # Named as the kubelet and controllers name theirs, `<object>.<nanoseconds in hex>`:
        # a list is sorted by name, so events of the same second still read in order.
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}",
                         "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved["apiVersion"], "kind": involved["kind"],
                "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": constants.FIELD_MANAGER},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": constants.FIELD_MANAGER,
        }
        metrics.KUBE_WRITES.labels(verb="event", kind="Event").inc()
        await self.client.create(Event.from_dict(event))  # type: ignore[call-overload]


# What the operator reads, watched: its resources whole, its children through the label
# every child carries, indexed by the owner's name.
_CHILDREN = f"{constants.LABEL_MANAGED_BY}={constants.MANAGED_BY}"
_OWNERS = (constants.LABEL_DEPLOYMENT, constants.LABEL_TRAINING_RUN)
WATCHED = (
    Kind(ModelDeploymentRes),
    Kind(TrainingRunRes),
    Kind(Deployment, _CHILDREN, _OWNERS),
    Kind(Service, _CHILDREN, _OWNERS),
    Kind(Pod, _CHILDREN, _OWNERS),
    Kind(Job, _CHILDREN, _OWNERS),
    Kind(GRPCRouteRes, _CHILDREN, _OWNERS, optional=True),
)
