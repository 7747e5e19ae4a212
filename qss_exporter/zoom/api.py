"""Zoom's REST API as the poller uses it: bearer token, client-side limits, retries, paging, typed results.

Every httpx exception and every non-2xx answer becomes a ZoomApiError here, in `_mapped_errors` and
`_error`: the one place that knows httpx's exception tree, as httpx's own `map_httpcore_exceptions`
is for httpcore. Nothing above this module catches `httpx.*`, and no JSON dict leaves it (pages are
decoded into SummaryRecords by zoom/events.py). Tokens are never logged.

Retries, in one place: a 401 renews the token once; a 429 waits for `Retry-After` (seconds or a
date) or, for a daily limit, stops the account until the limit resets; 5xx answers and transport
errors back off exponentially with jitter. Each attempt is a call against the limits.
"""

from __future__ import annotations

import contextlib
import email.utils
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx
import orjson

from qss_exporter.errors import BudgetExhausted, ZoomApiError
from qss_exporter.zoom.oauth import AccessToken, TokenProvider
from qss_exporter.zoom.ratelimit import AccountLimits, Backoff, Label
from qss_exporter.zoom.records import InvalidEvent, Product, SummaryRecord
from qss_exporter.zoom.summaries import decode_rest_summary

__all__ = [
    "LIMIT_TYPES",
    "PAGE_SIZE",
    "PAGE_TOKEN_LIFETIME",
    "ListedProduct",
    "SummaryListing",
    "ZoomApi",
    "encode_instance",
    "limit_type",
    "parse_retry_after",
]

PAGE_SIZE = 10  # the maximum the qos_summary endpoints accept
LIST_PAGE_SIZE = 300  # the maximum of /metrics/meetings and /metrics/webinars
PAGE_TOKEN_LIFETIME = 14 * 60.0  # Zoom's next_page_token expires after 15 minutes; keep a minute spare
MAX_LISTING_RESTARTS = 3
LIMIT_TYPES = ("per_second", "per_minute", "daily", "other")

ListedProduct = Literal["meeting", "webinar"]
_MASTER = "/accounts/{accountId}"
# product -> (endpoint template, path parameter, list key)
_SUMMARIES: dict[Product, tuple[str, str, str]] = {
    "meeting": ("/metrics/meetings/{meetingId}/participants/qos_summary", "{meetingId}", "participants"),
    "webinar": ("/metrics/webinars/{webinarId}/participants/qos_summary", "{webinarId}", "participants"),
    "session": ("/videosdk/sessions/{sessionId}/users/qos_summary", "{sessionId}", "users"),
}
_LISTS: dict[ListedProduct, tuple[str, str]] = {
    "meeting": ("/metrics/meetings", "meetings"),
    "webinar": ("/metrics/webinars", "webinars"),
}


def encode_instance(uuid: str) -> str:
    """A meeting / webinar / session UUID as a path segment.

    Always URL-encoded (`+`, `/`, `=`); twice when it starts with `/` or contains `//`, as Zoom asks.
    """
    once = quote(uuid, safe="")
    return quote(once, safe="") if uuid.startswith("/") or "//" in uuid else once


def parse_retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from `now`: integer seconds, an HTTP date or an ISO-8601 time; None if unusable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    moment: datetime | None = None
    with contextlib.suppress(TypeError, ValueError):
        moment = email.utils.parsedate_to_datetime(text)
    if moment is None:
        with contextlib.suppress(ValueError):
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def limit_type(header: str | None, message: str = "") -> str:
    """`X-RateLimit-Type` (its values are not documented today) reduced to a closed set for a label."""
    text = (header or "").lower()
    if "day" in text or "daily" in text or (not text and "daily" in message.lower()):
        return "daily"
    if "qps" in text or "second" in text or (not text and "per-second" in message.lower()):
        return "per_second"
    if "minute" in text:
        return "per_minute"
    return "other"


@dataclass(frozen=True, slots=True)
class SummaryListing:
    """Every participant summary of one instance, read to the last page."""

    records: tuple[SummaryRecord, ...]
    invalid: tuple[InvalidEvent, ...]  # items that were not usable summaries
    pages: int  # pages fetched, restarts included
    restarts: int  # times the listing started over because a page token had expired


class _PageTokenTooOld(Exception):
    """The page token would be refused by now: start the listing over."""


