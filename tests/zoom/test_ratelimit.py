"""qss_exporter.zoom.ratelimit in simulated time: windows, the daily budget, backoff."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

from qss_exporter.errors import BudgetExhausted
from qss_exporter.zoom.ratelimit import (
    WINDOW_MARGIN,
    Backoff,
    DailyBudget,
    MemoryLedger,
    SlidingWindow,
    next_utc_midnight,
    utc_day,
)
from tests.sim_clock import SimClock

LATE = datetime(2026, 3, 2, 23, 59, 58, tzinfo=UTC).timestamp()


def most_within(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    return max(sum(1 for other in stamps if stamp <= other < stamp + window) for stamp in stamps)


async def test_a_window_admits_at_most_its_limit_in_any_period() -> None:
    clock = SimClock(LATE)
    window = SlidingWindow(5, 1.0, clock=clock, sleep=clock.sleep)
    stamps: list[float] = []

    async def call() -> None:
        await window.acquire()
        stamps.append(clock())

    async with clock.running():
        await asyncio.gather(*(call() for _ in range(23)))
    assert len(stamps) == 23
    assert most_within(stamps, 1.0) == 5
    assert most_within(stamps, 1.0 + WINDOW_MARGIN - 1e-6) == 5  # Zoom's window, widened by the margin
    assert stamps[-1] - stamps[0] == pytest.approx(4 * (1 + WINDOW_MARGIN))


async def test_a_pause_holds_every_caller_back() -> None:
    clock = SimClock(LATE)
    window = SlidingWindow(10, 60.0, clock=clock, sleep=clock.sleep)
    async with clock.running():
        await window.acquire()
        window.pause_until(LATE + 30)
        window.pause_until(LATE + 10)  # an earlier pause never shortens a longer one
        await window.acquire()
    assert clock() == LATE + 30


def test_a_window_needs_a_limit_and_a_period() -> None:
    clock = SimClock(LATE)
    with pytest.raises(ValueError, match="limit >= 1"):
        SlidingWindow(0, 1.0, clock=clock, sleep=clock.sleep)


def test_utc_days_and_midnights() -> None:
    assert utc_day(LATE) == "2026-03-02"
    assert next_utc_midnight(LATE) == datetime(2026, 3, 3, tzinfo=UTC).timestamp()
    assert utc_day(next_utc_midnight(LATE)) == "2026-03-03"


async def test_the_daily_budget_stops_at_its_limit_and_resets_at_utc_midnight() -> None:
    clock = SimClock(LATE)
    ledger = MemoryLedger()
    seen: list[int] = []
    budget = DailyBudget("acme", 3, ledger, clock=clock, on_change=seen.append)
    for _ in range(3):
        await budget.spend()
    with pytest.raises(BudgetExhausted) as caught:
        await budget.spend()
    assert caught.value.resume_at == next_utc_midnight(LATE)
    assert budget.used() == 3
    assert ledger.counts == {("acme", "2026-03-02"): 3}
    clock.now = caught.value.resume_at
    assert budget.used() == 0  # a new day
    await budget.spend()
    assert ledger.counts[("acme", "2026-03-03")] == 1
    assert seen == [1, 2, 3, 3, 1]


async def test_a_restarted_budget_continues_from_the_ledger() -> None:
    clock = SimClock(LATE)
    ledger = MemoryLedger()
    first = DailyBudget("acme", 2, ledger, clock=clock)
    await first.spend()
    second = DailyBudget("acme", 2, ledger, clock=clock)
    await second.load()
    assert second.used() == 1
    await second.spend()
    with pytest.raises(BudgetExhausted):
        await second.spend()


async def test_zoom_saying_the_day_is_over_blocks_until_its_time() -> None:
    clock = SimClock(LATE - 3600)
    budget = DailyBudget("acme", 100, MemoryLedger(), clock=clock)
    until = LATE + 7200  # Zoom's Retry-After may point past midnight
    assert await budget.exhaust(until) == until
    assert budget.used() == 100
    clock.now = LATE + 10  # a new UTC day, but Zoom said to wait longer
    with pytest.raises(BudgetExhausted) as caught:
        await budget.spend()
    assert caught.value.resume_at == until
    clock.now = until
    await budget.spend()
    # Without a usable Retry-After: the next UTC midnight.
    assert await budget.exhaust(None) == next_utc_midnight(until)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(3))
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)]:
        delays = [backoff.delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 40  # jittered, not one value
