"""Remembers which events were already counted, for at least a configured window, in bounded memory;
and which Video SDK session summaries were, across sources that share no id (SessionSummaries).

Zoom redelivers an event up to three times over ~85 minutes (and the WebSocket may carry the same
event as a webhook), so a key must be remembered for hours. Keys are kept as their 64-bit digest in a
few rotating generations of sets: ~60 bytes per key, O(generations) per lookup, and whole
generations are dropped at once instead of expiring keys one by one.

The digest is stable across processes (`digest`, not Python's per-process salted `hash`), so that the
history can be saved and restored over a restart (persistence.py) and shared between replicas. Each
part has a `snapshot()` of plain data (ints, bytes, lists) and a `restore(data)` that takes it back.
"""

from __future__ import annotations

import hashlib
import zlib
from array import array
from collections import Counter, deque
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import msgpack

__all__ = ["DedupeWindow", "ParticipantHistory", "SessionSummaries", "digest", "participant_bucket"]

# One packer for the event loop (a Packer is not thread-safe; only the pipeline, on the loop, digests):
# ~0.4 us less per key than msgpack.packb, which builds one each call.
_PACKER = msgpack.Packer()


def digest(key: object) -> int:
    """A 64-bit digest of `key` (tuples of str, int, float, None, nested) that every process agrees on.

    msgpack + BLAKE2b: ~1.1 us for an event key and ~5 us for a QoS record's content, against ~0.2 and
    ~1.5 us for Python's `hash`, whose salt differs per process (a restored digest would never match).
    """
    return int.from_bytes(hashlib.blake2b(_PACKER.pack(key), digest_size=8).digest(), "little")


class _Matched(Protocol):
    @property
    def match(self) -> str: ...


SummaryT = TypeVar("SummaryT", bound=_Matched)


