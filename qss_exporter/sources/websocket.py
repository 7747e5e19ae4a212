"""Zoom WebSocket event subscription: one supervised outbound connection per account, feeding the pipeline.

Owns the connection's life: token, connect, Zoom's `build_connection` answer, heartbeats, and
reconnecting (backoff with jitter, always with a fresh token). Frames are classified by
zoom/websocket_frames.py and events recorded by `Pipeline.ingest`, exactly as webhooks are, so
the pipeline's dedupe makes a webhook and a WebSocket delivery of the same event count once.
Behaviour and its reasons: docs/websocket.md.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import CloseCode

from qss_exporter import __version__
from qss_exporter.catalogue import (
    WEBSOCKET_CONNECT_FAILURES,
    WEBSOCKET_EVENT_OUTCOMES,
    WEBSOCKET_MODULES,
    WEBSOCKET_RECONNECTS,
    WebSocketFamilies,
)
from qss_exporter.errors import ZoomApiError
from qss_exporter.logs import RateLimitedLog, shown
from qss_exporter.pipeline import Pipeline
from qss_exporter.redaction import redact_url
from qss_exporter.zoom.events import Decoded
from qss_exporter.zoom.oauth import AccessToken, TokenProvider
from qss_exporter.zoom.records import InvalidEvent, Record, UnknownEvent, UrlValidation
from qss_exporter.zoom.websocket_frames import (
    HEARTBEAT,
    BuildConnection,
    EventMessage,
    Frame,
    Heartbeat,
    MalformedFrame,
    OtherFrame,
    TokenRefused,
    parse_frame,
)

__all__ = ["GRANTS", "Sleep", "TokenSource", "WebSocketSettings", "WebSocketSource"]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
TokenSource = Callable[[str], TokenProvider]  # grant type -> the token provider using that grant

# REFERENCE.md §5: Zoom's WebSocket page documents client_credentials, while the public clients of
# Server-to-Server apps use account_credentials; "auto" tries them in this order.
GRANTS = ("account_credentials", "client_credentials")
CLOSE_TIMEOUT_SECONDS = 2.0  # a dead peer must not hold up the reconnect (or shutdown) for long
_REFUSED_STATUSES = (400, 401, 403)


class _QuietLogger(logging.LoggerAdapter[logging.Logger]):
    """websockets' logger without its DEBUG lines: they print the request path, which carries the
    access token, and every frame, which carries emails and names."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_PROTOCOL_LOG = _QuietLogger(logging.getLogger("websockets.client"))


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """One account's subscription and the shared timing; built by app.py from the configuration."""

    account: str  # the `account` label
    subscription_id: str
    url: str = "wss://ws.zoom.us/ws"
    grant_type: str = "auto"  # auto | account_credentials | client_credentials
    heartbeat_interval: float = 30.0
    max_frame_bytes: int = 1_048_576
    connect_timeout: float = 10.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    reconnect_on_token_expiry: bool = True


# How an attempt that ended before Zoom confirmed it is counted, where the ending has a reason of its own
# for established connections: an unanswered heartbeat (or a token that ran out) before `build_connection`
# means Zoom did not confirm in time. Every other reason is a connect-failure reason as it is.
_BEFORE_CONFIRMATION = {"heartbeat_missed": "timeout", "token_expired": "timeout"}


def _connect_failure(reason: str) -> str:
    """The `zoom_qss_websocket_connect_failures_total` reason of an ending before confirmation (a closed set)."""
    reason = _BEFORE_CONFIRMATION.get(reason, reason)
    return reason if reason in WEBSOCKET_CONNECT_FAILURES else "error"


@dataclass(frozen=True, slots=True)
class _Ending:
    """How one connection attempt ended: `reason` is its metric label."""

    reason: str
    established: bool  # Zoom had confirmed the connection
    healthy: bool  # ... and answered at least one heartbeat: the backoff starts over
    detail: str = ""


class _Connection:
    """Mutable state of one open connection, shared by its reader and its timers."""

    __slots__ = ("established", "healthy", "heartbeat_pending")

    def __init__(self) -> None:
        self.established = False
        self.healthy = False
        self.heartbeat_pending = False


