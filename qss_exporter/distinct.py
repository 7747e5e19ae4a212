"""Counting distinct items in bounded memory: exact up to a thousand, then a HyperLogLog estimate.

The store counts the series its cap refuses (distinct label sets, not refused updates) with this,
so that a flood of new label sets costs at most a few kilobytes per family to count. HyperLogLog
(Flajolet et al., 2007) with 4096 registers has a standard error of 1.6 %; it is hand-written
because it is 40 lines, and the libraries that offer it (datasketch) pull in numpy.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Final

__all__ = ["DistinctCount"]

EXACT_LIMIT: Final = 1024  # below this the count is exact (a set of 64-bit hashes, ~60 KiB at most)
_P = 12
_M = 1 << _P  # registers: 4 KiB
_MASK = (1 << 64) - 1
_ALPHA = 0.7213 / (1 + 1.079 / _M)
_POWERS = [2.0**-rank for rank in range(66)]


def _mix(item: Hashable) -> int:
    """A well-spread 64-bit hash of `item` (Python's hash, through splitmix64's finaliser)."""
    h = hash(item) & _MASK
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK
    return h ^ (h >> 31)


class DistinctCount:
    """How many distinct items were added; never decreases. Within one process (hashes are per process)."""

    __slots__ = ("_exact", "_registers", "_reported")

    def __init__(self) -> None:
        self._exact: set[int] | None = set()
        self._registers: bytearray | None = None
        self._reported = 0

    def add(self, item: Hashable) -> None:
        h = _mix(item)
        if self._exact is not None:
            self._exact.add(h)
            if len(self._exact) <= EXACT_LIMIT:
                return
            self._registers = bytearray(_M)
            for seen in self._exact:
                self._insert(seen)
            self._exact = None
        else:
            self._insert(h)

    def _insert(self, h: int) -> None:
        registers = self._registers
        assert registers is not None
        index = h & (_M - 1)
        rank = (64 - _P) - (h >> _P).bit_length() + 1
        if rank > registers[index]:
            registers[index] = rank

    def count(self) -> int:
        if self._exact is not None:
            return len(self._exact)
        registers = self._registers
        assert registers is not None
        estimate = _ALPHA * _M * _M / sum(_POWERS[rank] for rank in registers)
        zeros = registers.count(0)
        if estimate <= 2.5 * _M and zeros:  # small range: linear counting is more accurate
            estimate = _M * math.log(_M / zeros)
        # Reported as a counter: the estimate may wobble by a fraction of a percent as it crosses ranges.
        self._reported = max(self._reported, round(estimate), EXACT_LIMIT + 1)
        return self._reported
