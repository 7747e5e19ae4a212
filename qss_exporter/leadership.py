"""Runs each pulled source (the poller, each account's WebSocket) on exactly one replica: its lease holder.

With `state.backend: local` every source simply runs here (one replica). With `redis`, each source has
its own lease (lease.py): a replica starts the source when it acquires the lease and renews it every
`renew_seconds`. It stops the source at once when another replica holds the lease, and, when Redis
cannot be reached, before the lease could expire there: half a renewal interval before, so that the
source is stopped when a successor may start. It never keeps a source running without a lease, since
another replica may hold it by then (docs/deploy.md). `zoom_qss_leader{source}` is 1 where it runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from qss_exporter.lease import RedisLease
from qss_exporter.redis_client import REDIS_ERRORS, redis_call
from qss_exporter.store import CounterFamily, GaugeFamily, Store

__all__ = ["LEADER_CHANGES", "LeaderFamilies", "Leadership", "PulledSource"]

log = logging.getLogger(__name__)

# Why this replica started or stopped running a source: closed, every value present from start at 0.
LEADER_CHANGES = ("acquired", "lost", "expired", "released")
STOP_SECONDS = 5.0  # a source being stopped gets this long (the WebSocket's close handshake takes at most 2 s)
RELEASE_SECONDS = 1.0  # giving the lease back at shutdown; without it, a successor waits for the expiry


@dataclass(frozen=True, slots=True)
class PulledSource:
    """A source that pulls from Zoom and so must run on one replica only."""

    name: str  # its `source` label: `poller`, `websocket:<account>`
    run: Callable[[], Coroutine[Any, Any, None]]  # runs until cancelled
    # Told True before the source starts on this replica, and False once it has stopped (Redis backend only).
    leading: Callable[[bool], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class LeaderFamilies:
    leader: GaugeFamily
    changes: CounterFamily

    @classmethod
    def register(cls, store: Store) -> LeaderFamilies:
        return cls(
            store.gauge(
                "zoom_qss_leader",
                "1 while this replica runs the pulled source (it holds the source's lease), else 0.",
                ("source",),
            ),
            store.counter(
                "zoom_qss_leader_changes_total",
                "Times this replica started (acquired) or stopped (lost, expired, released) running a pulled source.",
                ("source", "change"),
            ),
        )


class Leadership:
    """Starts and stops the pulled sources; `leases` (a lease per source name) is None with the local backend."""

    def __init__(
        self,
        sources: Sequence[PulledSource],
        families: LeaderFamilies,
        leases: Callable[[str], RedisLease] | None = None,
        *,
        lease_seconds: float = 15.0,
        renew_seconds: float = 5.0,
    ) -> None:
        self.sources = tuple(sources)
        self._m = families
        self._leases = leases
        self._lease_seconds = lease_seconds
        self._renew_seconds = renew_seconds
        self._leading: set[str] = set()
        for source in self.sources:
            families.leader.set((source.name,), 0)
            for change in LEADER_CHANGES:
                families.changes.inc((source.name, change), 0)

    def leading(self, name: str) -> bool:
        """Whether the source called `name` runs on this replica now."""
        return name in self._leading

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for source in self.sources:
                if self._leases is None:
                    group.create_task(self._run_here(source))
                else:
                    group.create_task(self._contend(source, self._leases(source.name)))

    async def _run_here(self, source: PulledSource) -> None:
        self._started(source)
        try:
            await source.run()
        finally:
            self._stopped(source)

    # -------------------------------------------------------------------------------- with leases

    async def _contend(self, source: PulledSource, lease: RedisLease) -> None:
        """Try to acquire the lease every renew interval; run the source while holding it."""
        failing = False
        while True:
            started = time.monotonic()
            try:
                fence = await redis_call(lease.acquire(), self._renew_seconds / 2)
            except REDIS_ERRORS as error:
                if not failing:
                    log.warning("leader: cannot reach Redis to contend for %s (%s); trying again", source.name, error)
                failing, fence = True, None
            else:
                if failing:
                    log.info("leader: Redis answers again; contending for %s", source.name)
                failing = False
            if fence is None:
                await asyncio.sleep(self._renew_seconds)
                continue
            log.info("leader: this replica runs %s now (fence %d)", source.name, fence)
            await self._lead(source, lease, started)

    async def _lead(self, source: PulledSource, lease: RedisLease, confirmed: float) -> None:
        if source.leading is not None:
            await source.leading(True)
        self._started(source)
        self._m.changes.inc((source.name, "acquired"))
        task = asyncio.create_task(source.run(), name=f"pulled source {source.name}")
        change = "released"  # unless _hold says otherwise: at shutdown it is cancelled
        try:
            change = await self._hold(source, lease, task, confirmed)
        finally:
            self._m.changes.inc((source.name, change))
            await self._stop(source, task)
            if change in ("lost", "expired"):
                lease.forget()
            else:
                await self._release(source, lease)
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            raise error  # the source's own error (a bug) ends the agent, as without leases

    async def _hold(self, source: PulledSource, lease: RedisLease, task: asyncio.Task[None], confirmed: float) -> str:
        """Renew until the lease is lost ("lost") or could not be renewed in time ("expired")."""
        # Stop half a renewal before the lease could expire in Redis (it started counting after `confirmed`).
        deadline = confirmed + self._lease_seconds - self._renew_seconds / 2
        renewal = confirmed + self._renew_seconds
        failing = False
        while True:
            await asyncio.wait({task}, timeout=max(0.0, min(renewal, deadline) - time.monotonic()))
            if task.done():
                return "released"
            started = time.monotonic()
            if started >= deadline:
                log.warning(
                    "leader: stopped %s: its lease could not be renewed for %.1f s (Redis unreachable) and may expire",
                    source.name,
                    started - confirmed,
                )
                return "expired"
            renewal = started + self._renew_seconds
            try:
                fence = await redis_call(lease.renew(), min(self._renew_seconds / 2, deadline - started))
            except REDIS_ERRORS as error:
                if not failing:
                    log.warning(
                        "leader: cannot renew the %s lease (%s); stopping it in %.1f s unless Redis answers",
                        source.name,
                        error,
                        deadline - time.monotonic(),
                    )
                failing = True
                continue
            if fence is None:
                log.warning("leader: stopped %s: another replica holds its lease", source.name)
                return "lost"
            if failing:
                log.info("leader: renewed the %s lease again (fence %d)", source.name, fence)
            failing, confirmed = False, started
            deadline = confirmed + self._lease_seconds - self._renew_seconds / 2

    async def _stop(self, source: PulledSource, task: asyncio.Task[None]) -> None:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=STOP_SECONDS)
        if not done:
            log.error("leader: %s did not stop within %.0f s of being cancelled", source.name, STOP_SECONDS)
        self._stopped(source)
        if source.leading is not None:
            await source.leading(False)

    async def _release(self, source: PulledSource, lease: RedisLease) -> None:
        try:
            await redis_call(lease.release(), RELEASE_SECONDS)
        except REDIS_ERRORS as error:
            log.info("leader: could not give the %s lease back (%s); it expires by itself", source.name, error)

    # ------------------------------------------------------------------------------------ metrics

    def _started(self, source: PulledSource) -> None:
        self._leading.add(source.name)
        self._m.leader.set((source.name,), 1)

    def _stopped(self, source: PulledSource) -> None:
        self._leading.discard(source.name)
        self._m.leader.set((source.name,), 0)
