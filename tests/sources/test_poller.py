"""The REST poller end to end: real pipeline and store, a fake Zoom over real HTTP, simulated time.

Each test starts the agent's pipeline (an Agent that is not served), a poller built from the same
configuration, and the fake Zoom of tests/fake_zoom_api.py, all on one SimClock: waits for rate
windows, backoff, settle times and UTC midnights pass at once, while the fake server counts every
call at the simulated time it arrived.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from qss_exporter.app import Agent
from qss_exporter.config import Config, config_from_mapping
from qss_exporter.errors import ConfigError
from qss_exporter.outputs.prometheus import render
from qss_exporter.sources.poller import GAUGE_INTERVAL, Poller, build_poller
from qss_exporter.zoom.events import decode
from qss_exporter.zoom.records import InvalidEvent, QosRecord, Record, SummaryRecord, UnknownEvent, UrlValidation
from tests.conftest import (
    ACCOUNT_ID,
    SESSION_ACCOUNT_ID,
    AgentFactory,
    Series,
    base_config,
    merge,
    parse_metrics,
    total,
)
from tests.fake_zoom import FakeZoom, serve_fake_zoom
from tests.fake_zoom_api import (
    HEAVY,
    RESOURCE_INTENSIVE,
    Call,
    FakeInstance,
    FakeZoomApi,
    participants,
    per_day,
    per_window,
)
from tests.samples import load_sample
from tests.sim_clock import SimClock, wait_for

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2026, 3, 3, tzinfo=UTC).timestamp()
UUID = "kT9w2Qx+Rj6pLm0sVbN4hA=="
SUB = "SubAcct01"
SUMMARY = "/metrics/meetings/{meetingId}/participants/qos_summary"


# ------------------------------------------------------------------------------------------- rig


@dataclass
class Running:
    agent: Agent
    poller: Poller
    task: asyncio.Task[None]

    def metrics(self) -> Series:
        return parse_metrics(render(self.agent.store).decode())

    def ingest(self, record: Record) -> bool:
        return self.agent.pipeline.ingest(record, "webhook")


@dataclass
class Rig:
    clock: SimClock
    zoom: FakeZoom
    fake: FakeZoomApi
    config: Config
    runs: list[Running] = field(default_factory=list)

    async def start(self, *records: Record) -> Running:
        """A new agent pipeline and poller; `records` arrive by webhook before the poller starts.

        (Simulated time runs on whenever nothing is busy, so a test cannot hand in records "now"
        once the poller idles: records given here all arrive at the current simulated time.)
        """
        agent = Agent(self.config, self.clock, poll=False)
        poller = build_poller(
            self.config,
            agent.pipeline,
            agent.catalogue.api,
            clock=self.clock,
            sleep=self.clock.sleep,
            transport=self.clock.transport(),
            rng=random.Random(5),
        )
        assert poller is not None
        self.clock.busy.append(lambda: poller._state is not None and poller._state.busy > 0)
        for record in records:
            agent.pipeline.ingest(record, "webhook")
        running = Running(agent, poller, asyncio.create_task(poller.run()))
        self.runs.append(running)
        await wait_for(lambda: poller._state is not None and bool(poller._runs))
        return running

    async def stop(self, running: Running, *, crash: bool = False) -> None:
        running.task.cancel()
        await asyncio.gather(running.task, return_exceptions=True)
        await running.poller.close(flush=not crash)
        self.runs.remove(running)


def poller_config(zoom: FakeZoom, default_state_dir: Path, **poller: Any) -> dict[str, Any]:
    account = {"client_id": zoom.client_id, "client_secret": poller.pop("client_secret", zoom.client_secret)}
    account |= {"sub_accounts": poller.pop("sub_accounts", [])}
    accounts = copy.deepcopy(base_config()["accounts"])
    accounts[0] |= account
    return {
        "accounts": accounts,
        "zoom": {"api_base_url": zoom.url + "/v2", "oauth_token_url": zoom.url + "/oauth/token"},
        "poller": {"enabled": True, "state_dir": str(default_state_dir)} | poller,
    }


@asynccontextmanager
async def rig(tmp_path: Path, start: float = NOON, **poller: Any) -> AsyncIterator[Rig]:
    clock = SimClock(start)
    zoom = FakeZoom()
    fake = FakeZoomApi(zoom, clock=clock, sub_accounts={SUB})
    async with serve_fake_zoom(zoom, extra=fake.routes), clock.running():
        config = config_from_mapping(merge(base_config(), poller_config(zoom, tmp_path / "state", **poller)))
        built = Rig(clock, zoom, fake, config)
        try:
            yield built
        finally:
            for running in list(built.runs):
                await built.stop(running)


def event(name: str, uuid: str, participant: str, account: str = ACCOUNT_ID) -> Record:
    """A webhook sample with its instance, participant and account replaced, decoded."""
    body = load_sample(name)
    body["payload"]["account_id"] = account
    obj = body["payload"]["object"]
    if name.startswith("session."):
        obj["session_id"] = uuid
        # The per-session id is Zoom's own; what REST shares with it is user_key (tests/fake_zoom_api.py).
        obj["user"] |= {"id": f"session-{participant}", "user_key": participant}
    else:
        obj["uuid"] = uuid
        person = obj["participant"]
        person["user_id" if "user_id" in person else "participant_id"] = participant
    record = decode(body)
    assert isinstance(record, QosRecord | SummaryRecord)
    return record


def summary(uuid: str, participant: str, product: str = "meeting", account: str = ACCOUNT_ID) -> Record:
    name = {
        "meeting": "meeting.participant_qos_summary",
        "webinar": "webinar.participant_qos_summary",
        "session": "session.user_qos_summary",
    }[product]
    return event(name, uuid, participant, account)


def sessions(series: Series, source: str, **labels: str) -> float:
    return total(series, "zoom_qss_participant_sessions_total", source=source, **labels)


def polls(series: Series, outcome: str, product: str = "meeting") -> float:
    return total(series, "zoom_qss_poll_instances_total", account="acme", product=product, outcome=outcome)


def finished(rig: Rig, count: int) -> Callable[[], bool]:
    """All runs together have polled `count` instances to an end."""

    def check() -> bool:  # reads the family itself: conditions are checked every few milliseconds
        families = [run.agent.catalogue.api.polls for run in rig.runs]
        return sum(f.value(("acme", product, "polled")) for f in families for product in PRODUCTS) >= count

    return check


PRODUCTS = ("meeting", "webinar", "session")


def reached(rig: Rig, at: float) -> Callable[[], bool]:
    """The simulated clock has reached `at`."""
    return lambda: rig.clock() >= at


def gauge(run: Running, name: str) -> float:
    """The account's value of one of the poller's gauges, read from the family (cheap enough to poll)."""
    series = getattr(run.agent.catalogue.api, name).get(("acme",))
    return float(series.value) if series is not None else 0.0


def heavy(calls: list[Call]) -> list[Call]:
    return [call for call in calls if call.label == HEAVY]


# ------------------------------------------------------------------------------------ discovery


async def test_an_instance_is_polled_after_its_summary_settles_and_each_session_counts_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", UUID, participants(3)))
        # p0's real-time QoS, then p0 left: its summary came by webhook.
        run = await r.start(event("meeting.participant_qos", UUID, "p0"), summary(UUID, "p0"))
        await wait_for(finished(r, 1))
        await wait_for(lambda: gauge(run, "backlog") == 0)
        [call] = r.fake.calls
        assert NOON + 300 <= call.at <= NOON + 302  # settle_seconds after the last record, not before
        assert r.zoom.requests[0][1] == "/oauth/token"
        assert (call.endpoint, call.params, call.status) == (SUMMARY, {"page_size": "10"}, 200)
        assert not run.ingest(summary(UUID, "p1"))  # a late webhook for a polled participant: a duplicate
        series = run.metrics()
        assert sessions(series, "webhook") == 1
        assert sessions(series, "poll") == 2  # p1 and p2; p0 came by webhook
        assert total(series, "zoom_qss_events_total", source="poll", event="meeting.participant_qos_summary") == 2
        assert total(series, "zoom_qss_api_requests_total", account="acme", endpoint=SUMMARY, code="200") == 1
        assert total(series, "zoom_qss_oauth_token_requests_total", account="acme", outcome="ok") == 1
        assert total(series, "zoom_qss_api_daily_budget_used", account="acme") == 1
        assert total(series, "zoom_qss_api_daily_budget_limit", account="acme") == 10_000
        assert total(series, "zoom_qss_poll_backlog", account="acme") == 0


async def test_an_instance_without_a_summary_is_polled_after_idle_seconds(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", UUID, participants(2)))
        run = await r.start(event("meeting.participant_qos", UUID, "p0"))
        await wait_for(lambda: r.clock() > NOON + 600)
        assert total(run.metrics(), "zoom_qss_poll_backlog", account="acme") == 1
        assert total(run.metrics(), "zoom_qss_poll_oldest_pending_age_seconds", account="acme") == 0  # not due
        await wait_for(finished(r, 1))
        assert r.fake.calls[0].at >= NOON + 1800
        assert sessions(run.metrics(), "poll") == 2


async def test_a_meeting_ended_event_makes_the_instance_due_at_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", UUID, participants(2)))
        ended = decode(
            {
                "event": "meeting.ended",
                "event_ts": int(NOON * 1000),
                "payload": {"account_id": ACCOUNT_ID, "object": {"uuid": UUID, "id": 84521736902}},
            }
        )
        assert not isinstance(ended, InvalidEvent | UnknownEvent | UrlValidation)
        await r.start(summary(UUID, "p0"), ended)
        await wait_for(finished(r, 1))
        assert r.fake.calls[0].at <= NOON + 2  # not settle_seconds later: Zoom said it ended


async def test_webinars_video_sdk_sessions_and_sub_accounts_use_their_endpoints(tmp_path: Path) -> None:
    async with rig(tmp_path, sub_accounts=[SUB]) as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "webinar", "Pz7/Lq2mTsWc9dKe1RbV0g==", participants(2, "webinar")))
        r.fake.add(FakeInstance(ACCOUNT_ID, "session", "/Vb8n//Qk3RrWx2==", participants(2, "session")))
        r.fake.add(FakeInstance(SUB, "meeting", UUID, participants(2)))
        run = await r.start(
            summary("Pz7/Lq2mTsWc9dKe1RbV0g==", "p0", "webinar"),
            summary("/Vb8n//Qk3RrWx2==", "p0", "session"),
            summary(UUID, "p0", account=SUB),  # a sub-account's meeting, delivered to the master app
            summary("other==", "x", account="NotPolled"),  # an account without credentials: ignored
        )
        await wait_for(finished(r, 3))
        assert sorted((c.endpoint, c.account_id, c.double_encoded) for c in r.fake.calls) == [
            ("/accounts/{accountId}" + SUMMARY, SUB, False),
            ("/metrics/webinars/{webinarId}/participants/qos_summary", ACCOUNT_ID, False),
            ("/videosdk/sessions/{sessionId}/users/qos_summary", ACCOUNT_ID, True),
        ]
        series = run.metrics()
        assert sessions(series, "poll", account=SUB, product="meeting") == 1
        assert sessions(series, "poll", account="acme", product="webinar") == 1
        assert sessions(series, "poll", account="acme", product="session") == 1


# ----------------------------------------------------------------------------------- Zoom's errors


async def test_not_ended_is_asked_again_later(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        instance = r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", UUID, participants(2), ended=False))
        run = await r.start(summary(UUID, "p0"))
        await wait_for(lambda: run.agent.catalogue.api.polls.value(("acme", "meeting", "not_ended")) == 1)
        instance.ended = True
        await wait_for(finished(r, 1))
        first, second = r.fake.calls
        assert (first.status, second.status) == (404, 200)
        assert second.at - first.at == pytest.approx(900, abs=2)  # not_ended_retry_seconds


async def test_too_old_is_skipped_for_good(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", UUID, participants(2), too_old=True))
        run = await r.start(summary(UUID, "p0"))
        await wait_for(lambda: run.agent.catalogue.api.polls.value(("acme", "meeting", "too_old")) == 1)
        await wait_for(lambda: r.clock() > NOON + 5 * 86400)
        assert len(r.fake.calls) == 1
        assert total(run.metrics(), "zoom_qss_poll_backlog", account="acme") == 0


async def test_a_missing_summary_subscription_is_reported_once_with_the_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with rig(tmp_path, max_concurrency=1) as r:
        r.fake.not_subscribed.add("webinar")
        for n in range(3):
            r.fake.add(FakeInstance(ACCOUNT_ID, "webinar", f"w{n}==", participants(1, "webinar")))
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", UUID, participants(2)))
        with caplog.at_level(logging.ERROR, logger="qss_exporter.sources.poller"):
            run = await r.start(*(summary(f"w{n}==", "p0", "webinar") for n in range(3)), summary(UUID, "p0"))
            await wait_for(finished(r, 1))  # meetings are still polled
            await wait_for(lambda: r.clock() > NOON + 1800)
        [line] = [record for record in caplog.records if record.levelno >= logging.ERROR]
        assert "not subscribed" in line.getMessage()
        assert "Webinar Participant QoS Summary" in line.getMessage()
        assert "Event Subscription" in line.getMessage()  # the fix
        assert len([c for c in r.fake.calls if "webinars" in c.endpoint]) == 1  # the others waited, no calls
        r.fake.not_subscribed.clear()  # the operator added the subscription
        await wait_for(finished(r, 4))
        assert polls(run.metrics(), "not_subscribed", "webinar") == 1  # counted per call, not per instance
        webinar_calls = [c for c in r.fake.calls if "webinars" in c.endpoint]
        assert webinar_calls[1].at >= webinar_calls[0].at + 3600


async def test_server_errors_reschedule_the_instance_with_backoff(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", UUID, participants(2)))
        r.fake.inject("qos_summary", 502, {"message": "bad gateway"}, times=4)
        run = await r.start(summary(UUID, "p0"))
        await wait_for(finished(r, 1))
        statuses = [(c.status, c.at - NOON) for c in r.fake.calls]
        assert [status for status, _ in statuses] == [502, 502, 502, 502, 200]
        assert 30 <= statuses[4][1] - statuses[3][1] <= 61  # the instance's own backoff: [30, 60] s
        series = run.metrics()
        assert polls(series, "failed") == 1
        assert total(series, "zoom_qss_api_requests_total", endpoint=SUMMARY, code="502") == 4


# ------------------------------------------------------------------------------------------ OAuth


async def test_a_wrong_client_secret_is_one_error_line_a_metric_and_no_crash_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with rig(tmp_path, client_secret="not-the-secret") as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", UUID, participants(2)))
        with caplog.at_level(logging.INFO, logger="qss_exporter.sources.poller"):
            run = await r.start(summary(UUID, "p0"))
            await wait_for(lambda: r.clock() > NOON + 3 * 3600)
            token_requests = [request for request in r.zoom.requests if request[1] == "/oauth/token"]
            assert 3 <= len(token_requests) <= 10  # pauses grow 1, 2, 4 ... 60 min: not one a minute (180)
            errors = [record for record in caplog.records if record.levelno == logging.ERROR]
            assert len(errors) == 1
            assert "refused the OAuth client credentials" in errors[0].getMessage()
            assert "not-the-secret" not in caplog.text
            series = run.metrics()
            refused = total(series, "zoom_qss_oauth_token_requests_total", outcome="unauthorized")
            assert len(token_requests) - 1 <= refused <= len(token_requests)  # the last may be on its way back
            assert r.fake.calls == []
            assert not run.task.done()
            r.zoom.client_secret = "not-the-secret"  # the operator fixed it (here: on Zoom's side)
            await wait_for(finished(r, 1), within=10)
        assert "accepts the OAuth credentials again" in caplog.text


async def test_tokens_are_renewed_before_they_expire(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.zoom.expires_in = 600  # the fake refuses a token 600 s after its first use
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", "m0==", participants(1)))
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", "m1==", participants(1)))
        # m0 is due after settle_seconds (a summary was seen), m1 after idle_seconds (QoS only).
        run = await r.start(summary("m0==", "p0"), event("meeting.participant_qos", "m1==", "p0"))
        await wait_for(finished(r, 2))
        calls = [(c.instance, c.status, c.at - NOON) for c in r.fake.calls]
        assert calls[0] == ("m0==", 200, 300)
        # m1 is polled with a renewed token, never refused. (Its exact time is the discovery tests'
        # business: under heavy CPU load the simulated clock here has been seen to jump past 1800.)
        assert calls[1][:2] == ("m1==", 200)
        assert calls[1][2] >= 1800
        assert len(calls) == 2
        series = run.metrics()
        assert total(series, "zoom_qss_oauth_token_requests_total", outcome="ok") == 2  # renewed, not refused


# ------------------------------------------------------------------------------------ rate limits


async def test_per_second_and_daily_limits_hold_at_the_server_over_two_days(tmp_path: Path) -> None:
    settings = {
        "heavy_per_second": 3,
        "resource_intensive_per_minute": 1,
        "daily_budget": 30,
        "max_concurrency": 4,
        "lookback_hours": 24,
    }
    async with rig(tmp_path, **settings) as r:
        for n in range(40):
            r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", f"m{n}==", participants(12), ended_at=NOON - 60 * n))
        run = await r.start()
        await wait_for(finished(r, 40), within=30)
        await wait_for(lambda: gauge(run, "backlog") == 0)
        calls = r.fake.calls
        counted = [c for c in calls if c.label in (HEAVY, RESOURCE_INTENSIVE)]
        days = per_day(counted)
        assert max(days.values()) == 30  # the daily budget, used up and never exceeded
        assert len(days) >= 3  # 40 instances x 2 pages + sweeps need three days at 30 calls a day
        assert per_window(heavy(calls), 1.0) == 3
        assert per_window([c for c in calls if c.label == RESOURCE_INTENSIVE], 60.0) == 1
        assert all(c.status == 200 for c in calls)
        series = run.metrics()
        assert sessions(series, "poll") == 40 * 12
        # Each call is counted before it is sent, so the gauge may be one call ahead of what arrived.
        assert total(series, "zoom_qss_api_daily_budget_used", account="acme") >= days[max(days)]
        assert total(series, "zoom_qss_poll_backlog", account="acme") == 0


async def test_a_daily_429_pauses_the_account_until_zoom_says(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        for n in range(3):
            r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", f"m{n}==", participants(1)))
        r.fake.inject(
            "qos_summary",
            429,
            {"code": 429, "message": "You have reached the maximum daily rate limit for this API."},
            x_ratelimit_type="Daily-limit",
            retry_after="2026-03-03T06:00:00Z",
        )
        run = await r.start(*(summary(f"m{n}==", "p0") for n in range(3)))
        await wait_for(lambda: run.agent.catalogue.api.rate_limited.value(("acme", "daily")) == 1)
        await wait_for(lambda: gauge(run, "budget_used") == 10_000)  # Zoom said the day is over
        await wait_for(finished(r, 3))
        [limited] = [c for c in r.fake.calls if c.status == 429]
        later = [c.at for c in r.fake.calls if c.at > limited.at]  # calls already in flight may finish
        assert later
        assert min(later) >= MIDNIGHT + 6 * 3600  # nothing new until Zoom's Retry-After


async def test_a_daily_429_stops_the_calls_queued_behind_the_per_second_window(tmp_path: Path) -> None:
    """Issue 12: calls already waiting for the per-second window were still sent after Zoom's daily 429."""
    async with rig(tmp_path, heavy_per_second=1, max_concurrency=4) as r:
        for n in range(4):
            r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", f"m{n}==", participants(1)))
        r.fake.inject(
            "qos_summary",
            429,
            {"code": 429, "message": "You have reached the maximum daily rate limit for this API."},
            x_ratelimit_type="Daily-limit",
            retry_after="2026-03-03T06:00:00Z",
        )
        run = await r.start(*(summary(f"m{n}==", "p0") for n in range(4)))
        await wait_for(finished(r, 4))
        [limited] = [c for c in r.fake.calls if c.status == 429]
        assert limited.at < MIDNIGHT
        # The four calls were queued together, one a second; none may follow the daily 429 before Zoom's time.
        assert [c.at for c in r.fake.calls if limited.at < c.at < MIDNIGHT + 6 * 3600] == []
        assert len(heavy(r.fake.calls)) == 5  # the refused call and four polls after the pause
        assert polls(run.metrics(), "polled") == 4


