"""Watch caches: the operator's reads served from memory, kept current by list+watch.

One `Store` per kind holds plain dicts indexed by namespace and by owner label, so a pass
looks up its own objects in O(own objects), never O(namespace). `Caches` fills every store
with a chunked LIST and then a WATCH from the list's resourceVersion (with bookmarks, so a
reconnect resumes where it was); 410 GoneError or a broken stream relists. Children are watched
through the managed-by label only: the operator sees what it made, not the whole cluster.

Nothing here is state that must survive a restart: a new process relists everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.core.resource import NamespacedResource, api_info

from modelship.adapters import metrics

log = logging.getLogger(__name__)

Key = tuple[str, str]  # namespace, name
# Called for every watch event (and every change a relist finds): kind, event type, object.
OnChange = Callable[[str, str, Mapping[str, Any]], None]

# A watch ends on the server's side after this long (jittered, so watches of many kinds do
# not reconnect together); bookmarks keep its resourceVersion fresh meanwhile.
WATCH_SECONDS = (240, 300)
LIST_PAGE = 500
RETRY_SECONDS = (0.5, 30.0)
# How often a kind whose API is not served (GRPCRoute without Gateway API) is looked for.
ABSENT_RECHECK_SECONDS = 60.0


@dataclass(frozen=True)
class Kind:
    res: type[NamespacedResource]
    # Label selector of the watch; None watches every object of the kind.
    selector: str | None = None
    # Labels whose values index the store (the owner's name on children).
    index: tuple[str, ...] = ()
    # An API that may be absent from the cluster: its store stays unsynced, never fatal.
    optional: bool = False
    # Top-level fields nobody reads, left out of the store (as managedFields always are):
    # what a store holds is most of the operator's memory.
    drop: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return str(api_info(self.res).resource.api_version)

    @property
    def name(self) -> str:
        return str(api_info(self.res).resource.kind)


class GoneError(Exception):
    """The watch's resourceVersion is too old (410): relist."""


class AbsentError(Exception):
    """The API server does not serve this kind (404 on the collection)."""


def _rv(obj: Mapping[str, Any]) -> int | None:
    value = str(obj.get("metadata", {}).get("resourceVersion", ""))
    return int(value) if value.isdigit() else None


