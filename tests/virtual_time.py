"""Virtual time for code that takes `clock` and `sleep` parameters: tests move time, nothing sleeps through it.

`sleep(seconds)` parks the caller until a test `advance`s the clock past its deadline; sleepers
wake in deadline order, each with the clock set to its own deadline.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

SETTLE_ROUNDS = 20  # event-loop turns given to a woken sleeper before the next one wakes


class VirtualTime:
    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start
        self.requested: list[float] = []  # every duration passed to sleep(), in call order
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._changed = asyncio.Condition()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.requested.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), future))
        async with self._changed:
            self._changed.notify_all()
        await future

    def pending(self) -> list[float]:
        """Deadlines of the sleepers still waiting, earliest first."""
        return sorted(deadline for deadline, _, future in self._sleepers if not future.done())

    async def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`, waking every sleeper whose deadline is reached."""
        target = self.now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            if future.done():  # cancelled
                continue
            self.now = max(self.now, deadline)
            future.set_result(None)
            for _ in range(SETTLE_ROUNDS):
                await asyncio.sleep(0)
        self.now = max(self.now, target)

    async def until_sleeping(self, seconds: float, count: int = 1, within: float = 5.0) -> None:
        """Wait (in real time, bounded) until `count` sleeps of exactly `seconds` have been requested."""

        def reached() -> bool:
            return sum(1 for requested in self.requested if requested == seconds) >= count

        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(reached)
