"""Remembers which events were already counted, for at least a configured window, in bounded memory.

Zoom redelivers an event up to three times over ~85 minutes (and the WebSocket may carry the same
event as a webhook), so a key must be remembered for hours. Keys are kept as their 64-bit hash in a
few rotating generations of sets: ~60 bytes per key, O(generations) per lookup, and whole
generations are dropped at once instead of expiring keys one by one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

__all__ = ["DedupeWindow", "ParticipantHistory"]


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


_TIME_BYTES = 4
_DIGEST_BYTES = 6
_RECORD_BYTES = _TIME_BYTES + _DIGEST_BYTES
_DIGEST_MASK = (1 << (8 * _DIGEST_BYTES)) - 1


class ParticipantHistory:
    """The same question for real-time QoS events (~95 % of all traffic), answered per participant.

    Each participant's recent events are packed into one bytearray, 10 bytes each: the 4-byte
    arrival second, then a 6-byte digest of the event, searched with `bytearray.find`. That is
    ~10 bytes per remembered event instead of ~95 in a set of ints, which matters at ~120 events per
    participant in a 2-hour window (bench/memory.py). 48 bits suffice because a digest is only
    compared with the same participant's ~120 others: a false match needs odds of about 1 in 2**41.
    A participant's history outlives their leaving by the window, so a late retry after the summary
    is still recognised. `max_entries` bounds the events held in total; past it the least recently
    started histories go first, counted in `evicted`.
    """

    def __init__(self, window: float, max_entries: int) -> None:
        self._window = window
        self._max_entries = max_entries
        # participant -> packed (arrival, digest) records, oldest first; insertion order = first seen
        self._histories: dict[Hashable, bytearray] = {}
        self._size = 0
        self.evicted = 0

    def __len__(self) -> int:
        return self._size

    def seen(self, participant: Hashable, key: Hashable, now: float) -> bool:
        digest = (hash(key) & _DIGEST_MASK).to_bytes(_DIGEST_BYTES, "little")
        records = self._histories.get(participant)
        if records is None:
            records = self._histories[participant] = bytearray()
        position = records.find(digest)
        while position != -1:
            if position % _RECORD_BYTES == _TIME_BYTES:  # a match across two fields is not a match
                return True
            position = records.find(digest, position + 1)
        # Big-endian seconds compare as bytes in numeric order: no int conversions on the hot path.
        cutoff = max(0, int(now - self._window)).to_bytes(_TIME_BYTES, "big")
        expired = 0
        while expired < len(records) and records[expired : expired + _TIME_BYTES] < cutoff:
            expired += _RECORD_BYTES
        if expired:
            del records[:expired]
            self._size -= expired // _RECORD_BYTES
        records += int(now).to_bytes(_TIME_BYTES, "big") + digest
        self._size += 1
        if self._size > self._max_entries:
            self._evict_oldest(participant)
        return False

    def _evict_oldest(self, keep: Hashable) -> None:
        for participant in list(self._histories):
            if self._size <= self._max_entries or participant == keep:
                break
            dropped = len(self._histories.pop(participant)) // _RECORD_BYTES
            self._size -= dropped
            self.evicted += dropped

    def expire(self, now: float) -> int:
        """Forget participants whose newest event is older than the window; returns how many."""
        cutoff = int(now - self._window)
        stale = [
            participant
            for participant, records in self._histories.items()
            if int.from_bytes(records[-_RECORD_BYTES:-_DIGEST_BYTES], "big") < cutoff
        ]
        for participant in stale:
            self._size -= len(self._histories.pop(participant)) // _RECORD_BYTES
        return len(stale)
