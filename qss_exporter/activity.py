"""Who is active right now: participants and phone calls seen within the activity window.

An entry is active while its latest record is younger than the window; a leave (summary or
data-summary event, or a call's end) removes it at once, and a late redelivered record of a
participant who already left does not bring them back.

Each entry's time and labels are held in two dicts (same keys, same order) instead of a
`(float, labels)` tuple per entry: ~20 bytes less per entry (bench/memory.py). Sharing whole-second
int objects, as enrichment.py does, would save the float too (~24 bytes) but doubled the cost of
`touch`, which runs for every QoS record (0.4 -> 0.8-1.1 us, best of seven).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from qss_exporter.store import Sample

__all__ = ["ActivityTracker"]

Key = tuple[str, ...]


class ActivityTracker:
    """Entities keyed by a tuple whose leading `group_width` items are the gauge's labels' prefix."""

    def __init__(self, window: float) -> None:
        self.window = window
        # Two dicts with the same keys in the same order (inserted and removed together): the time of
        # each entry's latest record and its labels.
        self._seen: dict[Key, float] = {}
        self._labels: dict[Key, tuple[str, ...]] = {}
        self._ended: dict[Key, float] = {}
        # Thousands of entries share a handful of label sets: keep one tuple of each.
        self._label_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        # Key prefixes `count_distinct` leaves to another replica (shared_state.py: meetings claimed elsewhere).
        self.uncounted: set[Key] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def touch(self, key: Key, at: float, labels: tuple[str, ...]) -> None:
        """Record activity of `key` at time `at`, to be counted under `labels`."""
        if key in self._ended:
            return
        previous = self._seen.get(key)
        if previous is None or previous <= at:
            self._seen[key] = at
            self._labels[key] = self._label_sets.setdefault(labels, labels)

    def end(self, key: Key, now: float) -> None:
        self.forget(key)
        self._ended[key] = now

    def forget(self, key: Key) -> None:
        """Stop counting `key` here without ending it (another replica counts it: shared_state.py)."""
        if self._seen.pop(key, None) is not None:
            del self._labels[key]

    def counted(self) -> list[Key]:
        """The keys counted here now, active or not yet expired."""
        return list(self._seen)

    def end_prefix(self, prefix: Key, now: float) -> None:
        """End every entry whose key starts with `prefix` (a meeting ended: all its participants)."""
        width = len(prefix)
        for key in [key for key in self._seen if key[:width] == prefix]:
            self.end(key, now)

    def _active(self, now: float) -> Iterator[tuple[Key, tuple[str, ...]]]:
        cutoff = now - self.window
        for (key, at), labels in zip(self._seen.items(), self._labels.values(), strict=True):
            if at >= cutoff:
                yield key, labels

    def count_by_labels(self, now: float) -> list[Sample]:
        counts = Counter(labels for _, labels in self._active(now))
        return [Sample(labels, float(n)) for labels, n in counts.items()]

    def count_distinct(self, now: float, width: int, label_width: int) -> list[Sample]:
        """Distinct key prefixes of `width` items, counted by their first `label_width` items."""
        prefixes = {key[:width] for key, _ in self._active(now)} - self.uncounted
        counts = Counter(prefix[:label_width] for prefix in prefixes)
        return [Sample(labels, float(n)) for labels, n in counts.items()]

    def snapshot(self) -> dict[str, Any]:
        """For persistence.py, in columns (no object per entry is made on the event loop): the active
        entries' keys, times and labels, the ended entries' keys and times."""
        seen, ended = self._seen, self._ended
        return {
            "keys": list(seen),
            "at": list(seen.values()),
            "labels": list(self._labels.values()),
            "ended": list(ended),
            "ended_at": list(ended.values()),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back a `snapshot()` (or a schema 1 one, with (time, labels) pairs); newer activity held
        already wins."""
        for key, at in zip(data["ended"], data["ended_at"], strict=True):
            self._ended.setdefault(key, float(at))
        pairs = zip(data["at"], data["labels"], strict=True) if "at" in data else data["seen"]
        for key, (at, labels) in zip(data["keys"], pairs, strict=True):
            self.touch(key, float(at), labels)

    def expire(self, now: float) -> int:
        cutoff = now - self.window
        stale = [key for key, at in self._seen.items() if at < cutoff]
        for key in stale:
            del self._seen[key]
            del self._labels[key]
        for key in [key for key, at in self._ended.items() if at < cutoff]:
            del self._ended[key]
        return len(stale)
