"""Admission on an HTTP listener: what a client may cost before the application sees its request.

A subclass of uvicorn's httptools protocol, passed as `uvicorn.Config(http=...)`. The limits an
Internet-facing listener needs sit below ASGI, where no middleware reaches (uvicorn 0.54 itself has
no header deadline, no header size limit with httptools, and counts a request toward
`limit_concurrency` before its body has arrived):

* a deadline for the request line and headers and one for the body (408; a connection that never
  sent a byte is closed silently), and an idle timeout between keep-alive requests;
* at most `max_header_bytes` of request line and headers and `max_headers` fields (431);
* the body is read in full *before* the application is called: at most `max_body_bytes` (413) and,
  over all connections, `max_buffered_body_bytes` (503). A request reaches the application, and so
  counts toward its capacity, only once it has arrived whole: a slow client holds a connection slot
  and a deadline, nothing the signed traffic needs;
* `Admission.screen(scope)`: the application's check of the headers alone (the webhook's signature
  headers), asked when the headers are in and the body is not, and answered without waiting for it;
* at most `max_connections` connections: at the cap a new connection evicts the one that has been
  idle or half-received for the longest, so held-open connections cannot lock out a client that
  completes its requests promptly.

Why here and not in ASGI middleware or `limit_concurrency`: measured on the agent with 1,000
slowloris connections held open, uvicorn's settings alone left every signed webhook waiting (503 from
`limit_concurrency`, or no answer while the connections held the in-flight slots), and middleware
never sees a request whose headers are incomplete. What this class adds per request is three dict
operations and three clock reads, and it drops uvicorn's keep-alive timer: ~3 us per request in a
bare protocol benchmark on a loaded 2-core machine (uvicorn's own protocol: ~31 us there), against
~100 us the agent spends on a webhook.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from qss_exporter.logs import RateLimitedLog

__all__ = [
    "Admission",
    "Guard",
    "GuardedProtocol",
    "ListenerLimits",
    "PlainAdmission",
    "Reply",
    "protocol_class",
    "received_at",
]

log = logging.getLogger(__name__)

Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_EXTENSION = "qss.admission"

# What the parser is reading: nothing yet, the head (request line and headers), the body, or the
# request is complete (stashed, handed to the application, or answered).
_IDLE, _HEAD, _BODY, _DONE = range(4)


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """One listener's limits; the webhook's come from `webhook:` (docs/security.md has the defaults)."""

    header_timeout: float
    body_timeout: float
    idle_timeout: float
    max_header_bytes: int
    max_headers: int
    max_body_bytes: int
    max_buffered_body_bytes: int
    max_connections: int


def received_at(scope: Any) -> float | None:
    """`time.monotonic()` when the first byte of this request was read, if a guarded listener served it."""
    extension = scope.get("extensions", {}).get(_EXTENSION)
    return None if extension is None else float(extension["received_at"])


class Admission(Protocol):
    """What the application decides before its ASGI app runs (the webhook receiver implements it)."""

    def screen(self, scope: Any) -> Reply | None:
        """An answer from the headers alone (the body is not read), or None to go on."""

    def too_large(self, scope: Any) -> Reply:
        """The answer to a body over the listener's `max_body_bytes`."""

    def overloaded(self, scope: Any) -> Reply:
        """The answer when the listener holds too many body bytes to take this one."""


class PlainAdmission:
    """No screening; plain-text 413 and 503 (the metrics listener)."""

    def screen(self, scope: Any) -> Reply | None:
        return None

    def too_large(self, scope: Any) -> Reply:
        return 413, b"request body too large\n", [_TEXT]

    def overloaded(self, scope: Any) -> Reply:
        return 503, b"overloaded, retry later\n", [_TEXT, (b"retry-after", b"5")]


