"""qss_exporter.zoom.api against a fake Zoom over real HTTP, in simulated time (tests/sim_clock.py)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest

from qss_exporter.errors import BudgetExhausted, ZoomApiError, ZoomAuthError
from qss_exporter.zoom.api import (
    PAGE_TOKEN_LIFETIME,
    ZoomApi,
    encode_instance,
    limit_type,
    parse_retry_after,
)
from qss_exporter.zoom.oauth import TokenProvider
from qss_exporter.zoom.ratelimit import AccountLimits, Backoff, DailyBudget, MemoryLedger, SlidingWindow
from tests.fake_zoom import FakeZoom, serve_fake_zoom
from tests.fake_zoom_api import HEAVY, RESOURCE_INTENSIVE, Call, FakeInstance, FakeZoomApi, participants, per_window
from tests.sim_clock import SimClock

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()
UUID = "kT9w2Qx+Rj6pLm0sVbN4hA=="
SLASHED = "/q1W8xZ//Yt3aPe7LmKs0dQ=="


@dataclass
class Harness:
    clock: SimClock
    zoom: FakeZoom
    fake: FakeZoomApi
    client: httpx.AsyncClient
    responses: list[tuple[str, str]] = field(default_factory=list)
    limited: list[str] = field(default_factory=list)
    ledger: MemoryLedger = field(default_factory=MemoryLedger)

    def api(
        self,
        *,
        heavy: int = 10,
        resource_intensive: int = 10,
        budget: int = 1000,
        concurrency: int = 4,
        secret: str | None = None,
        timeout: float = 5.0,
    ) -> ZoomApi:
        clock = self.clock
        tokens = TokenProvider(
            self.client,
            self.zoom.url + "/oauth/token",
            self.zoom.account_id,
            self.zoom.client_id,
            secret or self.zoom.client_secret,
            clock=clock,
        )
        limits = AccountLimits(
            {
                "heavy": SlidingWindow(heavy, 1.0, clock=clock, sleep=clock.sleep),
                "resource_intensive": SlidingWindow(resource_intensive, 60.0, clock=clock, sleep=clock.sleep),
            },
            DailyBudget("acme", budget, self.ledger, clock=clock),
            concurrency,
        )
        return ZoomApi(
            self.client,
            self.zoom.url + "/v2",
            tokens,
            limits,
            clock=clock,
            sleep=clock.sleep,
            backoff=Backoff(1.0, 60.0, random.Random(7)),
            timeout=timeout,
            on_response=lambda endpoint, code: self.responses.append((endpoint, code)),
            on_rate_limited=self.limited.append,
        )


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    clock = SimClock(NOON)
    zoom = FakeZoom()
    fake = FakeZoomApi(zoom, clock=clock, sub_accounts={"SubAcct01"})
    async with (
        serve_fake_zoom(zoom, extra=fake.routes),
        clock.running(),
        httpx.AsyncClient(transport=clock.transport()) as client,
    ):
        yield Harness(clock, zoom, fake, client)


def meeting(fake: FakeZoomApi, uuid: str = UUID, count: int = 23, account: str | None = None) -> FakeInstance:
    return fake.add(FakeInstance(account or fake.zoom.account_id, "meeting", uuid, participants(count)))


# ------------------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("uuid", "encoded"),
    [
        ("kT9w2Qx+Rj6pLm0sVbN4hA==", "kT9w2Qx%2BRj6pLm0sVbN4hA%3D%3D"),
        ("Pz7/Lq2mTsWc9dKe1RbV0g==", "Pz7%2FLq2mTsWc9dKe1RbV0g%3D%3D"),
        ("/Lq2mTsWc9dKe1RbV0g==", "%252FLq2mTsWc9dKe1RbV0g%253D%253D"),
        ("ab//cd==", "ab%252F%252Fcd%253D%253D"),
        ("85746065432", "85746065432"),
    ],
)
def test_instance_uuids_are_encoded_once_or_twice(uuid: str, encoded: str) -> None:
    assert encode_instance(uuid) == encoded


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        (" 30 ", 30.0),
        ("Mon, 02 Mar 2026 12:00:10 GMT", 10.0),
        ("2026-03-03T00:00:00Z", 12 * 3600.0),
        ("2026-03-02T11:00:00Z", 0.0),  # in the past: retry now
        ("", None),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_or_a_date(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOON) == expected


@pytest.mark.parametrize(
    ("header", "message", "expected"),
    [
        ("QPS", "", "per_second"),
        ("Per-second-limit", "", "per_second"),
        ("Daily-limit", "", "daily"),
        ("per-minute", "", "per_minute"),
        (None, "You have reached the maximum daily rate limit for this API.", "daily"),
        (None, "You have reached the maximum per-second rate limit for this API. Try again later.", "per_second"),
        ("something-new", "", "other"),
        (None, "", "other"),
    ],
)
def test_rate_limit_types_are_a_closed_set(header: str | None, message: str, expected: str) -> None:
    assert limit_type(header, message) == expected


# ------------------------------------------------------------------------------ paging and paths


async def test_summaries_are_paged_ten_at_a_time_in_order(harness: Harness) -> None:
    meeting(harness.fake, count=23)
    listing = await harness.api().qos_summaries("meeting", harness.zoom.account_id, UUID)
    assert (listing.pages, listing.restarts) == (3, 0)
    assert [record.participant_id for record in listing.records] == [f"p{i}" for i in range(23)]
    assert listing.records[0].dedupe_key == ("qos_summary", harness.zoom.account_id, "meeting", UUID, "p0")
    assert listing.records[0].event == "meeting.participant_qos_summary"
    calls = harness.fake.calls
    assert [call.params.get("page_size") for call in calls] == ["10", "10", "10"]
    assert [call.params.get("next_page_token", "") for call in calls] == ["", "tok0", "tok1"]
    assert {call.endpoint for call in calls} == {"/metrics/meetings/{meetingId}/participants/qos_summary"}
    assert harness.zoom.requests[0][1] == "/oauth/token"  # the token came first, once
    assert len(harness.zoom.tokens) == 1
    assert harness.responses == [("/metrics/meetings/{meetingId}/participants/qos_summary", "200")] * 3


async def test_uuids_that_need_it_are_sent_double_encoded(harness: Harness) -> None:
    meeting(harness.fake, SLASHED, count=2)
    meeting(harness.fake, UUID, count=2)
    api = harness.api()
    assert len((await api.qos_summaries("meeting", harness.zoom.account_id, SLASHED)).records) == 2
    assert len((await api.qos_summaries("meeting", harness.zoom.account_id, UUID)).records) == 2
    assert [(call.instance, call.double_encoded, call.status) for call in harness.fake.calls] == [
        (SLASHED, True, 200),
        (UUID, False, 200),
    ]


async def test_webinar_session_and_master_account_paths(harness: Harness) -> None:
    fake, account = harness.fake, harness.zoom.account_id
    fake.add(FakeInstance(account, "webinar", UUID, participants(3, "webinar")))
    fake.add(FakeInstance(account, "session", "Sess/1==", participants(2, "session")))
    fake.add(FakeInstance("SubAcct01", "meeting", UUID, participants(4)))
    api = harness.api()
    assert len((await api.qos_summaries("webinar", account, UUID)).records) == 3
    session = await api.qos_summaries("session", account, "Sess/1==")
    # Video SDK users: REST's `id` is the Zoom login (empty for guests), so each gets an id of the agent's
    # own, and a `match` (user_key) shared with the webhooks (tests/sources/test_poller_matching.py).
    assert [r.participant_id[:5] for r in session.records] == ["rest:", "rest:"]
    assert len({r.participant_id for r in session.records}) == 2
    assert session.records[0].dedupe_key == (
        "qos_summary",
        account,
        "session",
        "Sess/1==",
        session.records[0].participant_id,
    )
    assert all(r.match.startswith("k:") for r in session.records)
    sub = await api.qos_summaries("meeting", "SubAcct01", UUID, sub_account="SubAcct01")
    assert {r.account_id for r in sub.records} == {"SubAcct01"}
    assert [(call.endpoint, call.account_id) for call in fake.calls] == [
        ("/metrics/webinars/{webinarId}/participants/qos_summary", account),
        ("/videosdk/sessions/{sessionId}/users/qos_summary", account),
        ("/accounts/{accountId}/metrics/meetings/{meetingId}/participants/qos_summary", "SubAcct01"),
    ]


async def test_an_expired_page_token_restarts_the_listing(harness: Harness) -> None:
    fake = harness.fake
    meeting(fake, count=23)
    expired = False

    async def expire_once(call: Call) -> None:
        nonlocal expired
        if call.params.get("next_page_token") and not expired:
            expired = True
            fake.page_token_lifetime = -1.0  # every token issued so far is now too old
        elif expired:
            fake.page_token_lifetime = 900.0

    fake.gate = expire_once
    listing = await harness.api().qos_summaries("meeting", harness.zoom.account_id, UUID)
    assert (len(listing.records), listing.pages, listing.restarts) == (23, 4, 1)
    assert [(c.params.get("next_page_token", ""), c.status) for c in fake.calls] == [
        ("", 200),
        ("tok0", 400),
        ("", 200),
        ("tok1", 200),
        ("tok2", 200),
    ]


async def test_a_page_token_older_than_its_lifetime_is_not_sent(harness: Harness) -> None:
    """A 429 asking to wait 20 minutes mid-listing: the page token would be refused by then, so start over."""
    fake = harness.fake
    meeting(fake, count=15)
    fake.inject(
        "qos_summary", 429, {"code": 429, "message": "slow"}, paged=True, x_ratelimit_type="QPS", retry_after="1200"
    )
    listing = await harness.api().qos_summaries("meeting", harness.zoom.account_id, UUID)
    assert (len(listing.records), listing.pages, listing.restarts) == (15, 3, 1)
    assert [(c.params.get("next_page_token", ""), c.status, c.at - NOON) for c in fake.calls] == [
        ("", 200, 0.0),
        ("tok0", 429, 0.0),
        ("", 200, 1200.0),  # the retry of "tok0" was never sent
        ("tok1", 200, 1200.0),
    ]
    assert PAGE_TOKEN_LIFETIME < 1200
    assert harness.limited == ["per_second"]


async def test_past_instances_are_listed_with_from_to_and_paging(harness: Harness) -> None:
    fake, account = harness.fake, harness.zoom.account_id
    for n in range(305):
        fake.add(FakeInstance(account, "meeting", f"m{n}==", [], ended_at=NOON - 3600 - n))
    fake.add(FakeInstance(account, "meeting", "old==", [], ended_at=NOON - 3 * 86400))
    fake.add(FakeInstance(account, "webinar", "w1==", [], ended_at=NOON - 60))
    api = harness.api()
    found = await api.past_instances("meeting", NOON - 86400, NOON)
    assert len(found) == 305
    assert "old==" not in found
    assert await api.past_instances("webinar", NOON - 86400, NOON) == ("w1==",)
    first = fake.calls[0]
    assert first.params == {
        "type": "past",
        "from": "2026-03-01 12:00:00",
        "to": "2026-03-02 12:00:00",
        "query_date_type": "end_time",
        "page_size": "300",
    }
    assert [(c.endpoint, c.label) for c in fake.calls] == [
        ("/metrics/meetings", RESOURCE_INTENSIVE),
        ("/metrics/meetings", RESOURCE_INTENSIVE),
        ("/metrics/webinars", RESOURCE_INTENSIVE),
    ]


# ------------------------------------------------------------------------------- errors and retries


@pytest.mark.parametrize(
    ("setup", "status", "code"),
    [
        ("not_ended", 404, 3001),
        ("not_subscribed", 400, 200),
        ("too_old", 400, 12702),
    ],
)
async def test_zoom_errors_carry_status_and_code(harness: Harness, setup: str, status: int, code: int) -> None:
    instance = meeting(harness.fake, count=2)
    if setup == "not_ended":
        instance.ended = False
    elif setup == "not_subscribed":
        harness.fake.not_subscribed.add("meeting")
    else:
        instance.too_old = True
    with pytest.raises(ZoomApiError) as caught:
        await harness.api().qos_summaries("meeting", harness.zoom.account_id, UUID)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert f"(Zoom code {code})" in str(caught.value)
    assert len(harness.fake.calls) == 1  # none of these is retried by the client


async def test_a_401_renews_the_token_once(harness: Harness) -> None:
    meeting(harness.fake, count=2)
    api = harness.api()
    await api.qos_summaries("meeting", harness.zoom.account_id, UUID)
    harness.zoom.revoked.add(harness.zoom.tokens[-1])  # expired or revoked on Zoom's side
    await api.qos_summaries("meeting", harness.zoom.account_id, UUID)
    assert [call.status for call in harness.fake.calls] == [200, 401, 200]
    assert len(harness.zoom.tokens) == 2
    # Refused again right after the renewal: an error, not a loop.
    harness.fake.inject("qos_summary", 401, {"code": 124, "message": "Invalid access token."}, times=2)
    with pytest.raises(ZoomApiError) as caught:
        await api.qos_summaries("meeting", harness.zoom.account_id, UUID)
    assert caught.value.status == 401
    assert len(harness.zoom.tokens) == 3


async def test_a_wrong_client_secret_is_an_auth_error(harness: Harness) -> None:
    meeting(harness.fake, count=2)
    with pytest.raises(ZoomAuthError) as caught:
        await harness.api(secret="wrong-secret").qos_summaries("meeting", harness.zoom.account_id, UUID)
    assert "wrong-secret" not in str(caught.value)
    assert harness.fake.calls == []


async def test_per_second_429_waits_retry_after_seconds_or_date(harness: Harness) -> None:
    fake = harness.fake
    meeting(fake, count=2)
    fake.inject("qos_summary", 429, {"code": 429, "message": "per-second"}, x_ratelimit_type="QPS", retry_after="3")
    fake.inject(
        "qos_summary",
        429,
        {"code": 429, "message": "per-second"},
        x_ratelimit_type="QPS",
        retry_after="Mon, 02 Mar 2026 12:00:30 GMT",
    )
    listing = await harness.api().qos_summaries("meeting", harness.zoom.account_id, UUID)
    assert len(listing.records) == 2
    assert [(c.status, c.at - NOON) for c in fake.calls] == [(429, 0.0), (429, 3.0), (200, 30.0)]
    assert harness.limited == ["per_second", "per_second"]


async def test_daily_429_stops_the_account_until_retry_after(harness: Harness) -> None:
    fake = harness.fake
    meeting(fake, count=2)
    fake.inject(
        "qos_summary",
        429,
        {"code": 429, "message": "You have reached the maximum daily rate limit for this API."},
        x_ratelimit_type="Daily-limit",
        retry_after="2026-03-03T00:00:00Z",
    )
    api = harness.api(budget=500)
    with pytest.raises(BudgetExhausted) as caught:
        await api.qos_summaries("meeting", harness.zoom.account_id, UUID)
    midnight = datetime(2026, 3, 3, tzinfo=UTC).timestamp()
    assert caught.value.resume_at == midnight
    assert api.limits.budget.used() == 500
    with pytest.raises(BudgetExhausted):  # no call is made before the limit resets
        await api.qos_summaries("meeting", harness.zoom.account_id, UUID)
    assert len(fake.calls) == 1
    await harness.clock.sleep(midnight - harness.clock())
    assert len((await api.qos_summaries("meeting", harness.zoom.account_id, UUID)).records) == 2
    assert harness.limited == ["daily"]


async def test_server_errors_back_off_with_jitter_then_give_up(harness: Harness) -> None:
    fake = harness.fake
    meeting(fake, count=2)
    fake.inject("qos_summary", 503, {"code": 503, "message": "unavailable"}, times=2)
    await harness.api().qos_summaries("meeting", harness.zoom.account_id, UUID)
    stamps = [c.at - NOON for c in fake.calls]
    assert [c.status for c in fake.calls] == [503, 503, 200]
    assert 0.5 <= stamps[1] - stamps[0] <= 1.0  # attempt 1: [0.5, 1] s
    assert 1.0 <= stamps[2] - stamps[1] <= 2.0  # attempt 2: [1, 2] s
    fake.inject("qos_summary", 500, {"message": "boom"}, times=10)
    with pytest.raises(ZoomApiError) as caught:
        await harness.api().qos_summaries("meeting", harness.zoom.account_id, UUID)
    assert caught.value.status == 500
    assert [c.status for c in fake.calls[3:]] == [500] * 4


async def test_slow_answers_time_out_as_transport_errors(harness: Harness) -> None:
    meeting(harness.fake, count=2)
    api = harness.api(timeout=0.05)
    await api.qos_summaries("meeting", harness.zoom.account_id, UUID)  # token fetched while the fake is fast
    harness.fake.delay = 0.3
    with pytest.raises(ZoomApiError) as caught:
        await api.qos_summaries("meeting", harness.zoom.account_id, UUID)
    assert caught.value.status == 0
    assert "timed out" in str(caught.value)
    assert harness.responses[-4:] == [("/metrics/meetings/{meetingId}/participants/qos_summary", "error")] * 4
    harness.fake.delay = 0.0


# ---------------------------------------------------------------------------------- rate limits


async def test_per_second_and_per_minute_limits_hold_at_the_server(harness: Harness) -> None:
    fake = harness.fake
    fake.delay = 0.02  # slow answers: calls overlap, and at most `concurrency` of them
    for n in range(30):
        meeting(fake, f"m{n}==", count=1)
    api = harness.api(heavy=4, resource_intensive=3, concurrency=3)

    async def everything() -> None:
        async with asyncio.TaskGroup() as group:
            for n in range(30):
                group.create_task(api.qos_summaries("meeting", harness.zoom.account_id, f"m{n}=="))
            for _ in range(7):
                group.create_task(api.past_instances("webinar", NOON - 3600, NOON))

    await everything()
    heavy = [c for c in fake.calls if c.label == HEAVY]
    listing = [c for c in fake.calls if c.label == RESOURCE_INTENSIVE]
    assert (len(heavy), len(listing)) == (30, 7)
    assert per_window(heavy, 1.0) == 4  # the limit, reached and never exceeded
    assert per_window(listing, 60.0) == 3
    assert heavy[-1].at - NOON >= 7 * 1.0  # 30 calls at 4/s take more than 7 s
    assert fake.most_in_flight == 3  # bounded concurrency, reached


async def test_the_daily_budget_is_never_exceeded(harness: Harness) -> None:
    fake = harness.fake
    for n in range(8):
        meeting(fake, f"m{n}==", count=1)
    api = harness.api(budget=5)
    for n in range(5):
        await api.qos_summaries("meeting", harness.zoom.account_id, f"m{n}==")
    for n in range(5, 8):
        with pytest.raises(BudgetExhausted) as caught:
            await api.qos_summaries("meeting", harness.zoom.account_id, f"m{n}==")
        assert caught.value.resume_at == datetime(2026, 3, 3, tzinfo=UTC).timestamp()
    assert (len(fake.calls), api.limits.budget.used()) == (5, 5)
