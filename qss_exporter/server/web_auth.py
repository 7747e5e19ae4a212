"""Basic authentication, rate limit and response headers around the whole metrics ASGI app, with
exporter-toolkit's semantics: every path is behind the authentication (/healthz and /readyz too),
401 with `WWW-Authenticate: Basic` for missing or wrong credentials, 429 beyond `rate_limit`.

bcrypt costs ~100 ms per check at cost 10, so, as the toolkit does, the outcome of each
(user, hash, password) is cached, and only one check runs at a time. Here it runs on a worker
thread (bcrypt releases the GIL), so that the event loop, which also serves Zoom's webhooks, never
waits for it; and at most `MAX_WAITING` checks may queue, beyond which the answer is 429 at once:
guessing passwords costs the agent at most one core's share of one thread, never its webhooks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import bcrypt
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qss_exporter.server.webconfig import AuthSettings

__all__ = ["WebAuth"]

MAX_WAITING = 8
_CACHE_SIZE = 100
_MAX_PASSWORD = 72  # bcrypt uses at most 72 bytes; bcrypt 5 refuses longer ones
# Checked for an unknown user, so that the answer takes as long as for a known one (no enumeration).
_DECOY_HASH = b"$2b$10$fgAJHzeREO/GP0c0YUs.Cu5jk8GpM2abmkN.noKfn/TCOrGd8I1e."
_Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]
_UNAUTHORISED: _Reply = (401, b"Unauthorized\n", [(b"www-authenticate", b"Basic")])
_TOO_MANY: _Reply = (429, b"Too Many Requests\n", [])


def _credentials(scope: Scope) -> tuple[str, bytes] | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, encoded = value.partition(b" ")
            if scheme.lower() != b"basic":
                return None
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                return None
            user, separator, password = decoded.partition(b":")
            if not separator:
                return None
            return user.decode("utf-8", "replace"), password
    return None


class WebAuth:
    """ASGI middleware; `settings` may be replaced while running (the web configuration file changed)."""

    def __init__(self, app: ASGIApp, settings: AuthSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self._clock = clock
        self._cache: dict[bytes, bool] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcrypt")
        self._waiting = 0
        self.checks = 0  # bcrypt checks run (tests, and the number that matters under a guessing attack)
        self.settings = settings

    @property
    def settings(self) -> AuthSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._tokens = float(settings.rate_burst)
        self._refilled = self._clock()
        self._cache.clear()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self._settings
        if settings.headers:
            send = self._adding_headers(send, settings.headers)
        if settings.rate_interval and not self._take_token(settings):
            await _answer(send, _TOO_MANY)
            return
        if settings.users:
            allowed = await self._authorised(scope, settings)
            if allowed is not True:
                await _answer(send, _UNAUTHORISED if allowed is False else _TOO_MANY)
                return
        await self.app(scope, receive, send)

    def _take_token(self, settings: AuthSettings) -> bool:
        now = self._clock()
        self._tokens = min(float(settings.rate_burst), self._tokens + (now - self._refilled) / settings.rate_interval)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def _authorised(self, scope: Scope, settings: AuthSettings) -> bool | None:
        """True, False, or None when too many checks are already waiting (answered 429)."""
        credentials = _credentials(scope)
        if credentials is None:
            return False
        user, password = credentials
        if len(password) > _MAX_PASSWORD:
            return False
        hashed = settings.users.get(user)
        known = hashed is not None
        hashed = hashed if hashed is not None else _DECOY_HASH
        key = hashlib.sha256(b"\0".join((user.encode(), hashed, password))).digest()
        cached = self._cache.get(key)
        if cached is not None:
            return cached and known
        if self._waiting >= MAX_WAITING:
            return None
        self._waiting += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(self._executor, self._check, password, hashed)
        finally:
            self._waiting -= 1
        if len(self._cache) >= _CACHE_SIZE:
            for old in list(self._cache)[: _CACHE_SIZE // 10]:
                del self._cache[old]
        self._cache[key] = ok and known
        return ok and known

    def _check(self, password: bytes, hashed: bytes) -> bool:
        self.checks += 1
        try:
            return bcrypt.checkpw(password, hashed)
        except ValueError:
            return False

    @staticmethod
    def _adding_headers(send: Send, headers: tuple[tuple[bytes, bytes], ...]) -> Send:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        return with_headers


async def _answer(send: Send, reply: _Reply) -> None:
    status, body, headers = reply
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body)), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
