"""tests/sim_clock.py itself: simulated time moves on only when nothing can happen first."""

from __future__ import annotations

import asyncio

from tests.sim_clock import SimClock

START = 1_750_000_000.0


async def test_work_that_ends_as_the_clock_looks_sleeps_before_time_moves_on() -> None:
    """Regression: a poller test saw every backlog age an hour late (a 3316 s "lag", constant).

    A SQLite call or a request that ends resumes its caller, which sleeps again through a task of its
    own (the poller's `_nap`): that task starts one loop turn later. The driver counted its quiet turns
    from before the call ended, so when the end fell on its last turn it moved the clock to the next
    sleeper it knew of (the flush loop, an hour away) before the caller's sleep was registered. Here
    the call ends exactly when the driver looks, every time.
    """
    clock = SimClock(START)
    ended = asyncio.get_running_loop().create_future()
    woke: list[float] = []

    def busy() -> bool:
        if not ended.done():  # the call ends as the driver asks: its caller runs on the next turn
            ended.set_result(None)
        return False

    async def caller() -> None:
        await ended
        sleeper = asyncio.ensure_future(clock.sleep(15))  # as Poller._nap does
        await sleeper
        woke.append(clock())

    async with clock.running():
        far = asyncio.ensure_future(clock.sleep(3600))  # the flush loop's nap
        await asyncio.sleep(0)  # registered before the driver's first look
        clock.busy.append(busy)
        work = asyncio.create_task(caller())
        async with asyncio.timeout(5):
            await work
        assert woke == [START + 15]
        assert not far.done()
        far.cancel()
