"""The Zoom-facing webhook endpoint: verify the raw body, answer Zoom, hand records to the pipeline.

Order matters and follows ARCHITECTURE.md "Behaviour towards Zoom": size limit, then signature
(timestamp first), and only then JSON. When a body is slow to follow its headers, the listener's
guard (server/guard.py) asks `screen` first, so a request without plausible signature headers is
answered without waiting for its body. Everything is
answered synchronously within milliseconds, after the event is recorded, so a 200 always means
"counted" and a 5xx means "retry me". A request that waited longer than `shed_after` for the CPU
is answered 503 without being looked at: Zoom retries it, where a late 200 would have come after
Zoom's 3-second timeout.

The one hot route (POST on the webhook path) is served as plain ASGI; everything else on this
listener goes to a Starlette app (404, 405). Skipping Starlette's Request/Response objects and
middleware on the hot route measured ~+25 % events/s (bench/README.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from qss_exporter.catalogue import WEBHOOK_OUTCOMES as _OUTCOMES
from qss_exporter.errors import SignatureError
from qss_exporter.logs import RateLimitedLog, shown
from qss_exporter.pipeline import Pipeline
from qss_exporter.server.guard import received_at
from qss_exporter.store import CounterFamily
from qss_exporter.zoom.records import InvalidEvent, UnknownEvent, UrlValidation
from qss_exporter.zoom.signature import check_headers, url_validation_token, verify
from qss_exporter.zoom.typed import decode_body

__all__ = ["WebhookAccount", "WebhookReceiver", "webhook_app"]

log = logging.getLogger(__name__)

Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]
_JSON = (b"content-type", b"application/json")
_OK: Reply = (200, b"", [])
_RETRY_AFTER = (b"retry-after", b"60")


@dataclass(frozen=True, slots=True)
class WebhookAccount:
    name: str
    secrets: tuple[str, ...]


def _json(status: int, body: dict[str, str], *headers: tuple[bytes, bytes]) -> Reply:
    return status, orjson.dumps(body), [_JSON, *headers]


class WebhookReceiver:
    """Handles one webhook request; `outcomes` is the `zoom_qss_webhook_requests_total{outcome}` family."""

    def __init__(
        self,
        pipeline: Pipeline,
        outcomes: CounterFamily,
        accounts: Sequence[WebhookAccount],
        *,
        timestamp_tolerance: float,
        max_body_bytes: int,
        shed_after: float,
        insecure_skip_verification: bool,
        clock: Callable[[], float],
        source: str = "webhook",
        path: str = "/zoom/webhook",
    ) -> None:
        self._pipeline = pipeline
        self._outcomes = {outcome: outcomes.handle((outcome,)) for outcome in _OUTCOMES}
        self._max_body = max_body_bytes
        self.reconfigure(accounts, timestamp_tolerance=timestamp_tolerance, shed_after=shed_after)
        self._insecure = insecure_skip_verification
        self._clock = clock
        self._source = source
        self._path = path
        self._rejected = RateLimitedLog(log)
        self._refused = RateLimitedLog(log, logging.WARNING)  # signed, but for an account it may not name

    def reconfigure(self, accounts: Sequence[WebhookAccount], *, timestamp_tolerance: float, shed_after: float) -> None:
        """Take new accounts, secrets and timing (a configuration reload).

        The request path reads these only after its last `await` (the body), so a request is verified and
        attributed under one configuration, the old or the new, never a mix.
        """
        # Which configured accounts each secret speaks for (usually one; two entries may share an app).
        speakers: dict[str, tuple[str, ...]] = {}
        for account in accounts:
            for secret in account.secrets:
                speakers[secret] = (*speakers.get(secret, ()), account.name)
        self._speakers = speakers
        self._secrets = list(speakers)
        self._everyone = tuple(account.name for account in accounts)  # insecure_skip_verification
        self._tolerance = timestamp_tolerance
        self._shed_after = shed_after

    def _count(self, outcome: str) -> None:
        self._outcomes[outcome].add(1.0, self._clock())

    # The listener guard's questions (server/guard.py: Admission), asked before the body is read.

    def screen(self, scope: Scope) -> Reply | None:
        """401 for a webhook whose signature headers are missing, malformed or stale; None to read on."""
        if self._insecure or scope["method"] != "POST" or scope["path"] != self._path:
            return None
        timestamp = signature = None
        for name, value in scope["headers"]:
            if name == b"x-zm-request-timestamp":
                timestamp = value.decode("latin-1")
            elif name == b"x-zm-signature":
                signature = value.decode("latin-1")
        try:
            check_headers(timestamp, signature, self._clock(), self._tolerance)
        except SignatureError as error:
            return self._unauthorised(error)
        return None

    def too_large(self, scope: Scope) -> Reply:
        self._count("too_large")
        return _json(413, {"error": f"body larger than {self._max_body} bytes"})

    def overloaded(self, scope: Scope) -> Reply:
        # 503 makes Zoom retry the event later (+5, +20, +60 min): nothing is lost.
        self._count("overloaded")
        return _json(503, {"error": "overloaded, retry later"}, _RETRY_AFTER)

    def _unauthorised(self, error: SignatureError) -> Reply:
        self._count(error.reason)
        self._rejected(error.reason, "rejected webhook: %s", error)
        return _json(401, {"error": error.reason})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = received_at(scope)
        if arrived is not None and time.monotonic() - arrived > self._shed_after:
            reply = self.overloaded(scope)  # it waited too long for the CPU: Zoom has given up or soon will
        else:
            reply = await self._handle(scope, receive)
        status, body, headers = reply
        # An explicit length: without one uvicorn would fall back to chunked encoding.
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _read_body(self, declared: int | None, receive: Receive) -> bytes | None:
        if declared is not None and declared > self._max_body:
            return None
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b""
            body += message.get("body", b"")
            if len(body) > self._max_body:
                return None
            more = message.get("more_body", False)
        return body

    async def _handle(self, scope: Scope, receive: Receive) -> Reply:
        declared = timestamp = signature = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else None
            elif name == b"x-zm-request-timestamp":
                timestamp = value.decode("latin-1")
            elif name == b"x-zm-signature":
                signature = value.decode("latin-1")
        body = await self._read_body(declared, receive)
        if body is None:
            self._count("too_large")
            return _json(413, {"error": f"body larger than {self._max_body} bytes"})
        if self._insecure:
            secret = self._secrets[0] if self._secrets else ""
        else:
            try:
                secret = verify(self._secrets, timestamp, signature, body, self._clock(), self._tolerance)
            except SignatureError as error:
                return self._unauthorised(error)
        try:
            decoded = decode_body(body)  # typed structs in C for the common case, the tolerant decoder otherwise
        except orjson.JSONDecodeError:
            self._count("malformed")
            return _json(400, {"error": "body is not JSON"})
        if isinstance(decoded, UrlValidation):
            self._count("url_validation")
            token = url_validation_token(secret, decoded.plain_token)
            return _json(200, {"plainToken": decoded.plain_token, "encryptedToken": token})
        if isinstance(decoded, UnknownEvent):
            self._count("unknown_event")
            return _OK
        if isinstance(decoded, InvalidEvent):
            self._count("malformed")
            self._pipeline.count_parse_error(decoded.field)
            return _json(400, {"error": f"not a usable Zoom event: {decoded.field} missing or invalid"})
        # The secret that verified the request decides which accounts it may speak for (docs/security.md).
        speakers = self._everyone if self._insecure else self._speakers[secret]
        refusal = self._pipeline.accounts.check(speakers, decoded.account_id)
        if refusal is not None:
            self._count(refusal)
            self._refused(
                refusal,
                "refused a webhook (%s): account_id %s is not %s's",
                refusal,
                shown(decoded.account_id),
                "/".join(speakers),
            )
            return _json(403, {"error": f"{refusal}: this secret token does not deliver events of that account"})
        try:
            pipeline = self._pipeline
            if pipeline.shared is None:
                accepted = pipeline.ingest(decoded, self._source)
            else:  # state.backend: redis, one round trip within state.redis.call_timeout_ms
                accepted = await pipeline.ingest_shared(decoded, self._source)
        except Exception:
            # A bug, not bad input: 500 makes Zoom retry, so the event is not lost meanwhile.
            log.exception("failed to record %s", decoded.event)
            self._count("error")
            return _json(500, {"error": "internal error"})
        self._count("accepted" if accepted else "duplicate")
        return _OK


class _WebhookListener:
    """ASGI app of the webhook listener: the hot route straight to the receiver, the rest to Starlette."""

    def __init__(self, receiver: WebhookReceiver, path: str) -> None:
        self._receiver = receiver
        self._path = path

        async def unreachable(request: Request) -> Response:  # POST on the path never gets here
            raise AssertionError("the webhook route is served before Starlette")

        self._fallback: ASGIApp = Starlette(routes=[Route(path, unreachable, methods=["POST"])])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == self._path:
            await self._receiver(scope, receive, send)
        else:
            await self._fallback(scope, receive, send)


def webhook_app(receiver: WebhookReceiver, path: str) -> ASGIApp:
    return _WebhookListener(receiver, path)
