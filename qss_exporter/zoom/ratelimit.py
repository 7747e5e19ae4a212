"""Client-side limits for Zoom's REST API: a sliding window per rate-limit label, a daily budget, backoff.

Zoom limits each account by the label of the endpoint (Heavy: N per second, Resource-intensive: N per
minute) and caps Heavy + Resource-intensive calls together per day (REFERENCE.md §2.3). The limits
are shared by every app on the account, so the agent keeps below operator-set numbers rather than
Zoom's. Time is injected (`clock`, `sleep`): tests run windows and days without waiting.

Why not aiolimiter or limits: aiolimiter is a leaky bucket (a full bucket plus its refill lets ~2N
calls into one window) on the event loop's own clock; `limits` reads the wall clock itself; neither
keeps a daily count that survives restarts, which the budget below does through a ledger.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from qss_exporter.errors import BudgetExhausted

__all__ = [
    "LABELS",
    "AccountLimits",
    "Backoff",
    "BudgetLedger",
    "DailyBudget",
    "Label",
    "MemoryLedger",
    "SlidingWindow",
    "next_utc_midnight",
    "utc_day",
]

Label = Literal["heavy", "resource_intensive"]
LABELS: tuple[Label, ...] = ("heavy", "resource_intensive")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Windows are 5 % longer than Zoom's: network jitter must not let N+1 calls arrive within one of its windows.
WINDOW_MARGIN = 0.05
_EPSILON = 1e-9


def utc_day(when: float) -> str:
    """The UTC calendar day of a Unix time, `YYYY-MM-DD`; Zoom's daily limits reset at 00:00 UTC."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d")


def next_utc_midnight(when: float) -> float:
    day = datetime.fromtimestamp(when, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day + timedelta(days=1)).timestamp()


class SlidingWindow:
    """At most `limit` calls start within any `period` seconds (a log of start times, not a bucket).

    Callers queue on a lock, so a waiting call keeps its place; `pause_until` holds every call back
    after Zoom answered 429 for this label.
    """

    def __init__(self, limit: int, period: float, *, clock: Clock, sleep: Sleep) -> None:
        if limit < 1 or period <= 0:
            raise ValueError(f"a window needs limit >= 1 and period > 0, got {limit} per {period} s")
        self.limit = limit
        self.span = period * (1 + WINDOW_MARGIN)
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._lock = asyncio.Lock()
        self._paused_until = 0.0

    def pause_until(self, when: float) -> None:
        self._paused_until = max(self._paused_until, when)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await self._sleep(self._paused_until - now)
                    continue
                starts = self._starts
                while starts and starts[0] <= now - self.span + _EPSILON:
                    starts.popleft()
                if len(starts) < self.limit:
                    starts.append(now)
                    return
                await self._sleep(starts[0] + self.span - now)


class BudgetLedger(Protocol):
    """Where daily call counts are kept (the poller's SQLite state), so that a restart does not reset them."""

    async def spend(self, scope: str, day: str, limit: int) -> int | None:
        """Count one call; the new count, or None (nothing counted) when `limit` is reached."""

    async def exhaust(self, scope: str, day: str, limit: int) -> None:
        """Zoom said the day's limit is reached: count the day as full."""

    async def used(self, scope: str, day: str) -> int:
        """Calls counted for `scope` on `day`."""


class MemoryLedger:
    """A BudgetLedger that forgets on restart (tests, and a poller without a state file)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    async def spend(self, scope: str, day: str, limit: int) -> int | None:
        used = self.counts.get((scope, day), 0)
        if used >= limit:
            return None
        self.counts[scope, day] = used + 1
        return used + 1

    async def exhaust(self, scope: str, day: str, limit: int) -> None:
        self.counts[scope, day] = max(limit, self.counts.get((scope, day), 0))

    async def used(self, scope: str, day: str) -> int:
        return self.counts.get((scope, day), 0)


class DailyBudget:
    """Heavy + Resource-intensive calls of one account per UTC day; never more than `limit`.

    Each call is counted in the ledger *before* it is sent, so that neither a crash nor a restart can
    lead to more than `limit` calls in a day.
    """

    def __init__(
        self,
        scope: str,
        limit: int,
        ledger: BudgetLedger,
        *,
        clock: Clock,
        on_change: Callable[[int], None] = lambda used: None,
    ) -> None:
        self.scope = scope
        self.limit = limit
        self._ledger = ledger
        self._clock = clock
        self._on_change = on_change
        self._day = ""
        self._used = 0
        self._blocked_until = 0.0

    def used(self) -> int:
        """Calls counted today (0 once the day has changed since the last call)."""
        return self._used if self._day == utc_day(self._clock()) else 0

    async def load(self) -> None:
        self._day = utc_day(self._clock())
        self._used = await self._ledger.used(self.scope, self._day)
        self._on_change(self._used)

    async def spend(self) -> None:
        """Count one call, or raise BudgetExhausted with the time the budget is available again."""
        now = self._clock()
        self.check()
        day = utc_day(now)
        used = await self._ledger.spend(self.scope, day, self.limit)
        self._day = day
        if used is None:
            self._used = self.limit
            self._on_change(self._used)
            raise BudgetExhausted(self.scope, next_utc_midnight(now))
        self._used = used
        self._on_change(used)

    def check(self) -> None:
        """Raise BudgetExhausted while the day is closed (Zoom's daily 429, or the budget spent)."""
        if self._clock() < self._blocked_until:
            raise BudgetExhausted(self.scope, self._blocked_until)

    async def exhaust(self, until: float | None) -> float:
        """Zoom answered 429 Daily-limit: no call until `until` (or the next UTC midnight); returns that time."""
        now = self._clock()
        day = utc_day(now)
        await self._ledger.exhaust(self.scope, day, self.limit)
        self._day, self._used = day, self.limit
        self._on_change(self.limit)
        resume = until if until is not None and until > now else next_utc_midnight(now)
        self._blocked_until = max(self._blocked_until, resume)
        return self._blocked_until


class Backoff:
    """Exponential backoff with jitter: attempt n waits uniformly in [d/2, d], d = min(cap, base * 2**(n-1)).

    Half of the wait is fixed so that a retry never comes at once; the other half spreads clients
    that failed together (a Zoom outage) over time.
    """

    def __init__(self, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** max(attempt - 1, 0))
        return self._rng.uniform(ceiling / 2, ceiling)


class AccountLimits:
    """Everything that paces one account's calls: windows per label, the daily budget, concurrency."""

    def __init__(self, windows: dict[Label, SlidingWindow], budget: DailyBudget, max_concurrency: int) -> None:
        self.windows = windows
        self.budget = budget
        self.slots = asyncio.Semaphore(max_concurrency)

    async def acquire(self, label: Label) -> None:
        """Wait for a slot in `label`'s window after counting the call against the daily budget.

        The budget is asked again after the wait: a call queued behind the window must not be sent
        once Zoom has answered another call with a daily 429 meanwhile.
        """
        await self.budget.spend()
        await self.windows[label].acquire()
        self.budget.check()