class WebSocketSource:
    """Keeps one account's subscription connected until cancelled; at most one connection at a time.

    `sleep` and `clock` are injected so that tests drive heartbeats, token expiry and backoff
    with virtual time; `random` (0-1) is the jitter.
    """

    def __init__(
        self,
        settings: WebSocketSettings,
        tokens: TokenSource,
        pipeline: Pipeline,
        families: WebSocketFamilies,
        *,
        clock: Callable[[], float],
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.settings = settings
        self._tokens = tokens
        self._pipeline = pipeline
        self._m = families
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._grants = GRANTS if settings.grant_type == "auto" else (settings.grant_type,)
        self._grant = 0
        self._grant_confirmed = False
        self.connected = False
        self._refused = RateLimitedLog(log, logging.WARNING)
        account = (settings.account,)
        families.connected.set(account, 0)
        for reason in WEBSOCKET_CONNECT_FAILURES:
            families.connect_failures.inc((*account, reason), 0)
        for reason in WEBSOCKET_RECONNECTS:
            families.reconnects.inc((*account, reason), 0)
        for module in WEBSOCKET_MODULES:
            families.messages.inc((*account, module), 0)
        for outcome in WEBSOCKET_EVENT_OUTCOMES:
            families.events.inc((*account, outcome), 0)
        families.connects.inc(account, 0)

    @property
    def grant_type(self) -> str:
        """The grant the next token is requested with."""
        return self._grants[self._grant]

    def backoff(self, attempt: int) -> float:
        """Delay before reconnect number `attempt` (0-based): exponential, capped, equal jitter."""
        ceiling = min(self.settings.reconnect_max, self.settings.reconnect_min * 2.0 ** min(attempt, 30))
        return ceiling * (0.5 + 0.5 * self._random())

    async def run(self) -> None:
        """Connect, and reconnect after every ending, until cancelled."""
        settings = self.settings
        attempt = 0
        log.info(
            "websocket %s: subscription %s via %s", settings.account, settings.subscription_id, redact_url(settings.url)
        )
        try:
            while True:
                try:
                    ending = await self._attempt()
                except Exception:  # a bug, not Zoom: log it, count it, and keep the source alive
                    log.exception("websocket %s: unexpected error", settings.account)
                    ending = _Ending("error", self.connected, False)
                self._set_connected(False)
                if ending.established:
                    self._m.reconnects.inc((settings.account, ending.reason))
                else:
                    self._m.connect_failures.inc((settings.account, _connect_failure(ending.reason)))
                if ending.reason == "token_expired":  # planned: straight back, no backoff
                    attempt, delay = 0, 0.0
                else:
                    if ending.healthy:
                        attempt = 0
                    delay = self.backoff(attempt)
                    attempt += 1
                level = logging.INFO if ending.reason == "token_expired" else logging.WARNING
                what = "connection ended" if ending.established else "could not connect"
                detail = f": {ending.detail}" if ending.detail else ""
                log.log(
                    level,
                    "websocket %s: %s (%s%s); reconnecting in %.1f s",
                    settings.account,
                    what,
                    ending.reason,
                    detail,
                    delay,
                )
                if delay > 0:
                    await self._sleep(delay)
        finally:
            self._set_connected(False)

    # ------------------------------------------------------------------------------ one attempt

    async def _attempt(self) -> _Ending:
        grant = self.grant_type
        provider = self._tokens(grant)
        try:
            token = await provider.token()
        except ZoomApiError as error:
            if error.status in _REFUSED_STATUSES:
                self._next_grant()
            return _Ending("token_request", False, False, str(error))
        try:
            ending = await self._connect(token)
        finally:
            provider.invalidate(token)  # every connection starts with a fresh token
        if ending.reason == "token_refused" and not ending.established:
            self._next_grant()
        return ending

    def _next_grant(self) -> None:
        """Before any connection worked, a refused token means: try the other grant (REFERENCE.md §5)."""
        if len(self._grants) > 1 and not self._grant_confirmed:
            self._grant = (self._grant + 1) % len(self._grants)
            log.info("websocket %s: trying grant_type=%s next", self.settings.account, self.grant_type)

    def _url(self, token: AccessToken) -> str:
        url = self.settings.url
        query = urlencode({"subscriptionId": self.settings.subscription_id, "access_token": token.value})
        return f"{url}{'&' if '?' in url else '?'}{query}"

    async def _connect(self, token: AccessToken) -> _Ending:
        settings = self.settings
        try:
            async with connect(
                self._url(token),
                ping_interval=None,  # Zoom has its own heartbeat (REFERENCE.md §5)
                max_size=settings.max_frame_bytes,
                open_timeout=settings.connect_timeout,
                close_timeout=CLOSE_TIMEOUT_SECONDS,
                user_agent_header=f"qss-exporter/{__version__}",
                logger=_PROTOCOL_LOG,
            ) as websocket:
                try:
                    return await self._session(websocket, token)
                except asyncio.CancelledError:
                    # The agent is stopping. Leaving the block with an exception would make the library
                    # close with 1011 (internal error); this is a planned departure: 1001, going away.
                    await websocket.close(CloseCode.GOING_AWAY, "shutting down")
                    raise
        except InvalidStatus as error:
            status = error.response.status_code
            reason = "token_refused" if status in _REFUSED_STATUSES else "connect"
            return _Ending(reason, False, False, f"HTTP {status} on the WebSocket handshake")
        except OSError as error:  # refused, unreachable, TLS: the text names the host, never the URL
            return _Ending("connect", False, False, f"{type(error).__name__}: {error}")
        except (TimeoutError, InvalidHandshake, InvalidURI) as error:
            # The type only: some of these carry the URL in their text, and the URL carries the token.
            return _Ending("connect", False, False, type(error).__name__)

    async def _session(self, websocket: ClientConnection, token: AccessToken) -> _Ending:
        """Run the reader and the timers until one of them ends the connection."""
        connection = _Connection()
        watchers: list[Coroutine[Any, Any, str | None]] = [
            self._read(websocket, connection),
            self._heartbeat(websocket, connection),
            self._confirm_deadline(connection),
        ]
        if self.settings.reconnect_on_token_expiry:
            watchers.append(self._token_expiry(token))
        tasks = [asyncio.create_task(watcher) for watcher in watchers]
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:  # in declaration order, so the reader's reason wins a tie
                    if task not in done:
                        continue
                    if isinstance(task.exception(), OSError | ConnectionClosed):  # a send on a dying socket
                        return _Ending("closed", connection.established, connection.healthy)
                    if (reason := task.result()) is not None:
                        return _Ending(reason, connection.established, connection.healthy)
            raise AssertionError("the reader only returns with a reason")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---------------------------------------------------------------------------------- watchers

    async def _read(self, websocket: ClientConnection, connection: _Connection) -> str:
        try:
            async for data in websocket:
                connection.heartbeat_pending = False  # any frame proves the connection alive
                frame = parse_frame(data)
                reason = self._handle(frame, connection)
                if isinstance(frame, EventMessage) and self._pipeline.shared is not None:
                    await self._event_shared(frame.event)  # state.backend: redis, one round trip
                if reason is not None:
                    return reason
        except ConnectionClosed as closed:
            # The library closes the connection itself (and says why in the close frame it sent) on a
            # message over max_size, or on bytes that are not valid WebSocket frames or UTF-8 text.
            code = closed.sent.code if closed.sent is not None else None
            if code == CloseCode.MESSAGE_TOO_BIG:
                return "too_large"
            if code in (CloseCode.PROTOCOL_ERROR, CloseCode.INVALID_DATA):
                return "protocol_error"
        return "closed"

    async def _heartbeat(self, websocket: ClientConnection, connection: _Connection) -> str:
        sent = False
        while True:
            await self._sleep(self.settings.heartbeat_interval)
            if connection.heartbeat_pending:
                return "heartbeat_missed"
            if sent and connection.established:
                connection.healthy = True  # a heartbeat of this connection went out and was answered
            connection.heartbeat_pending = sent = True
            try:
                await websocket.send(HEARTBEAT)
            except ConnectionClosed:
                return "closed"

    async def _confirm_deadline(self, connection: _Connection) -> str | None:
        await self._sleep(self.settings.connect_timeout)
        return None if connection.established else "timeout"

    async def _token_expiry(self, token: AccessToken) -> str:
        # Zoom checks the token only when connecting; whether it drops the connection when the token
        # expires is not documented. Reconnecting shortly before costs one brief gap an hour.
        remaining = token.expires_at - self._clock()
        await self._sleep(max(0.0, remaining - min(60.0, remaining / 2)))
        return "token_expired"

    # ------------------------------------------------------------------------------------ frames

    def _handle(self, frame: Frame, connection: _Connection) -> str | None:
        """Count and act on one frame; a reason string ends the connection."""
        account = self.settings.account
        messages = self._m.messages
        if isinstance(frame, EventMessage):
            messages.inc((account, "message"))
            self._m.last_message.set((account,), self._clock())
            self._establish(connection, "a message")
            if self._pipeline.shared is None:
                self._event(frame.event)
        elif isinstance(frame, Heartbeat):
            messages.inc((account, "heartbeat"))
            self._establish(connection, "a heartbeat answer")
        elif isinstance(frame, BuildConnection):
            messages.inc((account, "build_connection"))
            if not frame.success:
                log.warning("websocket %s: Zoom refused the connection: %r", account, frame.detail)
                return "closed" if connection.established else "build_connection"
            self._establish(connection, "")
        elif isinstance(frame, TokenRefused):
            messages.inc((account, frame.module if frame.module in WEBSOCKET_MODULES else "other"))
            return "token_refused"
        elif isinstance(frame, OtherFrame):
            messages.inc((account, "other"))
            log.debug("websocket %s: ignored a frame of module %r", account, frame.module)
        else:
            assert isinstance(frame, MalformedFrame)
            messages.inc((account, "malformed"))
            log.debug("websocket %s: skipped a malformed frame (%s)", account, frame.reason)
        return None

    def _establish(self, connection: _Connection, instead_of_build_connection: str) -> None:
        if connection.established:
            return
        if instead_of_build_connection:
            log.info(
                "websocket %s: %s came before build_connection; taken as confirmation",
                self.settings.account,
                instead_of_build_connection,
            )
        connection.established = True
        self._grant_confirmed = True
        self._m.connects.inc((self.settings.account,))
        self._set_connected(True)
        log.info("websocket %s: connected (grant_type=%s)", self.settings.account, self.grant_type)

    async def _event_shared(self, decoded: Decoded) -> None:
        """`_event` through the state shared with the other replicas (a webhook copy elsewhere counts once)."""
        if (
            isinstance(decoded, Record)
            and self._pipeline.accounts.check((self.settings.account,), decoded.account_id) is None
        ):
            try:
                accepted = await self._pipeline.ingest_shared(decoded, "websocket")
            except Exception:  # a bug, not bad input: the connection (and the next event) carry on
                log.exception("websocket %s: failed to record %s", self.settings.account, decoded.event)
                self._m.events.inc((self.settings.account, "error"))
                return
            self._m.events.inc((self.settings.account, "accepted" if accepted else "duplicate"))
            return
        self._event(decoded)

    def _event(self, decoded: Decoded) -> None:
        account = self.settings.account
        if isinstance(decoded, InvalidEvent):
            self._pipeline.count_parse_error(decoded.field)
            outcome = "malformed"
        elif isinstance(decoded, UnknownEvent | UrlValidation):
            outcome = "unknown_event"
        elif (refusal := self._pipeline.accounts.check((account,), decoded.account_id)) is not None:
            # A subscription speaks for its own account and its sub-accounts only.
            outcome = refusal
            self._refused(
                refusal,
                "websocket %s: refused an event (%s) of account_id %s",
                account,
                refusal,
                shown(decoded.account_id),
            )
        else:
            try:
                outcome = "accepted" if self._pipeline.ingest(decoded, "websocket") else "duplicate"
            except Exception:  # a bug, not bad input: the connection (and the next event) carry on
                log.exception("websocket %s: failed to record %s", account, decoded.event)
                outcome = "error"
        self._m.events.inc((account, outcome))

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        self._m.connected.set((self.settings.account,), 1.0 if connected else 0.0)
