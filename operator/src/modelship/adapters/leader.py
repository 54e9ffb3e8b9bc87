"""Leader election on a Kubernetes Lease (coordination.k8s.io/v1); see docs/architecture.md.

`LeaseElector.wait_until_leader` stands by, reading the Lease every retry period and
serving the health endpoint, until it holds the Lease. `LeaseElector.leading` then renews it
in the background, and a watchdog thread (alive even when the event loop is stuck) ends the
process the moment the renew deadline passes or another holder shows up: a replica that
cannot prove it still leads stops acting at once, and Kubernetes restarts it as a standby.
The timing rules are pure functions in `modelship.core.leadership`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from secrets import token_hex
from typing import Any

import httpx2  # lightkube's HTTP client: its transport errors
from lightkube import ApiError, AsyncClient
from lightkube.resources.coordination_v1 import Lease

from modelship import constants
from modelship.adapters import metrics
from modelship.core.leadership import (
    LeaseRecord,
    LeaseTiming,
    Sighting,
    expires_in,
    held_spec,
    may_acquire,
    released_spec,
    renew_budget,
    sight,
)

log = logging.getLogger(__name__)

# The exit status of a leader that lost its Lease (Kubernetes restarts it as a standby).
LOST_LEASE_EXIT = 75
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _plain(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = obj.to_dict()
    return out


def default_identity() -> str:
    """The pod's name (HOSTNAME) and a random suffix: a restarted container is a new
    candidate, never mistaken for the process that held the Lease before it."""
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return f"{host}-{token_hex(3)}"


def default_namespace(watched: list[str]) -> str:
    """The pod's own namespace in a cluster, else the first watched one, else default."""
    with contextlib.suppress(OSError):
        with open(SERVICE_ACCOUNT_NAMESPACE) as f:  # noqa: PTH123 (a kernel-provided file)
            found = f.read().strip()
        if found:
            return found
    return watched[0] if watched else "default"


@dataclass(frozen=True)
class LeaseSettings:
    name: str
    namespace: str
    identity: str
    timing: LeaseTiming = field(default_factory=LeaseTiming)