@pytest.mark.parametrize("cause", ["daily_budget", "credentials"])
async def test_backlog_gauges_keep_moving_while_the_account_is_paused(tmp_path: Path, cause: str) -> None:
    """Issue 12: while an account was paused (budget spent, credentials refused) the backlog gauges stood
    still, so the documented alert on the oldest pending age could not fire until the pause ended."""
    settings = {"daily_budget": 1} if cause == "daily_budget" else {"client_secret": "not-the-secret"}
    async with rig(tmp_path, **settings) as r:
        for n in range(2):
            r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", f"m{n}==", participants(1)))
        run = await r.start(*(summary(f"m{n}==", "p0") for n in range(2)))
        due = NOON + 300  # settle_seconds after the summaries
        lags = []
        for hour in range(1, 4):
            for minute in range(0, 60, 7):
                await wait_for(reached(r, due + hour * 3600 + minute * 60))
                age = gauge(run, "oldest_pending_age")
                lags.append(r.clock() - due - age)
        assert r.clock() < MIDNIGHT  # still paused: the budget returns at midnight, the secret is still wrong
        assert gauge(run, "backlog") == (1 if cause == "daily_budget" else 2)
        # Refreshed every GAUGE_INTERVAL (15 s) of the pause, not only when it ends (before: lags of up to the
        # whole pause, hours). Every sample: the simulated clock no longer leaps past a sleep (test_sim_clock.py).
        assert max(lags) <= GAUGE_INTERVAL, lags
        assert gauge(run, "oldest_pending_age") >= 3 * 3600  # the documented alert (> 3600) fires


