"""Simulated time that runs forward by itself: for code with `clock` and `sleep` parameters and real HTTP.

`sleep(seconds)` parks the caller on a deadline. A driver task moves the clock to the earliest
deadline whenever nothing else can happen first: no HTTP request in flight (counted by the
transport from `transport()`), and nothing in progress that `busy` callables report (the poller's
SQLite thread). So a request is stamped by the fake server at exactly the simulated time it was
sent, and a day of rate limits passes in milliseconds. Unlike tests/virtual_time.py, tests never
`advance` by hand; they wait (bounded, in real time) for a condition.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

ROUNDS = 30  # event-loop turns in a row with nothing in flight before time may move on


def _settled() -> bool:
    """Nothing but the driver is runnable: no task can sleep, call or start one before time moves on.

    asyncio's ready queue (a CPython implementation detail, stable since 3.4; without it the ROUNDS
    turns decide alone) holds every callback due on this turn or the next, task steps included.
    """
    ready = getattr(asyncio.get_running_loop(), "_ready", None)
    return ready is not None and not ready


class SimClock:
    def __init__(self, start: float) -> None:
        self.now = start
        self.in_flight = 0
        self.busy: list[Callable[[], bool]] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), future))
        await future

    def transport(self) -> httpx.AsyncBaseTransport:
        return _CountingTransport(self, httpx.AsyncHTTPTransport())

    def _idle(self) -> bool:
        return self.in_flight == 0 and not any(busy() for busy in self.busy)

    async def _drive(self) -> None:
        while True:
            # Idle for ROUNDS turns *in a row*: a request or a SQLite call that ends resumes its caller,
            # which may need a few turns before it sleeps again (a task it creates starts on the next
            # turn). Counting the turns from before it ended let the clock leap past that sleep to the
            # next sleeper, up to an hour at once, whenever the end fell on the last turns.
            quiet = busy = 0
            while quiet < ROUNDS:
                if self._idle():
                    quiet, busy = quiet + 1, 0
                    if _settled():
                        break
                    if quiet < ROUNDS:
                        await asyncio.sleep(0)
                    continue
                quiet, busy = 0, busy + 1
                # A SQLite call ends within a few turns: spin. A request may take longer: wait in real time.
                await asyncio.sleep(0 if busy < ROUNDS else 0.0005)
            while self._sleepers and self._sleepers[0][2].done():  # cancelled sleepers
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                await asyncio.sleep(0.0005)
                continue
            deadline, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, deadline)
            future.set_result(None)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[SimClock]:
        driver = asyncio.create_task(self._drive())
        try:
            yield self
        finally:
            driver.cancel()
            await asyncio.gather(driver, return_exceptions=True)


class _CountingTransport(httpx.AsyncBaseTransport):
    """Counts a request in flight from the moment httpx hands it over until its body is read."""

    def __init__(self, clock: SimClock, inner: httpx.AsyncBaseTransport) -> None:
        self._clock = clock
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._clock.in_flight += 1
        try:
            response = await self._inner.handle_async_request(request)
            await response.aread()
            return response
        finally:
            self._clock.in_flight -= 1

    async def aclose(self) -> None:
        await self._inner.aclose()


async def wait_for(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait in real time (bounded) until `condition()` holds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the conditions are plain state, with no event to wait on
            await asyncio.sleep(0.002)