class StandbyHealth:
    """The health endpoint while standing by (Kopf serves its own once this replica leads).

    200 while the standby read the Lease within its duration (it could take over); 503
    when it could not reach the API server for that long. Liveness and readiness probe the
    same URL: a standby is Ready because it is ready to take over, which lets a rolling
    update and the PodDisruptionBudget count it."""

    def __init__(self, url: str, elector: LeaseElector) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "0.0.0.0"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.elector = elector
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.host, self.port,
                                                 reuse_address=True)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            target = request.split(b" ", 2)[1].decode() if request.count(b" ") >= 2 else ""
            if urllib.parse.urlsplit(target).path != self.path:
                code, body = 404, {"error": f"not found; health is at {self.path}"}
            else:
                healthy, body = self.elector.report()
                code = 200 if healthy else 503
            data = json.dumps(body).encode()
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[code]
            writer.write(f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
                         .encode() + data)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class LeaseElector:
    def __init__(self, settings: LeaseSettings, client: AsyncClient | None = None) -> None:
        self.settings = settings
        self.timing = settings.timing
        self.client = client or AsyncClient(
            field_manager=constants.FIELD_MANAGER,
            timeout=httpx2.Timeout(settings.timing.renew_period_s * 2))
        self.sighting: Sighting | None = None
        self.read_at: float | None = None  # monotonic time of the last successful read
        self.record: LeaseRecord | None = None  # our own Lease, once written
        self.renewed_at = 0.0  # monotonic time the last successful renewal was sent
        self.leading_since: float | None = None
        self._lost: str | None = None
        self._stop_fence = threading.Event()

    @property
    def where(self) -> str:
        return f"Lease {self.settings.namespace}/{self.settings.name}"

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, what the health endpoint shows) while standing by."""
        now = time.monotonic()
        fresh = self.read_at is not None and now - self.read_at < self.timing.duration_s
        holder = self.sighting.record.holder if self.sighting is not None else ""
        return fresh, {"role": "standby", "identity": self.settings.identity,
                       "lease": self.where, "holder": holder,
                       "lastReadSecondsAgo": None if self.read_at is None
                       else round(now - self.read_at, 1)}

    async def _read(self) -> LeaseRecord | None:
        try:
            lease = await self.client.get(Lease, self.settings.name,
                                          namespace=self.settings.namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise
        return LeaseRecord.from_lease(_plain(lease))

    def _manifest(self, spec: dict[str, Any], version: str | None) -> Any:
        metadata: dict[str, Any] = {"name": self.settings.name,
                                    "namespace": self.settings.namespace}
        if version:
            metadata["resourceVersion"] = version
        return Lease.from_dict({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                "metadata": metadata, "spec": spec})

    async def _write(self, current: LeaseRecord | None, spec: dict[str, Any]) -> LeaseRecord:
        """Create the Lease, or replace `current` (409 Conflict when it changed since)."""
        if current is None:
            written = await self.client.create(self._manifest(spec, None))
        else:
            written = await self.client.replace(self._manifest(spec, current.version))
        return LeaseRecord.from_lease(_plain(written))

    async def _try_acquire(self) -> bool:
        now = time.monotonic()
        current = await self._read()
        self.read_at = now
        self.sighting = sight(self.sighting, current, now)
        if not may_acquire(self.sighting, self.settings.identity, now):
            return False
        sent = time.monotonic()
        try:
            self.record = await self._write(current, held_spec(
                current, self.settings.identity, self.timing, datetime.now(UTC)))
        except ApiError as err:
            if err.status.code == 409:  # another standby was faster, or the holder renewed
                return False
            raise
        self.renewed_at = sent
        return True

    async def wait_until_leader(self, health_url: str) -> bool:
        """Stand by until this replica holds the Lease (True), or SIGTERM/SIGINT (False)."""
        metrics.LEADER.set(0)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        health = StandbyHealth(health_url, self) if health_url else None
        if health is not None:
            await health.start()
        log.info("standing by as %s for %s (duration %ss, renew every %ss)",
                 self.settings.identity, self.where, self.timing.duration_s,
                 self.timing.renew_period_s)
        reported: str | None = None
        try:
            while not stop.is_set():
                try:
                    if await self._try_acquire():
                        self.leading_since = time.monotonic()
                        metrics.LEADER.set(1)
                        previous = self.sighting.record.holder if self.sighting else ""
                        log.info("leading as %s: acquired %s (previous holder: %s)",
                                 self.settings.identity, self.where, previous or "none")
                        return True
                    holder = self.sighting.record.holder if self.sighting else ""
                    if holder != reported:
                        reported = holder
                        assert self.sighting is not None
                        log.info("standing by: %s is held by %s (expires in %.1fs unless "
                                 "renewed)", self.where, holder,
                                 expires_in(self.sighting, time.monotonic()))
                except (ApiError, httpx2.HTTPError) as err:
                    log.warning("standing by: could not read or write %s: %s", self.where,
                                err)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.timing.retry_period_s)
            return False
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if health is not None:
                await health.stop()

    def _fence(self) -> None:
        """Watchdog thread: end the process the moment this replica may no longer lead."""
        while not self._stop_fence.wait(0.1):
            budget = renew_budget(self.renewed_at, time.monotonic(), self.timing)
            if self._lost is None and budget > 0:
                continue
            reason = self._lost or (f"could not renew {self.where} for "
                                    f"{self.timing.renew_deadline_s:g}s")
            log.error("lost leadership (%s); exiting so that this replica restarts as a "
                      "standby: a replica that cannot prove it leads must not act", reason)
            for handler in logging.getLogger().handlers + log.handlers:
                with contextlib.suppress(Exception):
                    handler.flush()
            os._exit(LOST_LEASE_EXIT)

    async def _renew_once(self) -> None:
        assert self.record is not None
        sent = time.monotonic()
        spec = held_spec(self.record, self.settings.identity, self.timing, datetime.now(UTC))
        try:
            self.record = await self._write(self.record, spec)
        except ApiError as err:
            if err.status.code != 409:
                raise
            current = await self._read()  # someone else wrote it: still ours?
            if current is None or current.holder != self.settings.identity:
                self._lost = (f"{self.where} is now held by "
                              f"{current.holder if current else 'nobody (deleted)'}")
                return
            self.record = current
            return  # ours after all (a label edit, say): renew at the next try
        self.renewed_at = sent

    async def _renew(self) -> None:
        while self._lost is None:
            budget = renew_budget(self.renewed_at, time.monotonic(), self.timing)
            try:
                await asyncio.wait_for(self._renew_once(), timeout=max(0.1, budget))
                delay = self.timing.renew_period_s - (time.monotonic() - self.renewed_at)
            except (ApiError, httpx2.HTTPError, TimeoutError) as err:
                log.warning("could not renew %s (%.1fs left before this replica must stop): "
                            "%s", self.where, budget, err or type(err).__name__)
                delay = self.timing.renew_period_s / 4
            await asyncio.sleep(max(0.05, delay))

    @contextlib.asynccontextmanager
    async def leading(self) -> AsyncIterator[None]:
        """Keep the Lease while the body runs; release it when the body ends normally."""
        fence = threading.Thread(target=self._fence, name="lease-fence", daemon=True)
        fence.start()
        renewer = asyncio.create_task(self._renew(), name="lease-renewer")
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            self._stop_fence.set()  # nothing acts any more: releasing may take its time
            await self._release()

    async def _release(self) -> None:
        if self.record is None or self._lost is not None:
            return
        try:
            await asyncio.wait_for(self._write(self.record, released_spec(
                self.record, datetime.now(UTC))), timeout=self.timing.renew_period_s)
            log.info("released %s", self.where)
        except (ApiError, httpx2.HTTPError, TimeoutError) as err:
            log.warning("could not release %s (a standby takes over when it runs out): %s",
                        self.where, err)
        metrics.LEADER.set(0)
        self.record = None

    async def close(self) -> None:
        await self.client.close()