# ------------------------------------------------------------------------------- look-back sweep


async def test_the_look_back_sweep_finds_what_the_agent_never_saw(tmp_path: Path) -> None:
    async with rig(tmp_path, lookback_hours=24, sub_accounts=[SUB]) as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", "m1==", participants(2), ended_at=NOON - 7200))
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", "m2==", participants(1), ended_at=NOON - 600))
        r.fake.add(FakeInstance(ACCOUNT_ID, "webinar", "w1==", participants(3, "webinar"), ended_at=NOON - 60))
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", "old==", participants(1), ended_at=NOON - 2 * 86400))
        r.fake.add(FakeInstance(SUB, "meeting", "s1==", participants(1), ended_at=NOON - 100))
        run = await r.start()
        await wait_for(finished(r, 4))
        lists = [c for c in r.fake.calls if c.label == RESOURCE_INTENSIVE]
        assert [(c.endpoint, c.account_id) for c in lists] == [
            ("/metrics/meetings", ACCOUNT_ID),
            ("/metrics/webinars", ACCOUNT_ID),
            ("/accounts/{accountId}/metrics/meetings", SUB),
            ("/accounts/{accountId}/metrics/webinars", SUB),
        ]
        assert {(c.params["type"], c.params["from"], c.params["to"]) for c in lists} == {
            ("past", "2026-03-01 12:00:00", "2026-03-02 12:00:00")
        }
        assert sorted(c.instance or "" for c in heavy(r.fake.calls)) == ["m1==", "m2==", "s1==", "w1=="]
        assert sessions(run.metrics(), "poll") == 7
        # The next sweep starts where this one ended (less an hour of overlap), and repeats nothing.
        await wait_for(lambda: len([c for c in r.fake.calls if c.label == RESOURCE_INTENSIVE]) >= 8)
        second = [c for c in r.fake.calls if c.label == RESOURCE_INTENSIVE][4]
        assert (second.params["from"], second.params["to"]) == ("2026-03-02 11:00:00", "2026-03-02 13:00:00")
        assert len(heavy(r.fake.calls)) == 4