class Store:
    """The objects of one kind, by (namespace, name), with secondary indexes."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self._objects: dict[Key, dict[str, Any]] = {}
        self._by_namespace: defaultdict[str, set[str]] = defaultdict(set)
        self._by_label: defaultdict[tuple[str, str, str], set[str]] = defaultdict(set)
        self._synced: set[str | None] = set()  # scopes (a namespace, or None: all) listed

    def covers(self, namespace: str) -> bool:
        """True when the store answers for `namespace`: it was listed and is watched."""
        return None in self._synced or namespace in self._synced

    def listed(self, scope: str | None) -> bool:
        return scope in self._synced

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get((namespace, name))

    def select(self, namespace: str, labels: Mapping[str, str] | None = None
             ) -> list[dict[str, Any]]:
        wanted = dict(labels or {})
        indexed = next((k for k in self.kind.index if k in wanted), None)
        names = (self._by_label.get((namespace, indexed, wanted[indexed]), set())
                 if indexed is not None else self._by_namespace.get(namespace, set()))
        out = []
        for name in sorted(names):
            obj = self._objects[(namespace, name)]
            have = obj["metadata"].get("labels") or {}
            if all(have.get(k) == v for k, v in wanted.items()):
                out.append(obj)
        return out

    def put(self, obj: Mapping[str, Any]) -> bool:
        """Store `obj` unless the store already holds a newer version; True if stored.

        resourceVersions are compared as numbers, which every etcd-backed API server
        gives: an older watch event never overwrites what a write of ours returned."""
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        old = self._objects.get(key)
        if old is not None:
            new_rv, old_rv = _rv(obj), _rv(old)
            if new_rv is not None and old_rv is not None and new_rv < old_rv:
                return False
            self._unindex(key, old)
        slim = {k: v for k, v in obj.items() if k not in self.kind.drop}
        # managedFields are the largest part of most objects and nothing here reads them.
        slim["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
        self._objects[key] = slim
        self._by_namespace[key[0]].add(key[1])
        for label in self.kind.index:
            value = (meta.get("labels") or {}).get(label)
            if value is not None:
                self._by_label[(key[0], label, value)].add(key[1])
        return True

    def remove(self, namespace: str, name: str) -> dict[str, Any] | None:
        key = (namespace, name)
        old = self._objects.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: Key, obj: Mapping[str, Any]) -> None:
        ns, name = key
        self._by_namespace[ns].discard(name)
        if not self._by_namespace[ns]:
            del self._by_namespace[ns]
        for label in self.kind.index:
            value = (obj["metadata"].get("labels") or {}).get(label)
            index_key = (ns, label, value or "")
            if value is not None and index_key in self._by_label:
                self._by_label[index_key].discard(name)
                if not self._by_label[index_key]:
                    del self._by_label[index_key]

    def replace(self, scope: str | None, objects: Iterable[Mapping[str, Any]]
                ) -> list[tuple[str, Mapping[str, Any]]]:
        """Make the scope hold exactly `objects` (a fresh list); returns what changed."""
        changed: list[tuple[str, Mapping[str, Any]]] = []
        seen: set[Key] = set()
        for obj in objects:
            meta = obj["metadata"]
            key = (meta["namespace"], meta["name"])
            seen.add(key)
            old = self._objects.get(key)
            if (old is None or _rv(old) != _rv(obj)) and self.put(obj):
                changed.append(("ADDED" if old is None else "MODIFIED", obj))
        stale = [k for k in self._objects if k not in seen and (scope is None or k[0] == scope)]
        for ns, name in stale:
            old = self.remove(ns, name)
            if old is not None:
                changed.append(("DELETED", old))
        self._synced.add(scope)
        return changed


class Caches:
    """The stores of every kind the operator reads, and the tasks that keep them current."""

    def __init__(self, client: AsyncClient, kinds: Sequence[Kind],
                 namespaces: Sequence[str] = (), on_change: OnChange | None = None) -> None:
        # lightkube's HTTP client: the server, credentials and TLS of the kubeconfig.
        self._client = client
        self._http: httpx.AsyncClient = client._client._client
        self.stores = {(k.api_version, k.name): Store(k) for k in kinds}
        self._scopes: tuple[str | None, ...] = tuple(namespaces) or (None,)
        self._on_change = on_change
        self._tasks: list[asyncio.Task[None]] = []
        self._absent: set[str] = set()

    def store(self, api_version: str, kind: str, namespace: str) -> Store | None:
        """The store that answers for `kind` in `namespace`, if it has synced."""
        store = self.stores.get((api_version, kind))
        return store if store is not None and store.covers(namespace) else None

    async def start(self, sync_seconds: float) -> bool:
        """Start every list+watch; wait (bounded) until each served kind has synced."""
        for store in self.stores.values():
            for scope in self._scopes:
                self._tasks.append(asyncio.create_task(
                    self._run(store, scope), name=f"cache {store.kind.name} {scope or '*'}"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + sync_seconds
        while loop.time() < deadline:
            if all(s.kind.name in self._absent or all(s.listed(scope) for scope in self._scopes)
                   for s in self.stores.values()):
                return True
            await asyncio.sleep(0.05)
        return False

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._client.close()

    def _url(self, kind: Kind, scope: str | None) -> str:
        info = api_info(kind.res)
        group, version = info.resource.group, info.resource.version
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        return f"{base}/namespaces/{scope}/{info.plural}" if scope else f"{base}/{info.plural}"

    async def _run(self, store: Store, scope: str | None) -> None:
        kind = store.kind
        failures = 0
        while True:
            try:
                rv = await self._list(store, scope)
                self._absent.discard(kind.name)
                failures = 0
                while True:
                    rv = await self._watch(store, scope, rv)
            except GoneError:
                log.info("cache %s %s: resourceVersion expired, relisting", kind.name,
                         scope or "*")
                continue
            except AbsentError:
                if kind.name not in self._absent:
                    log.warning("cache %s: not served by this cluster; looking again every "
                                "%.0fs", kind.name, ABSENT_RECHECK_SECONDS)
                self._absent.add(kind.name)
                await asyncio.sleep(ABSENT_RECHECK_SECONDS)
            except (httpx.HTTPError, OSError, ValueError, RuntimeError) as err:
                failures += 1
                delay = min(RETRY_SECONDS[1], RETRY_SECONDS[0] * 2 ** min(failures, 10))
                log.warning("cache %s %s: %s; relisting in %.1fs", kind.name, scope or "*",
                            err or type(err).__name__, delay)
                await asyncio.sleep(delay)

    def _params(self, kind: Kind) -> dict[str, str]:
        return {"labelSelector": kind.selector} if kind.selector else {}

    async def _list(self, store: Store, scope: str | None) -> str:
        kind = store.kind
        items: list[dict[str, Any]] = []
        params = {**self._params(kind), "limit": str(LIST_PAGE)}
        while True:
            resp = await self._http.get(self._url(kind, scope), params=params)
            if resp.status_code == 404 and kind.optional:
                raise AbsentError(kind.name)
            if resp.status_code == 410:
                raise GoneError()
            resp.raise_for_status()
            body = resp.json()
            for item in body.get("items") or []:
                # Lists leave out each item's apiVersion and kind; readers expect them.
                item.setdefault("apiVersion", kind.api_version)
                item.setdefault("kind", kind.name)
                items.append(item)
            cont = body["metadata"].get("continue")
            if not cont:
                rv = str(body["metadata"]["resourceVersion"])
                break
            params["continue"] = cont
        for event, obj in store.replace(scope, items):
            self._notify(kind, event, obj)
        return rv

    async def _watch(self, store: Store, scope: str | None, rv: str) -> str:
        """Follow one watch stream to its end; returns the resourceVersion reached."""
        kind = store.kind
        seconds = random.randint(*WATCH_SECONDS)
        params = {**self._params(kind), "watch": "true", "allowWatchBookmarks": "true",
                  "resourceVersion": rv, "timeoutSeconds": str(seconds)}
        timeout = httpx.Timeout(10.0, read=seconds + 30.0)
        async with self._http.stream("GET", self._url(kind, scope), params=params,
                                     timeout=timeout) as resp:
            if resp.status_code == 410:
                raise GoneError()
            if resp.status_code == 404 and kind.optional:
                raise AbsentError(kind.name)
            resp.raise_for_status()
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                type_, obj = event["type"], event["object"]
                if type_ == "ERROR":
                    if obj.get("code") == 410:
                        raise GoneError()
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                rv = str(obj["metadata"]["resourceVersion"])
                if type_ == "BOOKMARK":
                    continue
                obj.setdefault("apiVersion", kind.api_version)
                obj.setdefault("kind", kind.name)
                meta = obj["metadata"]
                if type_ == "DELETED":
                    store.remove(meta["namespace"], meta["name"])
                elif not store.put(obj):
                    continue  # older than what a write of ours already stored
                self._notify(kind, type_, obj)
        return rv

    def _notify(self, kind: Kind, event: str, obj: Mapping[str, Any]) -> None:
        metrics.CACHE_EVENTS.labels(kind=kind.name, type=event).inc()
        if self._on_change is None:
            return
        try:
            self._on_change(kind.name, event, obj)
        except Exception:
            log.exception("cache %s: change handler failed", kind.name)
