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
  headers), answered before a byte of the body is read;
* at most `max_connections` connections: at the cap a new connection evicts the one that has been
  idle or half-received for the longest, so held-open connections cannot lock out a client that
  completes its requests promptly.

Why here and not in ASGI middleware or `limit_concurrency`: measured on the agent with 1,000
slowloris connections held open, uvicorn's settings alone left every signed webhook waiting (503 from
`limit_concurrency`, or no answer while the connections held the in-flight slots), and middleware
never sees a request whose headers are incomplete. The per-request cost of this class is three dict
operations, one timer and a clock read: within the noise of `python -m bench ingest`.
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
    """What the connections of one listener share: limits, counts, and who may be evicted first."""

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
        # client_allowed_sans of the metrics listener's TLS: a verified certificate must also name one.
        self.peer_check: Callable[[asyncio.BaseTransport], bool] | None = None
        self.log = RateLimitedLog(logging.getLogger("qss_exporter.listener"))
        self.connections = 0
        self.buffered = 0  # body bytes held by requests not yet handed to the application
        # Idle or half-received connections, the longest in that state first. Requests the
        # application is serving are never evicted.
        self.evictable: OrderedDict[GuardedProtocol, None] = OrderedDict()

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


def protocol_class(guard: Guard) -> type[GuardedProtocol]:
    """A protocol class bound to one listener's guard, for `uvicorn.Config(http=...)`."""
    return type(f"GuardedProtocol[{guard.name}]", (GuardedProtocol,), {"guard": guard})


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; `guard` is set by `protocol_class`."""

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
        self._deadline: asyncio.TimerHandle | None = None
        self._counted = False  # holds one of guard.connections
        self._head_bytes = 0  # request line and headers, counted field by field
        self._head_raw = 0  # bytes read while the head is incomplete
        self._fields = 0
        self._declared = -1  # content-length, -1 when absent
        self._buffered = 0  # this connection's share of guard.buffered
        self._stashed: tuple[RequestResponseCycle, Any] | None = None
        self._discard = -1  # after an early answer: body bytes still to drop before closing; -1: not discarding
        self._received_at = 0.0

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
        guard.connections += 1
        self._counted = True
        guard.evictable[self] = None
        self._arm(self._limits.header_timeout)

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
        self._cancel_deadline()
        guard = self.guard
        guard.evictable.pop(self, None)
        guard.buffered -= self._buffered
        self._buffered = 0
        self._stashed = None
        if self._counted:
            self._counted = False
            guard.connections -= 1

    # ------------------------------------------------------------------------------ deadlines

    def _arm(self, seconds: float) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._discard >= 0:
            self.transport.close()
        elif self._reading == _IDLE:  # connected and never sent a byte
            self.guard.reject("header_timeout", "no request within header_timeout_seconds")
            self.abort()
        elif self._reading == _HEAD:
            self._refuse(408, "header_timeout", "request line and headers not complete within header_timeout_seconds")
        elif self._reading == _BODY:
            self._refuse(408, "body_timeout", "body not complete within body_timeout_seconds")

    # ------------------------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._discard >= 0:
            self._discard -= len(data)
            if self._discard < 0:  # more than we are willing to drop: stop reading it
                self.transport.close()
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            if not isinstance(error.__context__, _Refuse):
                raise
            refusal = error.__context__
            self._refuse(refusal.status, refusal.reason, refusal.detail)
            return
        except httptools.HttpParserError:
            if self._discard < 0:
                self._refuse(400, "bad_request", "not a valid HTTP/1.1 request")
            else:
                self.transport.close()
            return
        except httptools.HttpParserUpgrade:
            self._upgrade_refused()
            return
        if self._reading == _HEAD:
            self._head_raw += len(data)
            if self._head_raw > self._limits.max_header_bytes:
                self._refuse(431, "headers_too_large", "request line and headers over max_header_bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = _HEAD
        self._head_bytes = self._head_raw = self._fields = 0
        self._declared = -1
        self._received_at = time.monotonic()
        if self._deadline is None:  # a new connection's deadline runs from the connect
            self._arm(self._limits.header_timeout)
        if self in self.guard.evictable:
            self.guard.evictable.move_to_end(self)

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self._limits.max_header_bytes:
            raise _Refuse(414, "headers_too_large", "request line over max_header_bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        self._fields += 1
        if self._head_bytes > self._limits.max_header_bytes:
            raise _Refuse(431, "headers_too_large", "request line and headers over max_header_bytes")
        if self._fields > self._limits.max_headers:
            raise _Refuse(431, "too_many_headers", "more header fields than max_headers")
        if name.lower() == b"content-length":
            # llhttp has already refused a content-length that is not digits, or two that differ.
            self._declared = int(value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading = _BODY
        super().on_headers_complete()  # builds the scope and the cycle, then calls _start_asgi_task
        extension: dict[object, object] = {"received_at": self._received_at}
        self.scope["extensions"] = {_EXTENSION: extension}
        cycle = self.cycle
        if self._stashed is None or self._stashed[0] is not cycle:
            return  # pipelined behind a request still being served: the application checks it
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
        self._arm(self._limits.body_timeout)

    def on_body(self, body: bytes) -> None:
        if self._discard >= 0 or self.cycle.response_complete:
            return
        size = len(body)
        cycle = self.cycle
        if len(cycle.body) + size > self._limits.max_body_bytes:
            self._answer_early(self.guard.admission.too_large(self.scope))
            return
        self.guard.buffered += size
        self._buffered += size
        if self.guard.buffered > self._limits.max_buffered_body_bytes:
            self._answer_early(self.guard.admission.overloaded(self.scope))
            return
        # uvicorn pauses reading past 64 KiB until the application reads; here nothing reads before
        # the body is complete, and the body is bounded by max_body_bytes.
        cycle.body += body

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        if self._discard >= 0:
            self.transport.close()
            return
        self._reading = _DONE
        super().on_message_complete()
        stashed = self._stashed
        if stashed is not None and stashed[0] is self.cycle:
            self._dispatch(*stashed)

    # ------------------------------------------------------------------------------ handing over

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if cycle.more_body:
            self._stashed = (cycle, app)  # until its body is complete
        else:
            self._dispatch(cycle, app)

    def _dispatch(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._stashed = None
        guard = self.guard
        guard.buffered -= self._buffered
        self._buffered = 0
        guard.evictable.pop(self, None)
        cycle.waiting_for_100_continue = False
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._reading == _DONE and not self.pipeline and self._counted and not self.transport.is_closing():
            self._reading = _IDLE  # waiting for the next keep-alive request
            self.guard.evictable[self] = None

    # ------------------------------------------------------------------------------ refusing

    def _answer_early(self, reply: Reply) -> None:
        """Answer before the body is read (the admission counted it), then drop the rest of the request
        (up to max_body_bytes, within the deadline) so the client reads the answer, not a reset."""
        status, body, headers = reply
        self._stashed = None
        self.guard.buffered -= self._buffered
        self._buffered = 0
        self.cycle.response_complete = True  # nothing may answer this request again
        self.transport.write(_response(status, body, headers))
        budget = self._limits.max_body_bytes
        unsent = self._declared - len(self.cycle.body) if self._declared >= 0 else 0
        if self.cycle.waiting_for_100_continue or not self.cycle.more_body or unsent > budget:
            # The client sends no body before a 100 Continue; or it is all here; or it is too much to drop.
            self.transport.close()
            return
        self._discard = budget
        if self._deadline is None:
            self._arm(self._limits.body_timeout)

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
