"""The Zoom-facing webhook endpoint: verify the raw body, answer Zoom, hand records to the pipeline.

Order matters and follows ARCHITECTURE.md "Behaviour towards Zoom": size limit, then signature
(timestamp first), and only then JSON. Everything is answered synchronously within milliseconds,
after the event is recorded, so a 200 always means "counted" and a 5xx means "retry me".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from qss_exporter.errors import SignatureError
from qss_exporter.pipeline import Pipeline
from qss_exporter.store import CounterFamily
from qss_exporter.zoom.events import decode
from qss_exporter.zoom.records import InvalidEvent, UnknownEvent, UrlValidation
from qss_exporter.zoom.signature import url_validation_token, verify

__all__ = ["WebhookAccount", "WebhookReceiver", "webhook_app"]

log = logging.getLogger(__name__)

_EMPTY = Response(status_code=200)


@dataclass(frozen=True, slots=True)
class WebhookAccount:
    name: str
    secrets: tuple[str, ...]


def _json(status: int, body: dict[str, str], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


class WebhookReceiver:
    """The ASGI endpoint; `outcomes` is the `zoom_qss_webhook_requests_total{outcome}` family."""

    def __init__(
        self,
        pipeline: Pipeline,
        outcomes: CounterFamily,
        accounts: Sequence[WebhookAccount],
        *,
        timestamp_tolerance: float,
        max_body_bytes: int,
        max_in_flight: int,
        insecure_skip_verification: bool,
        clock: Callable[[], float],
        source: str = "webhook",
    ) -> None:
        self._pipeline = pipeline
        self._outcomes = outcomes
        self._secrets = [secret for account in accounts for secret in account.secrets]
        self._tolerance = timestamp_tolerance
        self._max_body = max_body_bytes
        self._max_in_flight = max_in_flight
        self._insecure = insecure_skip_verification
        self._clock = clock
        self._source = source
        self.in_flight = 0

    def _count(self, outcome: str) -> None:
        self._outcomes.inc((outcome,))

    async def endpoint(self, request: Request) -> Response:
        if self.in_flight >= self._max_in_flight:
            # 503 makes Zoom retry the event later (+5, +20, +60 min): nothing is lost.
            self._count("overloaded")
            return _json(503, {"error": "overloaded, retry later"}, {"Retry-After": "60"})
        self.in_flight += 1
        try:
            return await self._handle(request)
        finally:
            self.in_flight -= 1

    async def _read_body(self, request: Request) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            return None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self._max_body:
                return None
        return bytes(body)

    async def _handle(self, request: Request) -> Response:
        body = await self._read_body(request)
        if body is None:
            self._count("too_large")
            return _json(413, {"error": f"body larger than {self._max_body} bytes"})
        secret = self._verify(request, body)
        if isinstance(secret, Response):
            return secret
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError:
            self._count("malformed")
            return _json(400, {"error": "body is not JSON"})
        decoded = decode(envelope)
        if isinstance(decoded, UrlValidation):
            self._count("url_validation")
            token = url_validation_token(secret, decoded.plain_token)
            return _json(200, {"plainToken": decoded.plain_token, "encryptedToken": token})
        if isinstance(decoded, UnknownEvent):
            self._count("unknown_event")
            return _EMPTY
        if isinstance(decoded, InvalidEvent):
            self._count("malformed")
            self._pipeline.count_parse_error(decoded.field)
            return _json(400, {"error": f"not a usable Zoom event: {decoded.field} missing or invalid"})
        try:
            accepted = self._pipeline.ingest(decoded, self._source)
        except Exception:
            # A bug, not bad input: 500 makes Zoom retry, so the event is not lost meanwhile.
            log.exception("failed to record %s", decoded.event)
            self._count("error")
            return _json(500, {"error": "internal error"})
        self._count("accepted" if accepted else "duplicate")
        return _EMPTY

    def _verify(self, request: Request, body: bytes) -> str | Response:
        if self._insecure:
            return self._secrets[0] if self._secrets else ""
        try:
            return verify(
                self._secrets,
                request.headers.get("x-zm-request-timestamp"),
                request.headers.get("x-zm-signature"),
                body,
                self._clock(),
                self._tolerance,
            )
        except SignatureError as error:
            self._count(error.reason)
            log.debug("rejected webhook: %s", error)
            return _json(401, {"error": error.reason})


def webhook_app(receiver: WebhookReceiver, path: str) -> Starlette:
    return Starlette(routes=[Route(path, receiver.endpoint, methods=["POST"])])
