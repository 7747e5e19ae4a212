"""A lease with a fencing token in Redis: at most one holder per name, kept by renewing it (docs/deploy.md).

The well-known single-instance Redis lock (redis.io, "Distributed Locks with Redis", the single-instance
algorithm): acquire with `SET key token NX PX ttl`, where the token is random per acquisition; renew and
release with Lua scripts that act only while the key still holds this holder's token (compare-and-set),
so a holder whose lease expired can never extend or delete its successor's. Each acquisition also
takes a fencing token from `INCR` (M. Kleppmann, "How to do distributed locking", 2016): a number that
grows with every new holder. Writes made on the holder's behalf go through `fenced`, which refuses
them once the lease is no longer this holder's, so a holder that paused past its lease cannot
overwrite its successor's work.

The other half of that well-known advice is also here: after Redis restarts without persistence the
keys are gone, so nobody acquires while Redis has been up for less than one lease ("delayed restart");
only the previous holder may take its vanished key back while renewing. This module knows nothing
of the sources it guards (leadership.py does).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import ResponseError

__all__ = ["FENCED", "LeaseLost", "RedisLease"]

# KEYS[1] the lease, KEYS[2] its fence counter; ARGV[1] the token, ARGV[2] the lease in milliseconds.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
# Renew while the key holds our token. A key that vanished (Redis restarted without persistence) is
# taken back at once, with a new fence: nobody else may acquire until Redis has been up for a lease.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return redis.call('INCR', KEYS[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
FENCED = "FENCED"  # the error a fenced write gets once the lease has another holder, or none
# Prepended to a fenced script: KEYS[1], KEYS[2], ARGV[1], ARGV[2] are the lease's; the caller's own
# keys and arguments follow (KEYS[3]..., ARGV[3]...).
_GUARD = f"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return redis.error_reply('{FENCED}')
end
"""


class LeaseLost(Exception):
    """A fenced write was refused: this replica no longer holds the lease."""


class RedisLease:
    """One named lease in Redis, seen from one replica (`identity` says which, for people reading Redis)."""

    def __init__(self, client: Redis, name: str, *, key_prefix: str, lease_seconds: float, identity: str) -> None:
        self.name = name
        # One hash tag for both keys, so that they share a slot on a Redis Cluster (scripts need that).
        self.key = f"{key_prefix}{{leader:{name}}}"
        self.fence_key = f"{self.key}:fence"
        self._client = client
        self._ttl_ms = max(1, round(lease_seconds * 1000))
        self._identity = identity
        self._token: str | None = None
        self.fence = 0  # the fencing token of the current holding; 0 when not holding
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def holding(self) -> bool:
        return self._token is not None

    async def acquire(self) -> int | None:
        """Take the lease if nobody holds it: the new fencing token, or None (held elsewhere, or Redis just started)."""
        if await self._redis_uptime() * 1000 < self._ttl_ms:
            return None  # a restarted Redis forgot its leases: let the previous holder renew first
        token = f"{self._identity}/{secrets.token_hex(8)}"
        fence = int(await self._acquire(keys=[self.key, self.fence_key], args=[token, self._ttl_ms]))
        if not fence:
            return None
        self._token, self.fence = token, fence
        return fence

    async def renew(self) -> int | None:
        """Extend the lease by its full length: the fencing token (new if the key had vanished), or None if lost."""
        if self._token is None:
            return None
        fence = int(await self._renew(keys=[self.key, self.fence_key], args=[self._token, self._ttl_ms]))
        if not fence:
            self._token, self.fence = None, 0
            return None
        self.fence = fence
        return fence

    def forget(self) -> None:
        """Stop considering the lease ours (the holder stepped down); Redis lets it expire."""
        self._token, self.fence = None, 0

    async def release(self) -> bool:
        """Give the lease up (at shutdown) so another replica takes it at its next try; False if it was not ours."""
        token, self._token, self.fence = self._token, None, 0
        if token is None:
            return False
        return bool(await self._release(keys=[self.key], args=[token]))

    async def holder(self) -> str | None:
        """Who holds the lease now (its identity), for logs; None when nobody does."""
        value = await self._client.get(self.key)
        if value is None:
            return None
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        return text.rpartition("/")[0]

    async def fenced(self, script: str, keys: Sequence[str] = (), args: Sequence[str | int | float] = ()) -> object:
        """Run Lua `script` only while this replica holds the lease with its current fence; else raise LeaseLost.

        In `script`, the caller's keys start at KEYS[3] and its arguments at ARGV[3].
        """
        if self._token is None:
            raise LeaseLost(self.name)
        try:
            return await self._client.eval(
                _GUARD + script,
                2 + len(keys),
                self.key,
                self.fence_key,
                *keys,
                self._token,
                str(self.fence),
                *args,
            )
        except ResponseError as error:
            if str(error) == FENCED:
                raise LeaseLost(self.name) from None
            raise

    async def _redis_uptime(self) -> float:
        info = await self._client.info("server")
        return float(info.get("uptime_in_seconds", 0))
