"""Issue 12 point 3: summaries from webhook and REST counted once, on the ids the two sides really share.

Meetings and webinars share the per-instance `participant_id`. Video SDK sessions share no id: Zoom's QSS
REST OpenAPI describes `users[].id` of `GET /videosdk/sessions/{sessionId}/users/qos_summary`
as "The user's universally unique ID. This value is the same as the user's user ID if the user joins
the session by logging into Zoom. If the user joins the session without logging into Zoom, this returns
an empty value." (its example: "zJKyaiAyTNC-MWjiWC18KQ"), while the webhooks' `user.id` is "The user's
unique ID. This value is assigned to the user upon joining a session and is only valid for that
session." The two never match: users without a Zoom login were dropped as parse errors, signed-in users
counted twice. What both sides do share is `user_key` ("Set with the `user_identity` key in the Video
SDK JWT payload", optional) and the display `name` (which REST may leave empty). docs/poller.md, "Video
SDK sessions", has the rule these tests hold the poller to:

* a REST user is never dropped for an empty `id`;
* per session, summaries counted = max(webhook summaries, REST users): a REST user whose `user_key`
  (else name) matches a webhook summary is that summary; other REST users fill up to the number the
  listing has (those with no identity at all first taken to be the webhooks nobody matched);
* webhook first or poll first, and across a restart, nothing counts twice.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from qss_exporter.zoom.events import decode
from qss_exporter.zoom.records import InvalidEvent, QosRecord, Record, SummaryRecord
from qss_exporter.zoom.summaries import decode_rest_summary
from tests.conftest import ACCOUNT_ID, SECRET, Series, base_config, merge, parse_metrics, total
from tests.fake_zoom import FakeZoom, serve_fake_zoom
from tests.fake_zoom_api import FakeInstance, FakeZoomApi, participants
from tests.process import AgentProcess
from tests.samples import load_sample
from tests.sim_clock import wait_for
from tests.sources.test_poller import NOON, UUID, event, finished, poller_config, rig, sessions, summary

SESSION = "Vb8n/Qk3RrWx2LmPc7dT5w=="
LOGIN_ID = "zJKyaiAyTNC-MWjiWC18KQ"  # the `id` of Zoom's own users/qos_summary example: a signed-in user


_SERIAL = iter(range(10**6))


def rest_user(user_key: str, name: str, login_id: str = "") -> dict[str, Any]:
    """A `users[]` item of the Video SDK qos_summary listing, shaped like Zoom's (Kbps with a capital K).

    Each gets its own average latency, as two users' (or two joins') statistics differ.
    """
    item: dict[str, Any] = copy.deepcopy(load_sample("qos_summary.videosdk_sessions")["users"][0])
    item |= {"id": login_id, "user_key": user_key, "name": name}
    item["qos"][0]["details"]["avg_latency"] = f"{30 + next(_SERIAL) % 200} ms"
    return item


def webhook_summary(session_user_id: str, user_key: str, name: str, session: str = SESSION) -> dict[str, Any]:
    """A `session.user_qos_summary` body: `user.id` is the per-session id, never the REST one."""
    body: dict[str, Any] = copy.deepcopy(load_sample("session.user_qos_summary"))
    body["payload"]["account_id"] = ACCOUNT_ID
    body["payload"]["object"]["session_id"] = session
    body["payload"]["object"]["user"] |= {"id": session_user_id, "user_key": user_key, "name": name}
    return body


def decoded(body: dict[str, Any]) -> SummaryRecord:
    record = decode(body)
    assert isinstance(record, SummaryRecord)
    return record


async def test_a_record_after_someone_elses_summary_does_not_mark_its_participant_counted(tmp_path: Path) -> None:
    """Found testing point 3: once one participant's summary was seen, every later real-time record marked its
    own participant as counted, so the poll skipped their summaries, which were lost."""
    async with rig(tmp_path) as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", UUID, participants(3)))
        run = await r.start(summary(UUID, "p0"), event("meeting.participant_qos", UUID, "p1"))
        await wait_for(finished(r, 1))
        series = run.metrics()
        assert sessions(series, "webhook") == 1
        assert sessions(series, "poll") == 2  # p1 and p2 (p1 used to be skipped)


def test_a_rest_user_without_a_zoom_login_is_a_summary_not_an_error() -> None:
    record = decode_rest_summary("session", ACCOUNT_ID, SESSION, rest_user("", "Guest 7"))
    assert isinstance(record, SummaryRecord)
    assert record.participant_id  # an id of the agent's own, from what the item carries
    assert record.streams


def test_rest_and_webhook_summaries_of_one_user_share_their_match_not_their_ids() -> None:
    rest = decode_rest_summary("session", ACCOUNT_ID, SESSION, rest_user("clin-0042", "Dr. Imani Reyes", LOGIN_ID))
    hook = decoded(webhook_summary("16778241", "clin-0042", "Dr. Imani Reyes"))
    assert isinstance(rest, SummaryRecord)
    assert isinstance(hook, SummaryRecord)
    assert rest.match == hook.match != ""
    assert rest.participant_id != hook.participant_id
    assert LOGIN_ID not in rest.participant_id  # digests: no personal data kept
    assert "clin-0042" not in rest.match
    # Without a user_key the name is what both sides have.
    by_name = decode_rest_summary("session", ACCOUNT_ID, SESSION, rest_user("", "Ana"))
    assert isinstance(by_name, SummaryRecord)
    assert by_name.match == decoded(webhook_summary("1", "", "Ana")).match
    nobody = decode_rest_summary("session", ACCOUNT_ID, SESSION, rest_user("", ""))
    assert isinstance(nobody, SummaryRecord)
    assert nobody.match == ""
    assert not isinstance(decode_rest_summary("session", ACCOUNT_ID, SESSION, {"qos": "x"}), SummaryRecord)
    assert isinstance(decode_rest_summary("session", ACCOUNT_ID, SESSION, ["x"]), InvalidEvent)


async def test_webhook_then_poll_counts_each_user_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        listed = [
            rest_user("clin-0042", "Dr. Imani Reyes", LOGIN_ID),  # signed in: REST id is the login id
            rest_user("pt-77", "Sam", ""),  # no Zoom login: REST id is ""
            rest_user("pt-78", "Kim", ""),
        ]
        r.fake.add(FakeInstance(ACCOUNT_ID, "session", SESSION, listed))
        run = await r.start(
            decoded(webhook_summary("16778241", "clin-0042", "Dr. Imani Reyes")),
            decoded(webhook_summary("16778242", "pt-77", "Sam")),
        )
        await wait_for(finished(r, 1))
        series = run.metrics()
        assert sessions(series, "webhook", product="session") == 2
        assert sessions(series, "poll", product="session") == 1  # Kim only
        assert total(series, "zoom_qss_parse_errors_total", field="id") == 0  # nobody dropped
        # Zoom's late retry of a webhook summary after the poll: still once.
        assert not run.ingest(decoded(webhook_summary("16778242", "pt-77", "Sam")))


async def test_poll_then_late_webhooks_count_each_user_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "session", SESSION, [rest_user("a", "A"), rest_user("b", "B")]))
        # The session was seen (a real-time record), but its summaries were lost: the poll finds both users.
        run = await r.start(decoded_realtime())
        await wait_for(finished(r, 1))
        assert sessions(run.metrics(), "poll", product="session") == 2
        # Then Zoom's retries of the two summaries arrive after all: already counted.
        assert not run.ingest(decoded(webhook_summary("9001", "a", "A")))
        assert not run.ingest(decoded(webhook_summary("9002", "b", "B")))
        # A third user's summary that REST did not list (the listing has fewer users than summaries).
        assert run.ingest(decoded(webhook_summary("9003", "c", "C")))
        series = run.metrics()
        assert sessions(series, "poll", product="session") + sessions(series, "webhook", product="session") == 3


def decoded_realtime() -> Record:
    body = load_sample("session.user_qos")
    body["payload"]["account_id"] = ACCOUNT_ID
    body["payload"]["object"]["session_id"] = SESSION
    record = decode(body)
    assert isinstance(record, QosRecord)
    return record


async def test_no_shared_identity_counts_the_larger_side(tmp_path: Path) -> None:
    """REST left user_key and name empty (HIPAA, external users): matched by number, never counted twice."""
    async with rig(tmp_path) as r:
        r.fake.add(
            FakeInstance(ACCOUNT_ID, "session", SESSION, [rest_user("", ""), rest_user("", ""), rest_user("", "")])
        )
        run = await r.start(
            decoded(webhook_summary("1", "", "Ana")),
            decoded(webhook_summary("2", "", "Ben")),
        )
        await wait_for(finished(r, 1))
        series = run.metrics()
        assert sessions(series, "webhook", product="session") == 2
        assert sessions(series, "poll", product="session") == 1  # three listed, two already came by webhook


async def test_a_user_who_joined_twice_counts_twice(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "session", SESSION, [rest_user("a", "A"), rest_user("a", "A")]))
        run = await r.start(decoded(webhook_summary("1", "a", "A")), decoded(webhook_summary("2", "a", "A")))
        await wait_for(finished(r, 1))
        series = run.metrics()
        assert (sessions(series, "webhook", product="session"), sessions(series, "poll", product="session")) == (2, 0)


async def test_across_a_restart_in_either_order(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "session", SESSION, [rest_user("a", "A", LOGIN_ID), rest_user("b", "B")]))
        first = await r.start(decoded(webhook_summary("1", "a", "A")))
        await wait_for(lambda: r.clock() > NOON + 60)
        await r.stop(first)  # before the session was due: the webhook summary is in the state file only
        assert r.fake.calls == []
        second = await r.start()
        assert not second.ingest(decoded(webhook_summary("1", "a", "A")))  # Zoom's retry: a duplicate
        await wait_for(finished(r, 1))
        assert sessions(second.metrics(), "poll", product="session") == 1  # b only
        await r.stop(second)
        third = await r.start()  # polled before this restart: late webhooks are still duplicates
        assert not third.ingest(decoded(webhook_summary("2", "b", "B")))
        assert sessions(third.metrics(), "webhook", product="session") == 0


async def test_video_sdk_sessions_through_the_agent_process(tmp_path: Path) -> None:
    zoom = FakeZoom()
    fake = FakeZoomApi(zoom)
    fake.add(FakeInstance(ACCOUNT_ID, "session", SESSION, [rest_user("a", "A", LOGIN_ID), rest_user("b", "", "")]))
    async with serve_fake_zoom(zoom, extra=fake.routes):
        config = merge(base_config(), poller_config(zoom, tmp_path / "state", settle_seconds=1))
        agent = await asyncio.to_thread(AgentProcess, tmp_path, config)
        try:
            body = webhook_summary("16778241", "a", "A")
            assert (await asyncio.to_thread(agent.post_signed, _json(body), SECRET)).status_code == 200
            ended = {
                "event": "session.ended",
                "event_ts": 1761318911734,
                "payload": {"account_id": ACCOUNT_ID, "object": {"session_id": SESSION, "session_name": "x"}},
            }
            assert (await asyncio.to_thread(agent.post_signed, _json(ended), SECRET)).status_code == 200
            samples = await _scraped(agent, lambda s: total(s, "zoom_qss_poll_instances_total", outcome="polled") >= 1)
            assert sessions(samples, "webhook", product="session") == 1
            assert sessions(samples, "poll", product="session") == 1  # the guest, not "A" again
            assert total(samples, "zoom_qss_parse_errors_total", field="id") == 0
            retry = await asyncio.to_thread(agent.post_signed, _json(body), SECRET)
            assert retry.status_code == 200
            samples = parse_metrics(await asyncio.to_thread(agent.scrape_text))
            assert total(samples, "zoom_qss_webhook_requests_total", outcome="duplicate") == 1
            assert agent.process.poll() is None
        finally:
            await asyncio.to_thread(agent.kill)


async def _scraped(agent: AgentProcess, predicate: Callable[[Series], bool], within: float = 20.0) -> Series:
    try:
        async with asyncio.timeout(within):
            while not predicate(samples := parse_metrics(await asyncio.to_thread(agent.scrape_text))):  # noqa: ASYNC110 - polls another process's /metrics
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"/metrics did not get there; the agent said:\n{agent.log_text()}") from None
    return samples


def _json(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)