class _Refuse(Exception):
    """Raised inside a parser callback to stop parsing; `data_received` answers it."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


class Guard:
    """What the connections of one listener share: limits, counts, who may be evicted first, and the
    sweep that enforces the deadlines.

    Deadlines are checked by one sweep every `SWEEP_SECONDS` over the connections that can expire
    (idle or half-received ones; a request being served never does), not by a timer per request:
    arming and cancelling two timers per request measured ~3 us, a few percent of what the agent
    spends on a whole webhook, while the sweep costs ~0.4 us per open connection four times a second.
    A deadline is therefore met within a quarter of a second.
    """

    SWEEP_SECONDS = 0.25

    def __init__(
        self,
        name: str,
        limits: ListenerLimits,
        admission: Admission | None = None,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.limits = limits
        self.admission: Admission = admission or PlainAdmission()
        self._count = count
        self.log = RateLimitedLog(logging.getLogger("qss_exporter.listener"))
        self.connections = 0
        self.buffered = 0  # body bytes held by requests not yet handed to the application
        # Idle or half-received connections, the longest in that state first. Requests the
        # application is serving are never evicted.
        self.evictable: OrderedDict[GuardedProtocol, None] = OrderedDict()
        # client_allowed_sans of the metrics listener's TLS: a verified certificate must also name one.
        self.peer_check: Callable[[asyncio.BaseTransport], bool] | None = None
        self._sweeping: asyncio.TimerHandle | None = None

    def reject(self, reason: str, detail: str) -> None:
        if self._count is not None:
            self._count(reason)
        self.log(reason, "%s listener refused a request: %s", self.name, detail)

    def evict(self) -> bool:
        """Close the connection idle or half-received for the longest; False when there is none."""
        if not self.evictable:
            return False
        victim, _ = self.evictable.popitem(last=False)
        victim.evicted()
        return True

    def opened(self, loop: asyncio.AbstractEventLoop) -> None:
        self.connections += 1
        if self._sweeping is None:
            self._sweeping = loop.call_later(self.SWEEP_SECONDS, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        for protocol in list(self.evictable):
            protocol.check_deadline(now)
        self._sweeping = loop.call_later(self.SWEEP_SECONDS, self._sweep, loop) if self.connections else None


def protocol_class(guard: Guard) -> type[GuardedProtocol]:
    """A protocol class bound to one listener's guard, for `uvicorn.Config(http=...)`."""
    return type(f"GuardedProtocol[{guard.name}]", (GuardedProtocol,), {"guard": guard})


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; `guard` is set by `protocol_class`.

    The parser callbacks on the hot path (`on_url`, `on_header`, `on_body`, `on_message_complete`,
    `on_response_complete`) do the parent's work inline rather than through `super()`, to keep the
    per-request cost within the noise of the ingest benchmark.
    """

    guard: Guard

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = self.guard.limits
        self._reading = _IDLE
        self._fresh = True  # no request yet: the header deadline runs from the connect
        self._since = time.monotonic()  # when the current state began
        self._counted = False  # holds one of guard.connections
        self._head_bytes = 0  # request line and headers, counted field by field when _counting
        self._head_raw = 0  # bytes read while the head is incomplete
        self._counting = False
        self._unscreened = False  # headers complete, body not, the admission's screen not yet asked
        self._declared = -1  # content-length, -1 when absent
        self._buffered = 0  # this connection's share of guard.buffered
        self._stashed: tuple[RequestResponseCycle, Any] | None = None
        self._discard = -1  # after an early answer: body bytes still to drop before closing; -1: not discarding

    # -------------------------------------------------------------------- connection lifecycle

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        if guard.connections >= self._limits.max_connections and not guard.evict():
            guard.reject("connection_limit", f"{guard.connections} connections open, none idle")
            transport.abort()
            return
        if guard.peer_check is not None and not guard.peer_check(transport):
            guard.reject("client_not_allowed", "the client certificate names none of client_allowed_sans")
            transport.abort()
            return
        guard.opened(self.loop)
        self._counted = True
        guard.evictable[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        super().connection_lost(exc)

    def evicted(self) -> None:
        """Closed to make room for a new connection (the guard already took it off its list)."""
        self.guard.reject("evicted", "closed an idle or half-received connection at max_connections")
        self._release()
        self.transport.abort()

    def abort(self) -> None:
        """Close at once, whatever is in progress (the end of a shutdown's drain)."""
        self._release()
        self.transport.abort()

    def _release(self) -> None:
        guard = self.guard
        guard.evictable.pop(self, None)
        guard.buffered -= self._buffered
        self._buffered = 0
        self._stashed = None
        if self._counted:
            self._counted = False
            guard.connections -= 1

    def check_deadline(self, now: float) -> None:
        """The guard's sweep: close or answer 408 when the current state has lasted too long."""
        limits = self._limits
        age = now - self._since
        if self._discard >= 0:
            if age > limits.body_timeout:
                self._release()
                self.transport.close()
        elif self._reading == _IDLE:
            if self._fresh and age > limits.header_timeout:  # connected and never sent a byte
                self.guard.reject("header_timeout", "no request within header_timeout_seconds")
                self.abort()
            elif not self._fresh and age > limits.idle_timeout:
                self._release()
                self.transport.close()
        elif self._reading == _HEAD and age > limits.header_timeout:
            self._refuse(408, "header_timeout", "request line and headers not complete within header_timeout_seconds")
        elif self._reading == _BODY and age > limits.body_timeout:
            self._refuse(408, "body_timeout", "body not complete within body_timeout_seconds")

    # ------------------------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        if self._discard >= 0:
            self._discard -= len(data)
            if self._discard < 0:  # more than we are willing to drop: stop reading it
                self._release()
                self.transport.close()
                return
        # Counting the head field by field is only needed when this chunk could take it past the limit.
        self._counting = self._head_raw + len(data) > self._limits.max_header_bytes
        self._head_bytes = self._head_raw
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            if isinstance(cause, _Refuse):
                self._refuse(cause.status, cause.reason, cause.detail)
            elif isinstance(cause, httptools.HttpParserError):  # e.g. a request target parse_url refuses
                self._refuse(400, "bad_request", "not a valid request target")
            else:  # a bug, not the client's doing: say so once with its traceback, and still answer
                log.error("request handling failed in the listener", exc_info=cause)
                self._refuse(400, "bad_request", "request could not be handled")
            return
        except httptools.HttpParserError:
            if self._discard < 0:
                self._refuse(400, "bad_request", "not a valid HTTP/1.1 request")
            else:
                self._release()
                self.transport.close()
            return
        except httptools.HttpParserUpgrade:
            self._upgrade_refused()
            return
        if self._reading == _HEAD:
            self._head_raw += len(data)
            if self._head_raw > self._limits.max_header_bytes:
                self._refuse(431, "headers_too_large", "request line and headers over max_header_bytes")
        elif self._unscreened and self._stashed is not None:
            self._screen()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = _HEAD
        self._head_bytes = self._head_raw = 0
        self._declared = -1
        if self._fresh:
            self._fresh = False  # the deadline still runs from the connect
        else:
            self._since = time.monotonic()
            evictable = self.guard.evictable
            if self in evictable:
                evictable.move_to_end(self)

    def on_url(self, url: bytes) -> None:
        if self._counting:
            self._head_bytes += len(url)
            if self._head_bytes > self._limits.max_header_bytes:
                raise _Refuse(414, "headers_too_large", "request line over max_header_bytes")
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._counting:
            self._head_bytes += len(name) + len(value) + 4
            if self._head_bytes > self._limits.max_header_bytes:
                raise _Refuse(431, "headers_too_large", "request line and headers over max_header_bytes")
            if len(self.headers) >= self._limits.max_headers:
                raise _Refuse(431, "too_many_headers", "more header fields than max_headers")
        name = name.lower()
        if name == b"content-length":
            # llhttp has already refused a content-length that is not digits, or two that differ.
            self._declared = int(value)
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if len(self.headers) > self._limits.max_headers:  # the byte limit bounds how many came
            raise _Refuse(431, "too_many_headers", "more header fields than max_headers")
        self._reading = _BODY
        self._since = received = time.monotonic()
        super().on_headers_complete()  # builds the scope and the cycle, then calls _start_asgi_task
        extension: dict[object, object] = {"received_at": received}
        self.scope["extensions"] = {_EXTENSION: extension}
        # Screened once this read is processed, if the body is still to come then (a pipelined
        # request behind one being served is left to the application, which checks it all anyway).
        stashed = self._stashed
        self._unscreened = stashed is not None and stashed[0] is self.cycle

    def _screen(self) -> None:
        """The headers are in and the body is not: answer now if the headers alone settle it.

        A request whose body came in the same read (Zoom's do) was handed over already, and the
        application makes the same checks with the body in hand: screening it too would only cost.
        """
        self._unscreened = False
        cycle = self.cycle
        admission = self.guard.admission
        if self._declared > self._limits.max_body_bytes:
            self._answer_early(admission.too_large(self.scope))
            return
        reply = admission.screen(self.scope)
        if reply is not None:
            self._answer_early(reply)
            return
        if cycle.waiting_for_100_continue:  # the client waits for this before it sends the body
            cycle.waiting_for_100_continue = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if self._discard >= 0 or cycle.response_complete:
            return
        size = len(body)
        if len(cycle.body) + size > self._limits.max_body_bytes:
            self._answer_early(self.guard.admission.too_large(self.scope))
            return
        guard = self.guard
        guard.buffered += size
        self._buffered += size
        if guard.buffered > self._limits.max_buffered_body_bytes:
            self._answer_early(guard.admission.overloaded(self.scope))
            return
        # uvicorn pauses reading past 64 KiB until the application reads; here nothing reads before
        # the body is complete, and the body is bounded by max_body_bytes.
        cycle.body += body

    def on_message_complete(self) -> None:
        if self._discard >= 0:
            self._release()
            self.transport.close()
            return
        self._reading = _DONE
        cycle = self.cycle
        if cycle.response_complete:
            return
        cycle.more_body = False
        cycle.message_event.set()
        stashed = self._stashed
        if stashed is not None and stashed[0] is cycle:
            self._dispatch(*stashed)

    # ------------------------------------------------------------------------------ handing over

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if cycle.more_body:
            self._stashed = (cycle, app)  # until its body is complete
        else:
            self._dispatch(cycle, app)

    def _dispatch(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._stashed = None
        self._unscreened = False
        guard = self.guard
        guard.buffered -= self._buffered
        self._buffered = 0
        guard.evictable.pop(self, None)
        cycle.waiting_for_100_continue = False
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        # uvicorn's, without its keep-alive timer: the guard's sweep closes idle connections.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        if self._counted and (self._stashed is not None or self.cycle.response_complete):
            if self._reading == _DONE:
                self._reading = _IDLE  # waiting for the next keep-alive request
                self._since = time.monotonic()
            self.guard.evictable[self] = None

    # ------------------------------------------------------------------------------ refusing

    def _answer_early(self, reply: Reply) -> None:
        """Answer before the body is read (the admission counted it), then drop the rest of the request
        (up to max_body_bytes, within the deadline) so the client reads the answer, not a reset."""
        status, body, headers = reply
        self._stashed = None
        self.guard.buffered -= self._buffered
        self._buffered = 0
        cycle = self.cycle
        cycle.response_complete = True  # nothing may answer this request again
        self.transport.write(_response(status, body, headers))
        budget = self._limits.max_body_bytes
        unsent = self._declared - len(cycle.body) if self._declared >= 0 else 0
        if cycle.waiting_for_100_continue or not cycle.more_body or unsent > budget:
            # The client sends no body before a 100 Continue; or it is all here; or it is too much to drop.
            self._release()
            self.transport.close()
            return
        self._discard = budget
        self._since = time.monotonic()

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        self.guard.reject(reason, detail)
        busy = self.cycle is not None and not self.cycle.response_complete and self._stashed is None
        if not busy:  # never write between the bytes of a response the application is sending
            self.transport.write(_response(status, f"{detail}\n".encode(), [_TEXT]))
        self._release()
        self.transport.close()

    def _upgrade_refused(self) -> None:
        # The parser stops at an Upgrade it has accepted (a WebSocket or h2c request): nothing after
        # it can be read. A request already complete is served and the connection closed after it.
        if self._reading == _DONE and self.cycle is not None:
            self.cycle.keep_alive = False
            return
        self._refuse(400, "bad_request", "protocol upgrades are not supported")


def _response(status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    parts = [STATUS_LINE[status]]
    for name, value in headers:
        parts += [name, b": ", value, b"\r\n"]
    parts += [b"content-length: ", str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body]
    return b"".join(parts)
