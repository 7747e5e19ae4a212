"""The poller's sightings from every replica reach the leader's poller through Redis, fenced by its lease."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from qss_exporter.config import config_from_mapping
from qss_exporter.core import build_core
from qss_exporter.lease import RedisLease
from qss_exporter.redis_client import build_redis
from qss_exporter.shared_sightings import SightingsShare
from qss_exporter.sources.poller import build_poller
from qss_exporter.zoom.events import decode
from qss_exporter.zoom.records import QosRecord, SummaryRecord
from tests.conftest import ACCOUNT_ID, SECRET
from tests.redis_server import RedisServer
from tests.samples import load_sample


async def test_the_leader_takes_the_sightings_of_replicas_that_do_not_poll(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    config = config_from_mapping(
        {
            "accounts": [
                {
                    "name": "acme",
                    "account_id": ACCOUNT_ID,
                    "webhook_secret_token": SECRET,
                    "client_id": "client-id",
                    "client_secret": "client-secret-0123456789",
                }
            ],
            "poller": {"enabled": True, "state_dir": str(tmp_path)},
            "state": {"backend": "redis", "redis": {"url": redis_server.url}},
        },
        environ={},
    )
    core = build_core(config)
    # Two replicas' pollers: one that does not lead (it shares its sightings), one that does.
    follower = build_poller(config, core.pipeline, core.catalogue.api, clock=time.time)
    leader = build_poller(config, build_core(config).pipeline, core.catalogue.api, clock=time.time)
    assert follower is not None
    assert leader is not None
    follower.observing = False
    client = build_redis(config.state.redis)
    try:
        pushing = SightingsShare(client, follower, key_prefix="qss:", window=7200, timeout=2, clock=time.time)
        taking = SightingsShare(client, leader, key_prefix="qss:", window=7200, timeout=2, clock=time.time)
        summary = decode(load_sample("meeting.participant_qos_summary"))
        qos = decode(load_sample("meeting.participant_qos"))
        assert isinstance(summary, SummaryRecord)
        assert isinstance(qos, QosRecord)
        pushing.observe(qos, "webhook")
        pushing.observe(summary, "webhook")
        pushing.observe(summary, "poll")  # the poller's own records are not sightings
        push = asyncio.create_task(pushing.push())
        async with asyncio.timeout(5):
            while await client.llen(pushing.key) < 2:  # noqa: ASYNC110 - Redis is the observable
                await asyncio.sleep(0.05)
        push.cancel()

        # A replica that does not hold the poller's lease takes nothing (fenced), and stops trying.
        stale = RedisLease(client, "poller", key_prefix="qss:", lease_seconds=1.0, identity="stale")
        await asyncio.wait_for(taking.take(stale), 5)
        assert await client.llen(pushing.key) == 2

        holder = RedisLease(client, "poller", key_prefix="qss:", lease_seconds=1.0, identity="leader")
        async with asyncio.timeout(5):
            while await holder.acquire() is None:  # noqa: ASYNC110 - a fresh Redis grants no lease for a second
                await asyncio.sleep(0.2)
        take = asyncio.create_task(taking.take(holder))
        key = (summary.account_id, summary.product, summary.instance)
        async with asyncio.timeout(5):
            while key not in leader._sightings:
                assert await holder.renew()  # a 1 s lease: renewed as leadership.py does
                await asyncio.sleep(0.1)
        take.cancel()
        _, counted, ended = leader._sightings[key]
        assert counted
        assert not ended
        assert [entry.participant_id for entry in leader._counted] == [summary.participant_id]
        assert await client.llen(pushing.key) == 0
        assert orjson.dumps(sorted(follower._sightings)) == b"[]"  # the follower itself polls nothing
    finally:
        await client.aclose()
        await follower.close(flush=False)
        await leader.close(flush=False)
