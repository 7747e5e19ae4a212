"""Zoom's REST endpoints the poller uses, faked over real HTTP beside tests/fake_zoom.py's token endpoint.

`serve_fake_zoom(fake, extra=api.routes)` adds them under `/v2`: the three `qos_summary` listings
and `/metrics/meetings|webinars` (also under `/accounts/{accountId}` for sub-accounts), with Zoom's
paging, page tokens that expire, its error bodies, and injectable failures (401 by revoking tokens,
429 of any type, 5xx, slow answers). Every call is recorded with the fake clock's time, so tests
count calls per time window the way Zoom would.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fake_zoom import FakeZoom

SAMPLES = Path(__file__).parent / "testdata" / "zoom"
HEAVY, RESOURCE_INTENSIVE = "heavy", "resource_intensive"
_LIST_KEYS = {"meeting": "meetings", "webinar": "webinars"}
_SUMMARY = {
    "meetings": ("meeting", "participants"),
    "webinars": ("webinar", "participants"),
    "sessions": ("session", "users"),
}


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def participants(count: int, product: str = "meeting", prefix: str = "p") -> list[dict[str, Any]]:
    """`count` REST summary items shaped like Zoom's sample, with distinct per-instance ids.

    Video SDK users have no per-instance id in REST (`id` is the Zoom login, "" for guests): they are
    told apart by `user_key` (`{prefix}{index}`, as tests/sources/test_poller.py's `event` sets it).
    """
    if product == "session":
        template = sample("qos_summary.videosdk_sessions.json")["users"][0]
        return [
            copy.deepcopy(template) | {"id": "", "user_key": f"{prefix}{index}", "name": f"User {index}"}
            for index in range(count)
        ]
    name = "qos_summary.webinars.json" if product == "webinar" else "qos_summary.meetings.json"
    template = sample(name)["participants"][0]
    return [copy.deepcopy(template) | {"participant_id": f"{prefix}{index}"} for index in range(count)]


@dataclass
class FakeInstance:
    account_id: str
    product: str
    uuid: str
    items: list[dict[str, Any]]
    ended: bool = True
    ended_at: float = 0.0
    too_old: bool = False


@dataclass(frozen=True)
class Call:
    at: float  # the fake clock when the request arrived
    account_id: str  # whose data: the sub-account of a master-account path, else the app's account
    endpoint: str  # templated, e.g. /metrics/meetings/{meetingId}/participants/qos_summary
    label: str  # heavy or resource_intensive
    instance: str | None
    params: dict[str, str]
    status: int
    double_encoded: bool


@dataclass
class Injection:
    endpoint: str  # substring of the templated endpoint ("" for any)
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    paged: bool = False  # only calls that carry a next_page_token


@dataclass
class FakeZoomApi:
    zoom: FakeZoom
    clock: Callable[[], float] = time.time
    sub_accounts: set[str] = field(default_factory=set)
    instances: dict[tuple[str, str, str], FakeInstance] = field(default_factory=dict)
    not_subscribed: set[str] = field(default_factory=set)  # products answered 400 / code 200
    injections: list[Injection] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    page_token_lifetime: float = 900.0
    delay: float = 0.0  # real seconds before every answer ("slow answers")
    gate: Callable[[Call], Awaitable[None]] | None = None  # awaited before answering a summary call
    in_flight: int = 0
    most_in_flight: int = 0  # the most requests answered at once
    _token_seen: dict[str, float] = field(default_factory=dict)  # access token -> first use (≈ issue time)
    _page_tokens: dict[str, tuple[str, int, float]] = field(default_factory=dict)  # token -> (listing, offset, issued)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def add(self, instance: FakeInstance) -> FakeInstance:
        self.instances[instance.account_id, instance.product, instance.uuid] = instance
        return instance

    def inject(
        self, endpoint: str, status: int, body: dict[str, Any], times: int = 1, paged: bool = False, **headers: str
    ) -> None:
        """Answer the next `times` calls to endpoints containing `endpoint` with this (headers: x_ratelimit_type=…)."""
        named = {name.replace("_", "-"): value for name, value in headers.items()}
        self.injections.append(Injection(endpoint, status, body, named, times, paged))

    def summary_calls(self, instance: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.label == HEAVY and (instance is None or c.instance == instance)]

    def routes(self, zoom: FakeZoom) -> list[Route]:
        return [Route("/v2/{rest:path}", self._handle, methods=["GET"])]

    # --------------------------------------------------------------------------------- handling

    async def _handle(self, request: Request) -> Response:
        raw = request.scope["raw_path"].decode().split("?")[0].removeprefix("/v2")
        segments = raw.split("/")[1:]
        account_id = self.zoom.account_id
        if segments[:1] == ["accounts"] and len(segments) > 2:
            account_id = unquote(segments[1])
            segments = segments[2:]
            master = True
        else:
            master = False
        params = dict(request.query_params)
        endpoint, label, instance, double = self._route(segments)
        if master:
            endpoint = "/accounts/{accountId}" + endpoint
        call = Call(self.clock(), account_id, endpoint, label, instance, params, 0, double)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            response = await self._answer(request, call, segments, master)
            self.calls.append(
                Call(call.at, account_id, endpoint, label, instance, params, response.status_code, double)
            )
            if self.delay:
                await asyncio.sleep(self.delay)
            return response
        finally:
            self.in_flight -= 1

    def _route(self, segments: list[str]) -> tuple[str, str, str | None, bool]:
        if len(segments) == 2 and segments[0] == "metrics" and segments[1] in ("meetings", "webinars"):
            return f"/metrics/{segments[1]}", RESOURCE_INTENSIVE, None, False
        if len(segments) == 5 and segments[3:] in (["participants", "qos_summary"], ["users", "qos_summary"]):
            once = unquote(segments[2])
            double = "%" in once  # real UUIDs hold no '%': one came encoded twice
            uuid = unquote(once) if double else once
            kind = segments[1]
            name = {"meetings": "{meetingId}", "webinars": "{webinarId}", "sessions": "{sessionId}"}.get(kind, "{id}")
            return f"/{segments[0]}/{kind}/{name}/{segments[3]}/qos_summary", HEAVY, uuid, double
        return "/" + "/".join(segments), "other", None, False

    async def _answer(self, request: Request, call: Call, segments: list[str], master: bool) -> Response:
        authorization = request.headers.get("authorization") or ""
        if not self.zoom.valid(authorization):
            return JSONResponse({"code": 124, "message": "Invalid access token."}, status_code=401)
        first_use = self._token_seen.setdefault(authorization, self.clock())
        if self.clock() - first_use >= self.zoom.expires_in:
            return JSONResponse({"code": 124, "message": "Access token is expired."}, status_code=401)
        if master and call.account_id not in self.sub_accounts:
            return JSONResponse(
                {"code": 1001, "message": "User does not exist or does not belong to this account."}, 404
            )
        for injection in self.injections:
            if injection.paged and not call.params.get("next_page_token"):
                continue
            if injection.times > 0 and injection.endpoint in call.endpoint:
                injection.times -= 1
                return JSONResponse(injection.body, status_code=injection.status, headers=injection.headers)
        if call.label == RESOURCE_INTENSIVE:
            return self._list(call, segments[1])
        if call.label == HEAVY and call.instance is not None:
            if self.gate is not None:
                await self.gate(call)
            return self._summary(call, segments[1])
        return JSONResponse({"code": 404, "message": "No such endpoint"}, status_code=404)

    def _page(self, listing: str, items: list[Any], call: Call, maximum: int) -> tuple[list[Any], str] | Response:
        size = int(call.params.get("page_size", "1" if maximum == 10 else "30"))
        if not 1 <= size <= maximum:
            return JSONResponse({"code": 300, "message": f"Invalid page_size: {size}"}, status_code=400)
        offset = 0
        token = call.params.get("next_page_token")
        if token:
            known = self._page_tokens.get(token)
            if known is None or known[0] != listing or self.clock() - known[2] > self.page_token_lifetime:
                return JSONResponse({"code": 300, "message": "The next page token is invalid or expired."}, 400)
            offset = known[1]
        page = items[offset : offset + size]
        next_token = ""
        if offset + size < len(items):
            next_token = f"tok{next(self._counter)}"
            self._page_tokens[next_token] = (listing, offset + size, self.clock())
        return page, next_token

    def _summary(self, call: Call, kind: str) -> Response:
        product, key = _SUMMARY[kind]
        assert call.instance is not None
        if product in self.not_subscribed:
            return JSONResponse(sample("error.400_qss_not_subscribed.json"), status_code=400)
        instance = self.instances.get((call.account_id, product, call.instance))
        wrongly_encoded = call.double_encoded != (call.instance.startswith("/") or "//" in call.instance)
        if instance is None or not instance.ended or wrongly_encoded:
            return JSONResponse({"code": 3001, "message": "Meeting does not exist: not ended or invalid."}, 404)
        if instance.too_old:
            return JSONResponse({"code": 12702, "message": "Can not access a meeting a year ago."}, 400)
        paged = self._page(f"summary:{call.account_id}:{product}:{call.instance}", instance.items, call, 10)
        if isinstance(paged, Response):
            return paged
        items, token = paged
        return JSONResponse({"page_size": len(items), "next_page_token": token, key: items})

    def _list(self, call: Call, kind: str) -> Response:
        product = "meeting" if kind == "meetings" else "webinar"
        if call.params.get("type") != "past" or "from" not in call.params or "to" not in call.params:
            return JSONResponse({"code": 300, "message": "type=past, from and to are required"}, status_code=400)
        start, end = (_parse(call.params[name]) for name in ("from", "to"))
        if end - start > 31 * 86400:
            return JSONResponse({"code": 300, "message": "The date range can not exceed one month."}, status_code=400)
        found = [
            {"uuid": i.uuid, "id": 1000 + n, "topic": "synthetic"}
            for n, i in enumerate(self.instances.values())
            if i.account_id == call.account_id and i.product == product and i.ended and start <= i.ended_at <= end
        ]
        listing = f"list:{call.account_id}:{product}:{call.params['from']}:{call.params['to']}"
        paged = self._page(listing, found, call, 300)
        if isinstance(paged, Response):
            return paged
        items, token = paged
        return JSONResponse({"page_size": len(items), "next_page_token": token, _LIST_KEYS[product]: items})


def _parse(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def per_window(calls: list[Call], window: float) -> int:
    """The most calls whose arrival falls within any `window` seconds (a sliding window)."""
    stamps = sorted(call.at for call in calls)
    most, first = 0, 0
    for last, stamp in enumerate(stamps):
        while stamps[first] <= stamp - window:
            first += 1
        most = max(most, last - first + 1)
    return most


def per_day(calls: list[Call]) -> dict[str, int]:
    days: dict[str, int] = {}
    for call in calls:
        day = datetime.fromtimestamp(call.at, UTC).strftime("%Y-%m-%d")
        days[day] = days.get(day, 0) + 1
    return days
