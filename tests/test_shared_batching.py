"""How one replica's checks reach a real redis-server (shared_state.py `_ask`): in batches, one script
call each, with the call timeout kept per batch whatever the connection does."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import msgpack
import pytest
from redis.asyncio import Redis

from qss_exporter import dedupe, pipeline, shared_state
from qss_exporter.activity import ActivityTracker
from qss_exporter.config import config_from_mapping
from qss_exporter.enrichment import ParticipantDirectory, SiteMap
from qss_exporter.outputs.prometheus import render
from qss_exporter.redis_client import build_redis
from qss_exporter.shared_state import SharedFamilies, SharedState, Verdict
from qss_exporter.store import Store
from qss_exporter.timekeeping import record_second
from qss_exporter.zoom.events import decode
from qss_exporter.zoom.records import ParticipantInfo, PhoneQosRecord, QosRecord
from tests.conftest import ACCOUNT_ID, SECRET, AgentFactory, parse_metrics, total
from tests.redis_server import ACL_PASSWORD, ACL_USER, RedisServer, add_documented_acl_user
from tests.samples import load_sample

ACCOUNT = "acme"
ACME = {"name": ACCOUNT, "account_id": ACCOUNT_ID, "webhook_secret_token": SECRET}


def qos(participant: int, second: int = 0) -> QosRecord:
    """The shared QoS sample for participant `participant`, its record time moved by `second` seconds."""
    record = decode(load_sample("meeting.participant_qos"))
    assert isinstance(record, QosRecord)
    made = (record.record_time or 1_700_000_000.0) + second
    key = (*record.dedupe_key[:-1], (participant, second))
    return replace(record, participant_id=f"p{participant}", record_time=made, dedupe_key=key)


def data_event() -> ParticipantInfo:
    record = decode(load_sample("meeting.participant_data"))
    assert isinstance(record, ParticipantInfo)
    return record


class Replica:
    """One replica's SharedState on its own client, with the store its counters live in."""

    def __init__(
        self, redis: RedisServer, call_timeout: float, command_timeout: float = 3.0, **credentials: str
    ) -> None:
        redis_settings = {
            "url": redis.url,
            "command_timeout_seconds": command_timeout,
            "connect_timeout_seconds": 1,
            **credentials,
        }
        config = config_from_mapping({"accounts": [ACME], "state": {"backend": "redis", "redis": redis_settings}})
        self.client: Redis = build_redis(config.state.redis)
        self.store = Store(10_000, time.time)
        self.directory = ParticipantDirectory(
            ("network_type", "site"), SiteMap([("leeds", ["10.0.0.0/8"])]), 3600, 1000
        )
        self.state = SharedState(
            self.client,
            SharedFamilies.register(self.store),
            key_prefix="qss:",
            identity="replica-a",
            dedupe_window=3600,
            enrichment_ttl=3600,
            activity_window=600,
            call_timeout=call_timeout,
            retry_seconds=5,
        )

    async def check(self, *records: Any) -> list[Verdict | None]:
        """Every record asked in the same loop iteration, as concurrent webhooks are."""
        return list(await asyncio.gather(*(self.state.check(record, self.directory, ACCOUNT) for record in records)))

    def decisions(self, reason: str) -> float:
        metrics = parse_metrics(render(self.store).decode())
        return total(metrics, "zoom_qss_state_local_decisions_total", reason=reason)


