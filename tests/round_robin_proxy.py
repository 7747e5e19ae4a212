"""A small real HTTP/1.1 load balancer for tests: each request goes to the next upstream in turn.

It runs in its own thread with its own event loop, so synchronous tests (AgentProcess) can use it. Each
request is forwarded on a fresh upstream connection with `connection: close`, and the answer is relayed
whole; an upstream that refuses, resets or closes without an answer gives the client a 502, as a load
balancer would (Zoom then retries the event, and the proxy's next pick is another replica).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter

_CONNECTION = re.compile(rb"\r\nconnection:[^\r]*", re.IGNORECASE)
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class RoundRobinProxy:
    """`url` sends each request to the next of `upstreams` ("http://host:port"); `answered[upstream]` counts."""

    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = list(upstreams)
        self.answered: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def __enter__(self) -> RoundRobinProxy:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def _pick(self) -> str:
        upstream = self.upstreams[self._next % len(self.upstreams)]
        self._next += 1
        return upstream

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = _LENGTH.search(head)
                body = await reader.readexactly(int(length.group(1))) if length else b""
                head = _CONNECTION.sub(b"", head[:-4]) + b"\r\nconnection: close\r\n\r\n"
                upstream = self._pick()
                answer = await self._forward(upstream, head + body)
                if answer:
                    self.answered[upstream] += 1
                else:
                    self.failed[upstream] += 1
                    answer = _BAD_GATEWAY
                writer.write(answer)
                await writer.drain()
                return  # every answer says `connection: close`
        finally:
            writer.close()

    async def _forward(self, upstream: str, request: bytes) -> bytes:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            return b""
        try:
            writer.write(request)
            await writer.drain()
            return await reader.read()  # until the upstream closes: the whole answer
        except OSError:
            return b""
        finally:
            writer.close()
