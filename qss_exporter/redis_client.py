"""The one place that builds a Redis client (`redis.asyncio`) from `state.redis`, and knows whether Redis answered.

Everything that talks to Redis (the leader lease; shared pipeline state) takes its client from here, so
the address, the credentials, TLS and the small timeouts hold everywhere. Nothing else constructs one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from qss_exporter.config import RedisConfig

__all__ = ["REDIS_ERRORS", "RedisBackend", "build_redis", "redis_call"]

log = logging.getLogger(__name__)

# What a Redis call may raise when Redis is down, slow or refuses us: callers catch exactly these.
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError, TimeoutError)
# A pooled connection idle this long is PINGed before use, so a Redis restart is noticed on the spot.
HEALTH_CHECK_SECONDS = 10
REACH_RETRY_SECONDS = 1.0

T = TypeVar("T")
_abandoned: set[asyncio.Future[Any]] = set()  # calls whose caller left (cancelled, or timed out) until they end


def build_redis(config: RedisConfig) -> Redis:
    """A client for `config`; it connects lazily, on its first command."""
    url = config.url
    password = config.effective_password
    tls: dict[str, object] = {}
    if url.tls:
        tls = {
            "ssl": True,
            "ssl_ca_certs": None if config.ca_file is None else str(config.ca_file),
            "ssl_certfile": None if config.cert_file is None else str(config.cert_file),
            "ssl_keyfile": None if config.key_file is None else str(config.key_file),
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": True,
        }
    return Redis(
        host=url.host,
        port=url.port,
        db=url.db,
        username=config.effective_username,
        password=None if password is None else password.reveal(),
        socket_connect_timeout=config.connect_timeout_seconds,
        socket_timeout=config.command_timeout_seconds,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_SECONDS,
        # One immediate retry on a fresh connection: it covers a pooled connection that Redis closed
        # (a restart); more, or a backoff, would hold a caller far beyond the command timeout.
        retry=Retry(NoBackoff(), 1),
        client_name="qss-exporter",
        **tls,  # type: ignore[arg-type]  # ssl_* keywords, typed individually by redis-py
    )


async def redis_call(call: Awaitable[T], seconds: float | None = None) -> T:
    """Await a Redis call (within `seconds`, else TimeoutError) so that cancelling the caller always stops it.

    redis-py sends every command under asyncio.wait_for, which on Python 3.11 returns the result instead
    of raising when its task is cancelled in the loop iteration where the send completes (CPython
    gh-86296; 3.12 rebuilt wait_for on asyncio.timeout). Awaited directly, a command could eat the one
    cancellation a TaskGroup or a shutdown sends, and the caller's loop would run on: a hang. So the
    call runs in a task of its own, and the caller waits with asyncio.wait, which never swallows one.
    The call is cancelled when the caller leaves; if the call swallows that, it ends with its command
    (redis-py's socket timeouts bound it) and its outcome is dropped, as on a timeout.
    """
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        _abandon(task)
        raise
    if not done:
        _abandon(task)
        raise TimeoutError(f"no answer from Redis within {seconds:g} s")
    return task.result()


def _abandon(task: asyncio.Future[Any]) -> None:
    task.cancel()
    _abandoned.add(task)  # the loop keeps only weak references to tasks
    task.add_done_callback(_forget)


def _forget(task: asyncio.Future[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: nobody waits for it any more, and asyncio would log it as unhandled


class RedisBackend:
    """The configured Redis: its client, and whether it has answered since the agent started (readiness)."""

    def __init__(
        self,
        config: RedisConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.client = build_redis(config)
        self.reached = False
        self._sleep = sleep

    @property
    def where(self) -> str:
        """The URL for logs, with any password as `<secret>`."""
        return str(self.config.url)

    async def reach(self) -> None:
        """PING until Redis answers once (the agent is not ready before); logs the first failure only."""
        logged = False
        while not self.reached:
            try:
                await redis_call(self.client.ping())
            except REDIS_ERRORS as error:
                if not logged:
                    log.warning("state: cannot reach Redis at %s (%s); not ready until it answers", self.where, error)
                    logged = True
                await self._sleep(REACH_RETRY_SECONDS)
                continue
            self.reached = True
            log.info("state: Redis at %s answers", self.where)

    async def close(self) -> None:
        await self.client.aclose()