# ------------------------------------------------------------------------------------- restarts


async def test_a_restart_in_the_middle_of_a_backlog_resumes_without_repeats_or_gaps(tmp_path: Path) -> None:
    async with rig(tmp_path, lookback_hours=24, max_concurrency=1) as r:
        names = [f"m{n:02}==" for n in range(12)]
        for n, name in enumerate(names):
            r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", name, participants(2), ended_at=NOON - 1000 + n))
        release = asyncio.Event()
        arrived: list[str] = []

        async def hold_the_sixth(call: Call) -> None:
            arrived.append(call.instance or "")
            if len(set(arrived)) == 6 and not release.is_set():
                await release.wait()

        r.fake.gate = hold_the_sixth
        first = await r.start()
        await wait_for(lambda: len(set(arrived)) == 6)
        before = sessions(first.metrics(), "poll")
        await r.stop(first, crash=True)  # killed while the sixth listing is in flight
        release.set()
        assert before == 5 * 2

        second = await r.start()
        await wait_for(finished(r, 7))
        await wait_for(lambda: gauge(second, "backlog") == 0)
        await r.stop(second)
        per_instance = {name: [c.status for c in heavy(r.fake.calls) if c.instance == name] for name in names}
        interrupted = sorted(set(arrived), key=arrived.index)[5]
        for name in names:
            expected = 2 if name == interrupted else 1  # only the interrupted listing is asked for again
            assert len(per_instance[name]) == expected, (name, per_instance[name])
        assert before + sessions(second.metrics(), "poll") == 12 * 2  # every session once: no repeats, no gaps
        # The budget spent before the restart still counts: one count per call (the held one included), plus
        # at most one counted just before the stop and never sent.
        used = total(second.metrics(), "zoom_qss_api_daily_budget_used", account="acme")
        assert len(r.fake.calls) <= used <= len(r.fake.calls) + 1