@contextlib.contextmanager
def _mapped_errors(url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as error:
        raise ZoomApiError(0, url, f"timed out ({type(error).__name__})") from None
    except httpx.HTTPError as error:
        raise ZoomApiError(0, url, f"transport error: {type(error).__name__}: {error}") from None


def _error(response: httpx.Response, url: str, now: float) -> ZoomApiError:
    code: int | None = None
    message = f"HTTP {response.status_code}"
    with contextlib.suppress(orjson.JSONDecodeError):
        body = orjson.loads(response.content)
        if isinstance(body, dict):
            raw_code = body.get("code")
            code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
            if isinstance(body.get("message"), str):
                message = body["message"][:300]
    if code is not None:
        message += f" (Zoom code {code})"
    if tracking := response.headers.get("x-zm-trackingid"):  # Zoom support asks for it
        message += f" [tracking id {tracking}]"
    return ZoomApiError(
        response.status_code,
        url,
        message,
        code=code,
        rate_limit_type=response.headers.get("x-ratelimit-type"),
        retry_after=parse_retry_after(response.headers.get("retry-after"), now),
    )


def _page_token_refused(error: ZoomApiError) -> bool:
    text = str(error).lower()
    return error.status in (400, 404) and (error.code == 300 or "next page token" in text or "next_page_token" in text)


def _utc(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S")


class ZoomApi:
    """One account's REST client. `on_response(endpoint, code)` and `on_rate_limited(limit_type)` feed self-metrics.

    `endpoint` is the templated path (`/metrics/meetings/{meetingId}/participants/qos_summary`), so
    the label has a handful of values; `code` is the HTTP status, or `error` for a transport failure.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        tokens: TokenProvider,
        limits: AccountLimits,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        backoff: Backoff,
        max_attempts: int = 4,
        timeout: float = 30.0,
        on_response: Callable[[str, str], None] = lambda endpoint, code: None,
        on_rate_limited: Callable[[str], None] = lambda kind: None,
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._tokens = tokens
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._backoff = backoff
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._on_response = on_response
        self._on_rate_limited = on_rate_limited

    async def qos_summaries(
        self, product: Product, account_id: str, instance: str, sub_account: str | None = None
    ) -> SummaryListing:
        """All participant summaries of an ended instance, `page_size=10` per Heavy call.

        `account_id` is the instance's account (a sub-account's id for master-account paths) and
        goes into the records, so their dedupe keys equal those of the matching webhooks.
        """
        template, parameter, key = _SUMMARIES[product]
        endpoint = (_MASTER if sub_account else "") + template
        path = self._prefix(sub_account) + template.replace(parameter, encode_instance(instance))
        found: dict[str, SummaryRecord] = {}
        invalid: list[InvalidEvent] = []
        repeats: dict[str, int] = {}

        def take(items: list[Any]) -> None:
            for item in items:
                record = decode_rest_summary(product, account_id, instance, item)
                if isinstance(record, InvalidEvent):
                    invalid.append(record)
                    continue
                participant = record.participant_id
                if product == "session" and participant in found:
                    # Video SDK ids are digests of the item: two identical items are two joins.
                    repeats[participant] = repeat = repeats.get(participant, 1) + 1
                    participant = f"{participant}#{repeat}"
                    record = replace(
                        record, participant_id=participant, dedupe_key=(*record.dedupe_key[:-1], participant)
                    )
                found[participant] = record  # meetings and webinars: a repeated participant_id is one session

        def restart() -> None:  # a restarted listing reads every item again
            found.clear()
            invalid.clear()
            repeats.clear()

        pages, restarts = await self._pages(
            "heavy", endpoint, path, {"page_size": str(PAGE_SIZE)}, key, take, invalid, restart
        )
        return SummaryListing(tuple(found.values()), tuple(invalid), pages, restarts)

    async def past_instances(
        self, product: ListedProduct, start: float, end: float, sub_account: str | None = None
    ) -> tuple[str, ...]:
        """UUIDs of the meetings or webinars that ended between `start` and `end` (Resource-intensive calls).

        `from`/`to` are sent as UTC `yyyy-MM-dd HH:mm:ss`; Zoom allows a range of at most a month.
        """
        template, key = _LISTS[product]
        endpoint = (_MASTER if sub_account else "") + template
        params = {
            "type": "past",
            "from": _utc(start),
            "to": _utc(end),
            "query_date_type": "end_time",
            "page_size": str(LIST_PAGE_SIZE),
        }
        found: dict[str, None] = {}

        def take(items: list[Any]) -> None:
            for item in items:
                uuid = item.get("uuid") if isinstance(item, dict) else None
                if isinstance(uuid, str) and uuid:
                    found[uuid] = None

        await self._pages("resource_intensive", endpoint, self._prefix(sub_account) + template, params, key, take, [])
        return tuple(found)

    def _prefix(self, sub_account: str | None) -> str:
        return _MASTER.replace("{accountId}", quote(sub_account, safe="")) if sub_account else ""

    async def _pages(
        self,
        label: Label,
        endpoint: str,
        path: str,
        params: dict[str, str],
        key: str,
        take: Callable[[list[Any]], None],
        invalid: list[InvalidEvent],
        restart: Callable[[], None] | None = None,
    ) -> tuple[int, int]:
        """Follow `next_page_token` to the end; start over when a token has expired (15 min)."""
        token, issued, pages, restarts = "", 0.0, 0, 0
        while True:
            query = {**params, "next_page_token": token} if token else params
            expires = issued + PAGE_TOKEN_LIFETIME if token else None
            expired = False
            try:
                body = await self._get(label, endpoint, path, query, expires)
            except _PageTokenTooOld:
                expired = True
            except ZoomApiError as error:
                if not (token and _page_token_refused(error)):
                    raise
                expired = True
            else:
                pages += 1
                items = body.get(key)
                if isinstance(items, list):
                    take(items)
                elif items is not None:
                    invalid.append(InvalidEvent(endpoint, key))
                next_token = body.get("next_page_token")
                if not isinstance(next_token, str) or not next_token:
                    return pages, restarts
                token, issued = next_token, self._clock()
            if expired:
                restarts += 1
                if restarts > MAX_LISTING_RESTARTS:
                    raise ZoomApiError(0, self._base + path, f"page tokens expired {restarts} times; listing abandoned")
                token = ""
                invalid.clear()
                if restart is not None:
                    restart()

    async def _get(
        self, label: Label, endpoint: str, path: str, params: dict[str, str], expires: float | None = None
    ) -> dict[str, Any]:
        """One logical GET, retried as the module docstring says; `expires`: when its page token stops working."""
        url = self._base + path
        renewed = False
        attempt = 0
        while True:
            token = await self._tokens.token()
            async with self.limits.slots:
                await self.limits.acquire(label)
                # Waits (a 429's Retry-After, backoff) can outlast a page token: then no call is made for it.
                if expires is not None and self._clock() >= expires:
                    raise _PageTokenTooOld
                response, failure = await self._send(url, params, token)
            if response is None:
                assert failure is not None
                self._on_response(endpoint, "error")
                attempt += 1
                if attempt >= self._max_attempts:
                    raise failure
                await self._sleep(self._backoff.delay(attempt))
                continue
            status = response.status_code
            self._on_response(endpoint, str(status))
            if 200 <= status < 300:
                return self._object(response, url)
            now = self._clock()
            error = _error(response, url, now)
            if status == 401 and not renewed:  # expired or revoked: one fresh token, then give up
                self._tokens.invalidate(token)
                renewed = True
                continue
            if status == 429:
                kind = limit_type(error.rate_limit_type, str(error))
                self._on_rate_limited(kind)
                if kind == "daily":
                    until = now + error.retry_after if error.retry_after is not None else None
                    resume = await self.limits.budget.exhaust(until)
                    raise BudgetExhausted(self.limits.budget.scope, resume)
                attempt += 1
                if attempt >= self._max_attempts:
                    raise error
                wait = error.retry_after if error.retry_after is not None else self._backoff.delay(attempt)
                self.limits.windows[label].pause_until(now + wait)
                continue
            if status >= 500:
                attempt += 1
                if attempt >= self._max_attempts:
                    raise error
                await self._sleep(self._backoff.delay(attempt))
                continue
            raise error

    async def _send(
        self, url: str, params: dict[str, str], token: AccessToken
    ) -> tuple[httpx.Response | None, ZoomApiError | None]:
        try:
            with _mapped_errors(url):
                response = await self._client.get(
                    url,
                    params=params,
                    headers={"authorization": f"Bearer {token.value}", "accept": "application/json"},
                    timeout=self._timeout,
                )
        except ZoomApiError as error:
            return None, error
        return response, None

    @staticmethod
    def _object(response: httpx.Response, url: str) -> dict[str, Any]:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ZoomApiError(response.status_code, url, "answer is not JSON") from None
        if not isinstance(body, dict):
            raise ZoomApiError(response.status_code, url, "answer is not a JSON object")
        return body
