"""Whole-second times shared as one int object per second, for tables holding a time per participant.

A float per entry costs 24 bytes, and with the labels beside it a 56-byte tuple; thousands of
participants touched within the same second share one int here instead (bench/memory.py).
"""

from __future__ import annotations

from math import ceil

__all__ = ["SharedSeconds"]


class SharedSeconds:
    """`seconds(moment)`: `moment` rounded up to a whole second (a time-to-live is never cut short), as
    the one int object held for that second. At most `limit` seconds are held; then the cache starts over."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._held: dict[int, int] = {}

    def __call__(self, moment: float) -> int:
        second = ceil(moment)
        shared = self._held.get(second)
        if shared is None:
            if len(self._held) >= self._limit:
                self._held.clear()
            shared = self._held[second] = second
        return shared
