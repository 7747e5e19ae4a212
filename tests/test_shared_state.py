"""Two in-process agents on one real redis-server share dedupe, enrichment and activity (shared_state.py).

Each agent is the real thing (both uvicorn listeners on loopback); the webhooks are the shared samples,
signed. Redis is killed and started again to see the local fallback and the return to sharing.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis.asyncio import Redis

from qss_exporter.app import Agent
from qss_exporter.config import config_from_mapping
from qss_exporter.enrichment import ParticipantDirectory
from qss_exporter.outputs.prometheus import render
from qss_exporter.shared_state import LAYOUT, SharedState
from qss_exporter.zoom.events import decode
from qss_exporter.zoom.records import QosRecord
from tests.conftest import AgentFactory, RunningAgent, Series, base_config, merge, parse_metrics, total
from tests.redis_server import RedisServer
from tests.samples import load_sample

QOS = "zoom_qss_media_records_total"


def shared(redis: RedisServer, **more: Any) -> dict[str, Any]:
    return {
        "state": {
            "backend": "redis",
            "redis": {"url": redis.url, "call_timeout_ms": 100, "sync_seconds": 60, **more},
        }
    }


def body(name: str, **changes: Any) -> bytes:
    """A shared sample, its `event_ts` moved to now (signatures are checked against the clock)."""
    event = load_sample(name)
    event["event_ts"] = int(time.time() * 1000)
    event.update(changes)
    return orjson.dumps(event)


async def ok(agent: RunningAgent, raw: bytes) -> None:
    response = await agent.post(raw)
    assert response.status_code == 200, response.text


def summed(*scrapes: Series) -> Series:
    result: Series = {}
    for scrape in scrapes:
        for key, value in scrape.items():
            result[key] = result.get(key, 0.0) + value
    return result


def state_of(agent: RunningAgent) -> SharedState:
    state = agent.agent.pipeline.shared
    assert state is not None
    return state


def pipeline_directory(agent: RunningAgent) -> ParticipantDirectory:
    return agent.agent._directory


async def sync(*agents: RunningAgent) -> None:
    for agent in agents:
        pipeline = agent.agent.pipeline
        assert await state_of(agent).sync(
            pipeline.participants, pipeline.calls, pipeline.time, pipeline_directory(agent)
        )


async def test_a_data_event_on_one_replica_enriches_qos_on_the_other(
    start_agent: AgentFactory, redis_server: RedisServer
) -> None:
    a, b = await start_agent(**shared(redis_server)), await start_agent(**shared(redis_server))
    await ok(a, body("meeting.participant_data"))
    await ok(b, body("meeting.participant_qos"))
    metrics = await b.scrape()
    assert total(metrics, QOS) > 0
    # The sample's participant is in 10.20.0.0/16, the site `leeds` of base_config.
    assert total(metrics, QOS, site="leeds") == total(metrics, QOS)
    assert total(metrics, QOS, site="unknown") == 0


async def test_a_retry_to_the_other_replica_counts_once(start_agent: AgentFactory, redis_server: RedisServer) -> None:
    a, b = await start_agent(**shared(redis_server)), await start_agent(**shared(redis_server))
    for name in ("meeting.participant_qos", "meeting.participant_qos_summary", "phone.call_qos"):
        raw = body(name)
        await ok(a, raw)
        await ok(b, raw)  # Zoom's retry, to the other replica
    both = summed(await a.scrape(), await b.scrape())
    assert total(both, "zoom_qss_webhook_requests_total", outcome="duplicate") == 3
    assert total(both, "zoom_qss_webhook_requests_total", outcome="accepted") == 3
    assert total(both, "zoom_qss_participant_sessions_total") == 1
    assert total(both, "zoom_qss_phone_mos_count") == total(await a.scrape(), "zoom_qss_phone_mos_count") > 0


async def test_a_leave_on_one_replica_ends_activity_on_the_other(
    start_agent: AgentFactory, redis_server: RedisServer
) -> None:
    a, b = await start_agent(**shared(redis_server)), await start_agent(**shared(redis_server))
    await ok(a, body("meeting.participant_qos"))
    await sync(a, b)
    assert total(await a.scrape(), "zoom_qss_active_participants") == 1
    assert total(await a.scrape(), "zoom_qss_active_meetings") == 1
    await ok(b, body("meeting.participant_qos_summary"))  # the leave, elsewhere
    await sync(a, b)
    both = summed(await a.scrape(), await b.scrape())
    assert total(both, "zoom_qss_active_participants") == 0
    assert total(both, "zoom_qss_active_meetings") == 0


async def test_the_latest_record_decides_who_counts_a_participant(
    start_agent: AgentFactory, redis_server: RedisServer
) -> None:
    a, b = await start_agent(**shared(redis_server)), await start_agent(**shared(redis_server))
    first = load_sample("meeting.participant_qos")
    await ok(a, orjson.dumps(first | {"event_ts": int(time.time() * 1000)}))
    second = load_sample("meeting.participant_qos")
    second["payload"]["object"]["participant"]["qos"][0]["date_time"] = "2025-10-24T14:52:00Z"
    await ok(b, orjson.dumps(second | {"event_ts": int(time.time() * 1000) + 1}))
    before = summed(await a.scrape(), await b.scrape())
    assert total(before, "zoom_qss_active_participants") == 2  # until the replicas reconcile
    await sync(a, b)
    after_a, after_b = await a.scrape(), await b.scrape()
    assert total(after_a, "zoom_qss_active_participants") == 0
    assert total(after_b, "zoom_qss_active_participants") == 1
    assert total(summed(after_a, after_b), "zoom_qss_active_meetings") == 1


async def test_redis_down_answers_from_local_state_then_sharing_resumes(
    start_agent: AgentFactory, redis_server: RedisServer
) -> None:
    a, b = await start_agent(**shared(redis_server)), await start_agent(**shared(redis_server))
    await ok(a, body("meeting.participant_data"))
    await ok(b, body("meeting.participant_qos"))  # b's local directory learns the entry from Redis
    redis_server.kill()
    started = time.monotonic()
    retry = body("meeting.participant_qos_summary")
    await ok(b, retry)
    await ok(b, retry)  # the same replica still recognises its own retry
    await ok(b, body("phone.call_qos"))
    assert time.monotonic() - started < 1.0  # one call timeout (0.1 s) at most, then not asked
    metrics = await b.scrape()
    assert total(metrics, "zoom_qss_state_shared_up") == 0
    assert (
        total(metrics, "zoom_qss_state_local_decisions_total", reason="timeout")
        + total(metrics, "zoom_qss_state_local_decisions_total", reason="error")
        == 1
    )
    assert total(metrics, "zoom_qss_state_local_decisions_total", reason="down") == 2
    assert total(metrics, "zoom_qss_participant_sessions_total", site="leeds") == 1  # enrichment kept locally
    assert total(metrics, "zoom_qss_webhook_requests_total", outcome="duplicate") == 1
    redis_server.start()  # empty: no persistence
    await sync(b)  # b gives Redis back the enrichment it holds
    assert total(await b.scrape(), "zoom_qss_state_shared_up") == 1
    await ok(a, body("meeting.participant_qos"))  # a never saw the data event, nor Redis since its restart
    assert total(await a.scrape(), QOS, site="leeds") == total(await a.scrape(), QOS) > 0
    raw = body("phone.call_qos_summary")
    await ok(a, raw)
    await ok(b, raw)
    both = summed(await a.scrape(), await b.scrape())
    assert total(both, "zoom_qss_phone_calls_total") == 1  # shared again: counted once


async def test_a_websocket_event_and_its_webhook_copy_on_another_replica_count_once(
    start_agent: AgentFactory, redis_server: RedisServer
) -> None:
    webhooks = await start_agent(**shared(redis_server))
    subscribed = dict(base_config()["accounts"][0])
    subscribed |= {
        "client_id": "client-id",
        "client_secret": "client-secret-0123",
        "websocket": {"subscription_id": "s"},
    }
    mapping = merge(base_config(), shared(redis_server)) | {"accounts": [subscribed]}
    leader = Agent(config_from_mapping(mapping))  # not serving: its WebSocket source is fed directly
    try:
        raw = body("meeting.participant_qos")
        await ok(webhooks, raw)
        source = leader.websockets[0]
        await source._event_shared(decode(orjson.loads(raw)))
        await source._event_shared(decode(orjson.loads(body("meeting.participant_data"))))
        metrics = parse_metrics(render(leader.store).decode())
        assert total(metrics, "zoom_qss_websocket_events_total", outcome="duplicate") == 1  # the webhook's copy
        assert total(metrics, "zoom_qss_websocket_events_total", outcome="accepted") == 1
        assert total(metrics, "zoom_qss_media_records_total") == 0
    finally:
        assert leader.redis is not None
        await leader.redis.close()


async def test_label_values_from_redis_are_held_to_this_replicas_closed_sets(
    start_agent: AgentFactory, redis_server: RedisServer
) -> None:
    """Whoever writes Redis cannot grow a label set beyond what a data event could give (docs/security.md)."""
    a = await start_agent(**shared(redis_server), labels={"data_center": True, "client_os": True})
    qos = decode(load_sample("meeting.participant_qos"))
    assert isinstance(qos, QosRecord)
    client = Redis.from_url(redis_server.url)
    try:
        forged = "\x1f".join(("dial-up", "atlantis", "MARS", "plan9"))  # network_type, site, data_center, client_os
        await client.set(f"qss:{LAYOUT}e:{qos.account_id}|{qos.instance}|{qos.participant_id}", forged)
    finally:
        await client.aclose()
    await ok(a, body("meeting.participant_qos"))
    labels = {dict(key[1])["network_type"] for key in (await a.scrape()) if key[0] == QOS}
    metrics = await a.scrape()
    assert total(metrics, QOS) == total(
        metrics, QOS, network_type="other", site="unknown", data_center="other", client_os="other"
    )
    assert labels == {"other"}