async def test_sessions_counted_by_webhook_before_a_restart_are_not_counted_again(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", UUID, participants(3)))
        first = await r.start(summary(UUID, "p0"))
        await wait_for(lambda: r.clock() > NOON + 60)
        assert sessions(first.metrics(), "webhook") == 1
        await r.stop(first)  # before the meeting was due
        assert r.fake.calls == []

        second = await r.start()
        assert not second.ingest(summary(UUID, "p0"))  # Zoom's retry of p0 after the restart: a duplicate
        await wait_for(finished(r, 1))
        series = second.metrics()
        assert sessions(series, "poll") == 2  # p1 and p2 only
        assert sessions(series, "webhook") == 0


async def test_an_unwritable_state_directory_is_a_warning_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    async with rig(tmp_path, state_dir=str(blocker / "state")) as r:
        r.fake.add(FakeInstance(ACCOUNT_ID, "meeting", UUID, participants(2)))
        with caplog.at_level(logging.WARNING, logger="qss_exporter.state"):
            await r.start(summary(UUID, "p0"))
        assert "keeping progress in memory only" in caplog.text
        await wait_for(finished(r, 1))


# ------------------------------------------------------------------------------------ configuration


def test_the_poller_is_off_unless_enabled_and_needs_credentials() -> None:
    config = config_from_mapping(base_config())
    assert Agent(config).poller is None
    credentials = merge(base_config(), {"poller": {"enabled": True}})
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(credentials)
    assert caught.value.problems == [
        "poller.enabled: needs at least one account with client_id and client_secret (the poller's OAuth credentials)"
    ]
    # Sub-accounts need no credentials: they also bind webhook events to their master account
    # (docs/security.md). The poller polls only accounts with credentials (and their sub-accounts).
    with_sub = merge(base_config(), {"poller": {"enabled": True}})
    with_sub["accounts"][0]["sub_accounts"] = ["S1"]
    with_sub["accounts"][1] |= {"client_id": "c", "client_secret": "s"}
    assert config_from_mapping(with_sub).accounts[0].sub_accounts == ("S1",)
    twice = copy.deepcopy(base_config())
    for account in twice["accounts"]:
        account |= {"client_id": "c", "client_secret": "s", "sub_accounts": ["S1"]}
    twice["accounts"][0]["sub_accounts"].append(SESSION_ACCOUNT_ID)  # a configured account is no sub-account
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(twice)
    assert caught.value.problems == [
        f"accounts[0].sub_accounts[1]: duplicate of accounts[1].account_id ('{SESSION_ACCOUNT_ID}')",
        "accounts[1].sub_accounts[0]: duplicate of accounts[0].sub_accounts[0] ('S1')",
    ]


# ------------------------------------------------------------------------- the agent, over HTTP


async def test_the_agent_polls_beside_webhooks_and_never_blocks_them(start_agent: AgentFactory, tmp_path: Path) -> None:
    zoom = FakeZoom()
    fake = FakeZoomApi(zoom, clock=time.time)
    fake.add(FakeInstance(ACCOUNT_ID, "meeting", UUID, participants(3)))
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold(call: Call) -> None:
        held.set()
        await release.wait()

    fake.gate = hold
    async with serve_fake_zoom(zoom, extra=fake.routes):
        running = await start_agent(**poller_config(zoom, tmp_path / "state"))
        poller = running.agent.poller
        assert poller is not None
        body = load_sample("meeting.participant_qos_summary")
        body["payload"]["object"]["participant"]["participant_id"] = "p0"
        assert (await running.post(body)).status_code == 200
        running.clock.advance(400)  # the meeting has been quiet for settle_seconds
        await asyncio.wait_for(held.wait(), timeout=10)  # the poller's call is in flight, held by Zoom
        started = time.monotonic()
        other = load_sample("meeting.participant_qos")
        assert (await running.post(other)).status_code == 200
        assert time.monotonic() - started < 0.5  # webhook handling does not wait for the poller
        release.set()
        async with asyncio.timeout(10):
            while sessions(series := await running.scrape(), "poll") < 2:  # noqa: ASYNC110 - polls /metrics
                await asyncio.sleep(0.02)
        assert sessions(series, "webhook") == 1
        assert total(series, "zoom_qss_api_requests_total", account="acme", endpoint=SUMMARY, code="200") == 1
        assert total(series, "zoom_qss_oauth_token_requests_total", account="acme", outcome="ok") == 1
        running.agent.stop()
        assert running.task is not None
        await asyncio.wait_for(running.task, timeout=15)
    assert (tmp_path / "state" / "poller.sqlite3").is_file()
