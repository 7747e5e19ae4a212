"""Remembers which events were already counted, for at least a configured window, in bounded memory.

Zoom redelivers an event up to three times over ~85 minutes (and the WebSocket may carry the same
event as a webhook), so a key must be remembered for hours. Keys are kept as their 64-bit hash in a
few rotating generations of sets: ~60 bytes per key, O(generations) per lookup, and whole
generations are dropped at once instead of expiring keys one by one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

__all__ = ["DedupeWindow"]


class DedupeWindow:
    """`seen(key, now)` is True when `key` was offered within the last `window` seconds.

    With G generations each spanning window/(G-1), a key lives between `window` and
    `window * G/(G-1)` seconds. When more than `max_entries` keys are held, the oldest generation is
    dropped early and its size added to `evicted` (the window then shrinks: visible in metrics).
    """

    def __init__(self, window: float, max_entries: int, now: float, generations: int = 4) -> None:
        if generations < 2:
            raise ValueError("generations must be at least 2")
        self._span = window / (generations - 1)
        self._max_generations = generations
        self._max_entries = max_entries
        self._generations: deque[set[int]] = deque([set()])
        self._current_started = now
        self._size = 0
        self.evicted = 0

    def __len__(self) -> int:
        return self._size

    def seen(self, key: Hashable, now: float) -> bool:
        if now - self._current_started >= self._span:
            self._rotate(now)
        digest = hash(key)
        for generation in self._generations:
            if digest in generation:
                return True
        self._generations[-1].add(digest)
        self._size += 1
        if self._size > self._max_entries:
            self._evict_oldest()
        return False

    def _rotate(self, now: float) -> None:
        # An idle period of several spans ages every generation by that many spans.
        steps = min(int((now - self._current_started) // self._span), self._max_generations)
        for _ in range(steps):
            self._generations.append(set())
            if len(self._generations) > self._max_generations:
                self._size -= len(self._generations.popleft())
        self._current_started = now

    def _evict_oldest(self) -> None:
        if len(self._generations) == 1:
            self._generations.append(set())
        dropped = self._generations.popleft()
        self._size -= len(dropped)
        self.evicted += len(dropped)
