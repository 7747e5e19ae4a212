"""qss_exporter/lease.py against a real redis-server: one holder, compare-and-set renew/release, fencing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from qss_exporter.config import config_from_mapping
from qss_exporter.lease import LeaseLost, RedisLease
from qss_exporter.redis_client import build_redis
from tests.redis_server import ACL_PASSWORD, ACL_USER, RedisServer, add_documented_acl_user

ACME = {"name": "acme", "account_id": "abc123", "webhook_secret_token": "s3cret-token"}
LEASE = 1.0  # seconds; Redis counts its uptime in whole seconds, so a fresh server refuses leases for ~1 s
WRITE = "return redis.call('SET', KEYS[3], ARGV[3])"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    config = config_from_mapping(
        {"accounts": [ACME], "state": {"backend": "redis", "redis": {"url": redis_server.url}}}, environ={}
    )
    client = build_redis(config.state.redis)
    await settled(client)
    yield client
    await client.aclose()


async def settled(client: Redis) -> None:
    """Wait until the fresh server has been up for a lease (until then nobody may acquire)."""
    uptime = int((await client.info("server"))["uptime_in_seconds"])
    await asyncio.sleep(max(0.0, LEASE - uptime))  # whole seconds: at most one second too long


def lease(client: Redis, identity: str, name: str = "poller") -> RedisLease:
    return RedisLease(client, name, key_prefix="qss:", lease_seconds=LEASE, identity=identity)


async def test_one_holder_at_a_time_and_every_acquisition_a_higher_fence(client: Redis) -> None:
    a, b = lease(client, "a"), lease(client, "b")
    assert await a.acquire() == 1
    assert await b.acquire() is None
    assert await a.holder() == "a"
    assert await a.renew() == 1
    assert 0 < await client.pttl(a.key) <= 1000
    assert await a.release() is True
    assert await a.holder() is None
    assert await b.acquire() == 2
    assert await b.holder() == "b"
    # Another name is another lease, with its own fence.
    assert await lease(client, "a", "websocket:acme").acquire() == 1


async def test_an_expired_holder_cannot_renew_or_release_its_successors_lease(client: Redis) -> None:
    a, b = lease(client, "a"), lease(client, "b")
    assert await a.acquire() == 1
    await client.pexpire(a.key, 1)  # as if a's renewals had stopped
    await asyncio.sleep(0.01)
    assert await b.acquire() == 2
    assert await a.renew() is None
    assert not a.holding
    assert await a.release() is False
    assert await b.holder() == "b"
    assert await b.renew() == 2


async def test_fenced_writes_pass_for_the_holder_only(client: Redis) -> None:
    a, b = lease(client, "a"), lease(client, "b")
    await a.acquire()
    assert await a.fenced(WRITE, ["qss:data"], ["from a"]) == b"OK"
    await client.pexpire(a.key, 1)
    await asyncio.sleep(0.01)
    # Between a's expiry and b's acquisition, a's writes are refused already: nobody holds the lease.
    with pytest.raises(LeaseLost):
        await a.fenced(WRITE, ["qss:data"], ["late a"])
    await b.acquire()
    with pytest.raises(LeaseLost):
        await a.fenced(WRITE, ["qss:data"], ["late a"])
    assert await b.fenced(WRITE, ["qss:data"], ["from b"]) == b"OK"
    assert await client.get("qss:data") == b"from b"
    with pytest.raises(LeaseLost):
        await lease(client, "c").fenced(WRITE, ["qss:data"], ["never held"])


async def test_after_redis_lost_its_keys_only_the_holder_takes_the_lease_back(
    redis_server: RedisServer, client: Redis
) -> None:
    a, b = lease(client, "a"), lease(client, "b")
    assert await a.acquire() == 1
    await asyncio.to_thread(redis_server.kill)
    await asyncio.to_thread(redis_server.start)  # no persistence: the lease and its fence are gone
    # A newcomer must not take the vanished lease while the holder may still run its source ...
    assert await b.acquire() is None
    # ... the holder renews it, with a new fence (the counter restarted too, so the token is what tells).
    assert await a.renew() == 1
    assert await a.holder() == "a"
    await a.release()
    await settled(client)
    assert await b.acquire() == 2  # once Redis has been up for a lease, a free lease is anybody's


async def test_the_documented_acl_is_enough_for_the_lease(redis_server: RedisServer, client: Redis) -> None:
    """docs/config.md's least-privilege ACL user (state.redis.username) can do everything a lease does."""
    await add_documented_acl_user(client)
    config = config_from_mapping(
        {
            "accounts": [ACME],
            "state": {
                "backend": "redis",
                "redis": {"url": redis_server.url, "username": ACL_USER, "password": ACL_PASSWORD},
            },
        },
        environ={},
    )
    restricted = build_redis(config.state.redis)
    try:
        held = lease(restricted, "a")
        assert await held.acquire() == 1
        assert await held.renew() == 1
        assert await held.fenced(WRITE, ["qss:data"], ["ok"]) == b"OK"
        assert await held.holder() == "a"
        assert await held.release() is True
        with pytest.raises(NoPermissionError):
            await restricted.set("other:key", "outside the prefix")
    finally:
        await restricted.aclose()