class DedupeWindow:
    """`seen(key, now)` is True when `key` was offered within the last `window` seconds.

    With G generations each spanning window/(G-1), a key lives between `window` and
    `window * G/(G-1)` seconds. When more than `max_entries` keys are held, the oldest generation is
    dropped early and its size added to `evicted` (the window then shrinks: visible in metrics).
    """

    def __init__(self, window: float, max_entries: int, now: float, generations: int = 4) -> None:
        if generations < 2:
            raise ValueError("generations must be at least 2")
        self.window = window
        self._span = window / (generations - 1)
        self._max_generations = generations
        self._max_entries = max_entries
        self._generations: deque[set[int]] = deque([set()])
        self._current_started = now
        self._size = 0
        self.evicted = 0

    def __len__(self) -> int:
        return self._size

    def seen(self, key: Hashable, now: float, digested: int | None = None) -> bool:
        """`digested`: `digest(key)` when the caller has it already (shared_state.py needs it too)."""
        if now - self._current_started >= self._span:
            self._rotate(now)
        value = digest(key) if digested is None else digested
        for generation in self._generations:
            if value in generation:
                return True
        self._generations[-1].add(value)
        self._size += 1
        if self._size > self._max_entries:
            self._evict_oldest()
        return False

    def snapshot(self) -> dict[str, Any]:
        """The generations as packed 64-bit digests, oldest first (plain data: persistence.py saves it)."""
        return {
            "generations": [array("Q", generation).tobytes() for generation in self._generations],
            "current_started": self._current_started,
            "evicted": self.evicted,
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back a `snapshot()`: its keys are remembered (with what this window holds already)."""
        restored: list[set[int]] = []
        for packed in data["generations"][-self._max_generations :]:
            keys = array("Q")
            keys.frombytes(packed)
            restored.append(set(keys))
        if not restored:
            return
        current = self._generations[-1]
        restored[-1] |= current
        self._generations = deque(restored)
        self._current_started = float(data["current_started"])
        self._size = sum(len(generation) for generation in restored)
        self.evicted += int(data["evicted"])
        while self._size > self._max_entries and len(self._generations) > 1:
            self._evict_oldest()

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
SHARDS = 256  # ParticipantHistory's dicts (its docstring says why)
SHARD_MASK = SHARDS - 1


def participant_bucket(participant: Sequence[str]) -> int:
    """The history's key for a participant (or call): a CRC-32 of its ids.

    A 32-byte int instead of keeping the ~80-byte tuple of ids per participant (bench/memory.py: ~75
    bytes less per active participant); ~0.15 us per event. Two participants whose ids collide share
    one history, which stays correct (a match needs the 48-bit digest of the whole event key) and
    only keeps a few more records: with 100k participants held, about one pair does.
    """
    text = "\x1f".join(participant)
    try:
        return zlib.crc32(text.encode())
    except UnicodeEncodeError:  # a lone surrogate: naming the error handler on every call costs ~40 %
        return zlib.crc32(text.encode("utf-8", "surrogatepass"))


class ParticipantHistory:
    """The same question for real-time QoS events (~95 % of all traffic), answered per participant.

    Each participant's recent events are packed into one bytes object, 10 bytes each: the 4-byte
    arrival second, then a 6-byte digest of the event, searched with `bytes.find`. That is
    ~10 bytes per remembered event instead of ~95 in a set of ints, which matters at ~120 events per
    participant in a 2-hour window (bench/memory.py). 48 bits suffice because a digest is only
    compared with the same participant's ~120 others: a false match needs odds of about 1 in 2**41.
    Immutable bytes, replaced at each event, cost ~50 bytes less per participant than a bytearray
    (its object and over-allocated buffer) and can be saved without copying. A participant's
    history outlives their leaving by the window, so a late retry after the summary is still
    recognised. `max_entries` bounds the events held in total; past it the least recently started
    histories go first (in O(1) each), counted in `evicted`.

    The histories are spread over SHARDS dicts by their bucket's low bits. A dict's table is sized at
    its last resize, to a power of two above 3x the entries it then held, and never shrinks: held in
    one dict, the ~45k histories of 10k participants' 2-hour window sat at the 2**17 / 3 boundary, so
    the table jumped from 2.5 to 5 MiB at a chance moment (the 10k soak's 2.5 MiB steps in RSS, seen
    in bench/memory.py's `large_containers`). Small tables resize independently, by ~10 KiB each.
    """

    def __init__(self, window: float, max_entries: int) -> None:
        self._window = window
        self._max_entries = max_entries
        # participant bucket -> packed (arrival, digest) records, oldest first; in shard `bucket & SHARD_MASK`
        self._shards: list[dict[int, bytes]] = [{} for _ in range(SHARDS)]
        # Every bucket held, least recently started first, for eviction and snapshots: taking a dict's
        # first key is O(keys deleted before it), and copying the keys was ~33 us per new participant at
        # 50k once the cap was reached.
        self._order: deque[int] = deque()
        self._size = 0
        self.evicted = 0

    def __len__(self) -> int:
        return self._size

    def seen(self, participant: Sequence[str], key: Hashable, now: float, digested: int | None = None) -> bool:
        """`digested`: `digest(key)` when the caller has it already (shared_state.py needs it too)."""
        packed = ((digest(key) if digested is None else digested) & _DIGEST_MASK).to_bytes(_DIGEST_BYTES, "little")
        bucket = participant_bucket(participant)
        histories = self._shards[bucket & SHARD_MASK]
        records = histories.get(bucket)
        if records is None:
            records = b""
            self._order.append(bucket)
        position = records.find(packed)
        while position != -1:
            if position % _RECORD_BYTES == _TIME_BYTES:  # a match across two fields is not a match
                return True
            position = records.find(packed, position + 1)
        # Big-endian seconds compare as bytes in numeric order: no int conversions on the hot path.
        cutoff = max(0, int(now - self._window)).to_bytes(_TIME_BYTES, "big")
        expired = 0
        while expired < len(records) and records[expired : expired + _TIME_BYTES] < cutoff:
            expired += _RECORD_BYTES
        if expired:
            records = records[expired:]
            self._size -= expired // _RECORD_BYTES
        histories[bucket] = records + int(now).to_bytes(_TIME_BYTES, "big") + packed
        self._size += 1
        if self._size > self._max_entries:
            self._evict_oldest(bucket)
        return False

    def snapshot(self) -> dict[str, Any]:
        """Participant buckets and their records, in columns, least recently started first.

        The records are the live (immutable) bytes, not copies: copying ~1.8 kB for each of 50k
        participants held the event loop ~0.2 s; persistence.py packs them slice by slice between events.
        """
        keys = list(self._order)
        shards = self._shards
        return {"keys": keys, "records": [shards[bucket & SHARD_MASK][bucket] for bucket in keys]}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back a `snapshot()`; what this history holds already stays.

        A file of schema 1 keyed the histories by the tuple of ids: they are taken back under their bucket.
        """
        shards = self._shards
        for key, packed in zip(data["keys"], data["records"], strict=True):
            bucket = key if isinstance(key, int) else participant_bucket(key)
            histories = shards[bucket & SHARD_MASK]
            if len(packed) % _RECORD_BYTES or bucket in histories:
                continue
            histories[bucket] = bytes(packed)
            self._order.append(bucket)
            self._size += len(packed) // _RECORD_BYTES
        if self._size > self._max_entries:
            self._evict_oldest(None)

    def _evict_oldest(self, keep: int | None) -> None:
        order, shards = self._order, self._shards
        kept = False
        while self._size > self._max_entries and order:
            bucket = order.popleft()
            if bucket == keep:  # the participant just seen stays, even when it is the oldest
                kept = True
                continue
            dropped = len(shards[bucket & SHARD_MASK].pop(bucket)) // _RECORD_BYTES
            self._size -= dropped
            self.evicted += dropped
        if kept and keep is not None:
            order.appendleft(keep)

    def expire(self, now: float) -> int:
        """Forget participants whose newest event is older than the window; returns how many."""
        cutoff = int(now - self._window)
        forgotten = 0
        for histories in self._shards:
            stale = [
                bucket
                for bucket, records in histories.items()
                if int.from_bytes(records[-_RECORD_BYTES:-_DIGEST_BYTES], "big") < cutoff
            ]
            for bucket in stale:
                self._size -= len(histories.pop(bucket)) // _RECORD_BYTES
            forgotten += len(stale)
        if forgotten:
            shards = self._shards
            self._order = deque(bucket for bucket in self._order if bucket in shards[bucket & SHARD_MASK])
        return forgotten


class _Session:
    __slots__ = ("polled", "touched", "webhooks")

    def __init__(self, now: float) -> None:
        self.touched = now
        self.polled = -1  # REST users counted at the poll; -1: not polled
        self.webhooks: dict[str, str] = {}  # per-session user id -> match


class SessionSummaries:
    """Video SDK session summaries counted once across webhook (or WebSocket) and REST, which share no id.

    Per session instance it holds the webhook summaries counted (per-session user id -> `match`, a
    digest of `user_key` or name, zoom/summaries.py) and, once polled, how many users Zoom's REST
    listing had. The rule (docs/poller.md): a session counts max(webhook summaries, REST users). At
    the poll, a REST user whose match equals an unclaimed webhook summary's is that summary; the
    others fill up to the listing's count, those without any identity first taken to be the webhook
    summaries nobody matched. After the poll, a webhook summary counts only while there are more of
    them than REST users. Bounded by `max_instances` (least recently used first) and the dedupe window.
    """

    def __init__(self, window: float, max_instances: int) -> None:
        self._window = window
        self._max = max_instances
        self._instances: dict[tuple[str, str], _Session] = {}  # (account_id, instance), least recent first

    def __len__(self) -> int:
        return len(self._instances)

    def _entry(self, account_id: str, instance: str, now: float) -> _Session:
        key = (account_id, instance)
        entry = self._instances.pop(key, None)  # re-inserted: the dict is ordered by last use
        if entry is None:
            entry = _Session(now)
            if len(self._instances) >= self._max:
                del self._instances[next(iter(self._instances))]
        entry.touched = now
        self._instances[key] = entry
        return entry

    def webhook(self, account_id: str, instance: str, user_id: str, match: str, now: float) -> bool:
        """A webhook or WebSocket summary (not a redelivery): True when it is to be counted."""
        entry = self._entry(account_id, instance, now)
        entry.webhooks[user_id] = match
        return entry.polled < 0 or len(entry.webhooks) > entry.polled

    def choose(
        self, account_id: str, instance: str, users: Sequence[SummaryT], counted: Mapping[str, str], now: float
    ) -> list[SummaryT]:
        """The REST `users` (each with `.match`) to count; `counted`: webhook summaries the state file knew."""
        entry = self._entry(account_id, instance, now)
        entry.webhooks = {**counted, **entry.webhooks}
        entry.polled = len(users)
        left = Counter(match for match in entry.webhooks.values() if match)
        unmatched: list[SummaryT] = []
        for user in users:
            if user.match and left[user.match] > 0:
                left[user.match] -= 1  # this user's summary came by webhook
            else:
                unmatched.append(user)
        # Webhook summaries no REST user matched: as many unmatched REST users are taken to be them,
        # those Zoom gave no identity first (REST leaves names empty for some accounts).
        skip = sum(left.values()) + sum(1 for match in entry.webhooks.values() if not match)
        unmatched.sort(key=lambda user: bool(user.match))
        return unmatched[skip:]

    def restore(self, account_id: str, instance: str, webhooks: Mapping[str, str], polled: int, now: float) -> None:
        """What the poller's state file held before a restart (`polled` -1: not polled yet)."""
        entry = self._entry(account_id, instance, now)
        entry.webhooks.update(webhooks)
        entry.polled = max(entry.polled, polled)

    def expire(self, now: float) -> int:
        """Forget sessions untouched for the dedupe window; returns how many."""
        cutoff = now - self._window
        stale = [key for key, entry in self._instances.items() if entry.touched < cutoff]
        for key in stale:
            del self._instances[key]
        return len(stale)
