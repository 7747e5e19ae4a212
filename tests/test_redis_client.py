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
from qss_exporter.redis_client import REDIS_ERRORS, RedisBackend, build_redis
from tests.redis_server import RedisServer, TlsFiles

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
