"""qss_exporter/redis_client.py against a real redis-server: address, credentials, TLS, timeouts, reachability."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import AuthenticationError, ConnectionError, TimeoutError

from qss_exporter.config import RedisConfig, config_from_mapping
from qss_exporter.redis_client import REACH_RETRY_SECONDS, REDIS_ERRORS, RedisBackend, build_redis, redis_call
from tests.redis_server import RedisServer, TlsFiles, cancel_when_sent

ACME = {"name": "acme", "account_id": "abc123", "webhook_secret_token": "s3cret-token"}


def redis_config(redis: dict[str, Any], tmp_path: Path | None = None) -> RedisConfig:
    config = config_from_mapping(
        {"accounts": [ACME], "state": {"backend": "redis", "redis": redis}}, base_dir=tmp_path, environ={}
    )
    return config.state.redis


async def round_trip(config: RedisConfig) -> bytes | None:
    client = build_redis(config)
    try:
        await client.set("qss:test", b"value")
        value = await client.get("qss:test")
        assert value is None or isinstance(value, bytes)
        return value
    finally:
        await client.aclose()


async def test_a_client_from_the_url_reaches_the_server_and_names_itself(redis_server: RedisServer) -> None:
    config = redis_config({"url": redis_server.url.replace("/0", "/3")})
    assert await round_trip(config) == b"value"
    client = build_redis(config)
    try:
        (entry,) = [c for c in await client.client_list() if c["name"] == "qss-exporter"]
        assert entry["db"] == "3"
    finally:
        await client.aclose()


@pytest.mark.parametrize("where", ["url", "key", "file"])
async def test_a_password_from_the_url_a_key_or_a_file(tmp_path: Path, where: str) -> None:
    server = RedisServer(tmp_path / "redis", password="s3cret/p@ss")
    server.start()
    try:
        (tmp_path / "password").write_text("s3cret/p@ss\n")
        url = server.url
        settings: dict[str, Any] = {
            "url": {"url": url.replace("//", "//:s3cret%2Fp%40ss@")},
            "key": {"url": url, "password": "s3cret/p@ss"},
            "file": {"url": url, "password_file": "password"},
        }[where]
        assert await round_trip(redis_config(settings, tmp_path)) == b"value"
        with pytest.raises(AuthenticationError) as refused:
            await round_trip(redis_config({"url": url, "password": "wrong"}))
        assert "wrong" not in str(refused.value)
    finally:
        server.kill()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return TlsFiles.create(tmp_path_factory.mktemp("tls"))


async def test_tls_with_a_client_certificate(tmp_path: Path, tls_files: TlsFiles) -> None:
    server = RedisServer(tmp_path / "redis", tls=tls_files, client_certificates=True)
    server.start()
    try:
        complete = {
            "url": server.url,
            "ca_file": str(tls_files.ca),
            "cert_file": str(tls_files.client_cert),
            "key_file": str(tls_files.client_key),
        }
        assert await round_trip(redis_config(complete)) == b"value"
        # Without the client certificate the server refuses the handshake; without the CA we refuse the server.
        for missing in (("cert_file", "key_file"), ("ca_file",)):
            partial = {key: value for key, value in complete.items() if key not in missing}
            with pytest.raises(ConnectionError):
                await round_trip(redis_config(partial))
        # Plain text to a TLS port is not silently accepted either.
        with pytest.raises(REDIS_ERRORS):
            await round_trip(redis_config({"url": server.url.replace("rediss://", "redis://")}))
    finally:
        server.kill()


async def test_a_frozen_server_costs_a_command_its_timeout_not_more(redis_server: RedisServer) -> None:
    """SIGSTOP: the kernel still accepts connections, but nothing answers: the command timeout ends the wait."""
    config = redis_config({"url": redis_server.url, "command_timeout_seconds": 0.2, "connect_timeout_seconds": 0.2})
    client = build_redis(config)
    try:
        await client.ping()
        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            async with asyncio.timeout(5):  # the guard of this test; the client gives up long before
                with pytest.raises(TimeoutError):
                    await client.get("qss:anything")
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        assert await client.ping()  # and works again once the server does
    finally:
        await client.aclose()


async def test_a_call_gives_up_at_its_own_deadline_and_its_command_is_cancelled(redis_server: RedisServer) -> None:
    """redis_call's deadline, shorter than the client's command timeout, ends the wait; the command is cancelled."""
    client = build_redis(redis_config({"url": redis_server.url, "command_timeout_seconds": 3}))
    try:
        assert await redis_call(client.ping(), 1.0) is True
        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            command = asyncio.ensure_future(client.get("qss:anything"))
            with pytest.raises(REDIS_ERRORS, match=r"no answer from Redis within 0\.2 s"):
                await redis_call(command, 0.2)
            async with asyncio.timeout(1):  # cancelled, not left waiting for its 3 s command timeout
                await asyncio.wait({command})
            assert command.cancelled()
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        assert await redis_call(client.ping(), 1.0) is True
    finally:
        await client.aclose()


async def test_the_backend_is_reached_once_redis_answers(redis_server: RedisServer) -> None:
    redis_server.kill()
    backend = RedisBackend(redis_config({"url": redis_server.url}))
    reach = asyncio.create_task(backend.reach())
    try:
        await asyncio.sleep(0.3)
        assert not backend.reached
        await asyncio.to_thread(redis_server.start)
        async with asyncio.timeout(5):
            await reach
        assert backend.reached
    finally:
        reach.cancel()
        await backend.close()


async def test_one_cancel_stops_reaching_a_redis_that_refuses_us_even_when_redis_py_swallows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's shutdown cancels reach() once: a PING whose send eats that cancellation must not hang it."""
    server = RedisServer(tmp_path / "redis", password="s3cret")
    server.start()
    backend = RedisBackend(redis_config({"url": server.url}))  # no password: Redis refuses every try
    reach = asyncio.create_task(backend.reach())
    try:
        fired = cancel_when_sent(monkeypatch, reach, b"")  # the first command it sends
        async with asyncio.timeout(5):
            await fired.wait()
        done, _ = await asyncio.wait({reach}, timeout=3 * REACH_RETRY_SECONDS)
        assert done, "reach() went on trying after its cancellation"
        assert reach.cancelled()
        assert not backend.reached
    finally:
        reach.cancel()
        await backend.close()
        server.kill()
