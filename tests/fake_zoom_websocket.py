"""A fake Zoom WebSocket endpoint: a real `websockets` server on 127.0.0.1 whose behaviour tests control.

It checks the token the client presents against a `FakeZoom` (so a stale or revoked token is
refused), answers with `build_connection` and heartbeat acks as configured, and records every
handshake, connection and received frame. Tests push frames with `send`, break connections with
`drop` / `write_raw`, and wait on what the server saw with `until` (bounded, real time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fake_zoom import FakeZoom

BUILD_CONNECTION_OK = '{"module":"build_connection","success":true,"content":""}'
HEARTBEAT_ACK = '{"module":"heartbeat"}'


def message_frame(body: Any) -> str:
    """A Zoom `message` frame: the event JSON, serialised, as the string `content`."""
    return json.dumps({"module": "message", "content": json.dumps(body, separators=(",", ":"))})


@dataclass
class Handshake:
    subscription_id: str
    token: str
    status: int  # 101 when accepted


@dataclass
class Connection:
    number: int
    subscription_id: str
    token: str
    websocket: ServerConnection = field(repr=False)
    frames: list[str | bytes] = field(default_factory=list)
    heartbeats: int = 0
    closed: bool = False
    close_code: int | None = None  # the client's close frame (1000, 1001 ...); 1006 when it just went away


@dataclass
class FakeZoomWebSocket:
    zoom: FakeZoom | None = None  # when set, only its valid (issued, not revoked) tokens are accepted
    first_frame: str | None = BUILD_CONNECTION_OK  # None: say nothing after the handshake
    heartbeat_answer: str | None = HEARTBEAT_ACK  # None: stay silent
    refuse_handshakes: int = 0  # answer the next N handshakes with `refuse_status`
    refuse_status: int = 401
    accept_token: Callable[[str], bool] | None = None  # a further condition on tokens (401 when false)
    handshakes: list[Handshake] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    live: dict[str, int] = field(default_factory=dict)
    max_live: dict[str, int] = field(default_factory=dict)  # most connections open at once, per subscription
    url: str = ""
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition, repr=False)

    @property
    def current(self) -> Connection:
        return self.connections[-1]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until `predicate()` holds, re-checked whenever the server sees something."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def until_connections(self, count: int, within: float = 5.0) -> Connection:
        await self.until(lambda: len(self.connections) >= count, within)
        return self.connections[count - 1]

    async def until_heartbeats(self, connection: Connection, count: int, within: float = 5.0) -> None:
        await self.until(lambda: connection.heartbeats == count, within)

    async def send(self, frame: str | bytes, connection: Connection | None = None) -> None:
        await (connection or self.current).websocket.send(frame)

    async def drop(self, code: int = 1001, abrupt: bool = False) -> None:
        """End the current connection: a close frame, or (abrupt) the TCP connection just goes away."""
        websocket = self.current.websocket
        if abrupt:
            websocket.transport.abort()
        else:
            await websocket.close(code, "going away")

    def write_raw(self, data: bytes) -> None:
        """Bytes that are not WebSocket framing, straight onto the current connection's socket."""
        self.current.websocket.transport.write(data)

    # ------------------------------------------------------------------------------ server side

    def _acceptable(self, token: str) -> bool:
        if self.zoom is not None and not self.zoom.valid(f"Bearer {token}"):
            return False
        return self.accept_token is None or self.accept_token(token)

    def _process_request(self, websocket: ServerConnection, request: Request) -> Response | None:
        query = parse_qs(urlsplit(request.path).query)
        subscription = query.get("subscriptionId", [""])[0]
        token = query.get("access_token", [""])[0]
        status = 101
        if self.refuse_handshakes > 0:
            self.refuse_handshakes -= 1
            status = self.refuse_status
        elif not self._acceptable(token):
            status = 401
        self.handshakes.append(Handshake(subscription, token, status))
        if status == 101:
            return None
        return Response(status, HTTPStatus(status).phrase, Headers(), b"Invalid Token\n")

    async def _handler(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None
        query = parse_qs(urlsplit(websocket.request.path).query)
        subscription = query["subscriptionId"][0]
        connection = Connection(len(self.connections) + 1, subscription, query["access_token"][0], websocket)
        self.connections.append(connection)
        self.live[subscription] = self.live.get(subscription, 0) + 1
        self.max_live[subscription] = max(self.max_live.get(subscription, 0), self.live[subscription])
        await self._notify()
        try:
            if self.first_frame is not None:
                await websocket.send(self.first_frame)
            async for frame in websocket:
                connection.frames.append(frame)
                if json.loads(frame).get("module") == "heartbeat":
                    connection.heartbeats += 1
                    if self.heartbeat_answer is not None:
                        await websocket.send(self.heartbeat_answer)
                await self._notify()
        except ConnectionClosed:
            pass
        finally:
            self.live[subscription] -= 1
            connection.closed = True
            connection.close_code = websocket.close_code
            await self._notify()


@contextlib.asynccontextmanager
async def serve_fake_zoom_websocket(fake: FakeZoomWebSocket) -> AsyncIterator[FakeZoomWebSocket]:
    """Serve `fake` on 127.0.0.1 (free port) in the current event loop; `fake.url` is its ws:// URL."""
    async with serve(
        fake._handler, "127.0.0.1", 0, process_request=fake._process_request, ping_interval=None
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        fake.url = f"ws://127.0.0.1:{port}/ws"
        yield fake