async def script_calls(client: Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.fixture
async def replica(redis_server: RedisServer) -> AsyncIterator[Replica]:
    replica = Replica(redis_server, call_timeout=1.0)
    yield replica
    await replica.client.aclose()


async def test_checks_asked_together_are_answered_by_one_script_call_in_order(replica: Replica) -> None:
    await replica.check(qos(999))  # the script loaded (a fresh Redis answers the first call NOSCRIPT)
    records = [qos(n) for n in range(40)]
    before = await script_calls(replica.client)
    verdicts = await replica.check(*records, records[7])  # the last: a retry of the eighth, in the same batch
    assert await script_calls(replica.client) - before == 1
    assert [v is not None and v.duplicate for v in verdicts] == [False] * 40 + [True]
    first = verdicts[0]
    assert first is not None
    assert first.hold
    assert first.times == ()
    assert first.enrichment is None
    # Each participant's second record time, in a second batch: the first time is known, held no more.
    later = await replica.check(*(qos(n, second=30) for n in range(40)))
    assert await script_calls(replica.client) - before == 2
    answers = [(v.duplicate, v.hold, v.times) if v is not None else None for v in later]
    assert answers == [(False, False, (first_time(n),)) for n in range(40)]


def first_time(participant: int) -> int:
    made = qos(participant).record_time
    assert made is not None
    return record_second(made)


async def test_a_data_event_and_a_qos_record_in_one_batch_see_each_other_in_order(replica: Replica) -> None:
    """The data event is merged before the QoS record after it is answered: as one event after the other."""
    info = data_event()
    record = replace(qos(0), account_id=info.account_id, instance=info.instance, participant_id=info.participant_id)
    before, after = await replica.check(record, info)
    assert before is not None
    assert before.enrichment is None
    assert after is not None
    assert after.enrichment is not None
    again = await replica.check(replace(record, dedupe_key=("another",)), info)
    assert again[0] is not None
    assert again[0].enrichment == after.enrichment
    assert again[1] is not None
    assert again[1].duplicate


async def test_a_phone_summary_flags_each_sample_counted_already(replica: Replica) -> None:
    one = decode(load_sample("phone.call_qos"))
    summary = decode(load_sample("phone.call_qos_summary"))
    assert isinstance(one, PhoneQosRecord)
    assert isinstance(summary, PhoneQosRecord)
    copy = summary.samples[1]  # the summary repeats this sample, received one by one before
    key = ("phone.call_qos", summary.account_id, summary.call_id, copy.leg, copy.direction, copy.sample_time)
    one = replace(one, account_id=summary.account_id, call_id=summary.call_id, samples=(copy,), dedupe_key=key)
    single, whole = await replica.check(one, summary)
    assert single is not None
    assert not single.duplicate
    assert whole is not None
    assert not whole.duplicate
    assert whole.samples == tuple(index == 1 for index in range(len(summary.samples)))  # counted already


async def test_a_frozen_redis_fails_every_waiting_batch_at_the_call_timeout(redis_server: RedisServer) -> None:
    """SIGSTOP: the connection stays open and silent. Every event of the batches on their way and of the one
    waiting behind them is decided locally after the call timeout (0.2 s), not the command timeout (3.5 s)."""
    replica = Replica(redis_server, call_timeout=0.2, command_timeout=3.5)
    try:
        await replica.check(qos(999))  # connected
        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            waves = [
                asyncio.ensure_future(replica.check(*(qos(wave * 100 + n) for n in range(5)))) for wave in range(3)
            ]
            for _ in waves:
                await asyncio.sleep(0)  # each wave in a loop iteration of its own: the first sent, the others wait
            async with asyncio.timeout(3):
                verdicts = [v for wave in waves for v in await wave]
            waited = time.monotonic() - started
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        assert verdicts == [None] * 15
        assert waited < 2.0  # the call timeout's order, far below the 3.5 s command timeout
        assert replica.decisions("timeout") == 15
        assert not replica.state.up  # the request path stops asking until `sync` finds Redis again
    finally:
        await replica.client.aclose()


async def test_a_restarted_redis_gets_the_script_again(redis_server: RedisServer, replica: Replica) -> None:
    assert (await replica.check(qos(1)))[0] is not None
    await replica.client.script_flush()  # as after a restart: NOSCRIPT for the next call
    verdicts = await replica.check(qos(2), qos(1))
    assert verdicts[0] is not None
    assert not verdicts[0].duplicate
    assert verdicts[1] is not None
    assert verdicts[1].duplicate


async def test_sync_loads_the_scripts_so_that_no_batch_meets_noscript(replica: Replica) -> None:
    """A fresh (or restarted, or flushed) Redis knows no script: `sync` loads them at start and after an
    outage, so that the first batch is one round trip, not NOSCRIPT and a second one."""
    for _ in range(2):  # at start; then after Redis failed a call and lost its scripts meanwhile
        await replica.client.script_flush()
        await replica.client.config_resetstat()
        assert await replica.state.sync(ActivityTracker(600), ActivityTracker(600))
        verdicts = await replica.check(qos(1), qos(2))
        assert [v is not None and v.duplicate for v in verdicts] == [False, False]
        stats = await replica.client.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == 1
        assert stats["cmdstat_evalsha"]["failed_calls"] == 0  # NOSCRIPT would be one
        replica.state._failed(ConnectionError("gone"))  # as when Redis stopped answering
        await replica.client.flushall()


async def test_the_documented_acl_is_enough_for_every_script_of_the_shared_state(redis_server: RedisServer) -> None:
    """docs/config.md's least-privilege ACL user (no TIME, for one) runs the check of every kind of
    event, `sync` and the meetings' claims: a command it lacks would fail every batch."""
    admin = Redis.from_url(redis_server.url)
    try:
        await add_documented_acl_user(admin)
    finally:
        await admin.aclose()
    replica = Replica(redis_server, call_timeout=2.0, username=ACL_USER, password=ACL_PASSWORD)
    try:
        events = [
            decode(load_sample(name))
            for name in (
                "meeting.participant_data",
                "meeting.participant_qos",
                "meeting.participant_qos_summary",
                "meeting.participant_data_summary",
                "phone.call_qos",
                "phone.call_qos_summary",
            )
        ]
        verdicts = await replica.check(*events, qos(1), qos(1, second=30))
        assert all(verdict is not None and not verdict.duplicate for verdict in verdicts), verdicts
        participants, calls = ActivityTracker(600), ActivityTracker(600)
        participants.touch((ACCOUNT, "meeting", "instance", "p9"), time.time(), (ACCOUNT,))
        calls.touch((ACCOUNT, "call-9"), time.time(), (ACCOUNT,))
        assert await replica.state.sync(participants, calls)
        assert participants.counted() == [(ACCOUNT, "meeting", "instance", "p9")]  # claimed: unowned before
        assert replica.decisions("error") == replica.decisions("timeout") == 0
    finally:
        await replica.client.aclose()


async def test_a_qos_record_is_digested_once_for_redis_and_the_local_history(
    start_agent: AgentFactory, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest of a QoS record's key (its whole content) is the costliest part of the check: made once."""
    agent = await start_agent(state={"backend": "redis", "redis": {"url": redis_server.url, "sync_seconds": 60}})
    event = load_sample("meeting.participant_qos")
    event["event_ts"] = int(time.time() * 1000)
    record = decode(event)
    assert isinstance(record, QosRecord)
    digested: list[object] = []

    def counting(key: object) -> int:
        digested.append(key)
        return real(key)

    real = dedupe.digest
    for module in (dedupe, pipeline, shared_state):
        monkeypatch.setattr(module, "digest", counting)
    response = await agent.post(event)
    assert response.status_code == 200
    assert digested.count(record.dedupe_key) == 1
    metrics = await agent.scrape()
    assert total(metrics, "zoom_qss_media_records_total") > 0  # recorded (the digest the history got was right)
    again = await agent.post(event)  # a retry to the same replica: both Redis and the history know it
    assert again.status_code == 200
    assert total(await agent.scrape(), "zoom_qss_webhook_requests_total", outcome="duplicate") == 1


async def test_an_entry_that_is_not_utf8_is_no_label_and_fails_nothing(replica: Replica) -> None:
    """Whoever writes Redis may store any bytes: they never become a label value, nor fail the batch."""
    record = qos(5)
    key = f"qss:{shared_state.LAYOUT}e:{record.account_id}|{record.instance}|{record.participant_id}"
    await replica.client.set(key, b"\xff\xfe\x1f\xc3")
    forged, other = await replica.check(record, qos(6))
    assert forged is not None
    assert other is not None
    assert not forged.duplicate
    assert not other.duplicate
    assert forged.enrichment is not None
    assert all(value.isprintable() and "\xff" not in value for value in forged.enrichment)


async def test_a_bug_in_a_batch_is_logged_and_its_events_decided_locally(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    replica = Replica(redis_server, call_timeout=0.2)
    try:

        def broken(_: object) -> bytes:
            raise RuntimeError("a bug")

        monkeypatch.setattr(msgpack, "packb", broken)
        assert await replica.check(qos(1), qos(2)) == [None, None]
        assert replica.decisions("timeout") == 2
        await asyncio.sleep(0)  # the batch's task ended: its done-callback logged
        assert any("a batch of checks failed" in record.message and record.exc_info for record in caplog.records), (
            caplog.text
        )
    finally:
        await replica.client.aclose()
