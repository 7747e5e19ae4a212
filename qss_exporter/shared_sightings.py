"""The poller's sightings from every replica (`state.backend: redis`): webhooks land anywhere, the leader polls.

The poller discovers what to poll from the instances that webhooks mention, and must not re-count the
participant summaries that webhooks counted already (sources/poller.py). With several replicas the
webhooks of one meeting are spread over all of them while only the leader polls: every replica that
does not lead appends what its webhooks saw to one list in Redis (`RPUSH`, about once a second, in
batches), and the leader takes the list whole (read and delete in one script) about once a second and
hands each sighting to its poller. The take is fenced with the poller lease's token (lease.py): a
replica that lost the lease while paused cannot take sightings its successor needs. The list expires
after the dedupe window if nobody leads that long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson
from redis.asyncio import Redis

from qss_exporter.lease import LeaseLost, RedisLease
from qss_exporter.redis_client import REDIS_ERRORS, redis_call
from qss_exporter.sources.poller import Poller
from qss_exporter.zoom.records import MeetingEvent, PhoneQosRecord, Record, SummaryRecord

__all__ = ["SightingsShare"]

log = logging.getLogger(__name__)

PUSH_SECONDS = 1.0
PENDING_MAX = 100_000  # sightings kept while Redis is away; more are dropped (the look-back sweep finds them)
# Fenced (lease.fenced): KEYS[3] the list. Returns its items and deletes it.
_TAKE = """
local items = redis.call('LRANGE', KEYS[3], 0, -1)
redis.call('DEL', KEYS[3])
return items
"""


class SightingsShare:
    """Pushes this replica's sightings while another replica polls; takes everyone's while this one does."""

    def __init__(
        self,
        client: Redis,
        poller: Poller,
        *,
        key_prefix: str,
        window: float,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._poller = poller
        self.key = f"{key_prefix}sightings"
        self._window_ms = max(1, round(window * 1000))
        self._timeout = timeout
        self._clock = clock
        self._pending: list[bytes] = []

    def observe(self, record: Record, source: str) -> None:
        """Pipeline listener on every replica: what the poller's own `observe` would take, while it does not."""
        if self._poller.observing or source == "poll" or isinstance(record, PhoneQosRecord):
            return
        if len(self._pending) >= PENDING_MAX:
            return
        summary_of = record.participant_id if isinstance(record, SummaryRecord) else None
        match = record.match if isinstance(record, SummaryRecord) else ""
        ended = isinstance(record, MeetingEvent) and record.kind == "ended"
        item = (record.account_id, record.product, record.instance, self._clock(), summary_of, match, ended)
        self._pending.append(orjson.dumps(item))

    async def push(self) -> None:
        """Every second, this replica's sightings to the list (kept for the next try while Redis is away)."""
        while True:
            await asyncio.sleep(PUSH_SECONDS)
            if not self._pending:
                continue
            batch = self._pending
            self._pending = []
            try:
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.rpush(self.key, *batch)
                    pipe.pexpire(self.key, self._window_ms)
                    await redis_call(pipe.execute(), self._timeout)
            except REDIS_ERRORS:
                self._pending = (batch + self._pending)[:PENDING_MAX]

    async def take(self, lease: RedisLease) -> None:
        """While this replica leads the poller: every second, everyone's sightings to its poller."""
        while True:
            await asyncio.sleep(PUSH_SECONDS)
            try:
                items = await redis_call(lease.fenced(_TAKE, keys=[self.key]), self._timeout)
            except LeaseLost:
                return  # the leadership loop notices at its next renewal and stops the poller
            except REDIS_ERRORS as error:
                log.debug("poller: sightings not taken from Redis (%s); next second", error)
                continue
            assert isinstance(items, list)
            for item in items:
                account_id, product, instance, at, summary_of, match, ended = orjson.loads(item)
                self._poller.sighted(account_id, product, instance, at, summary_of, match, ended)
