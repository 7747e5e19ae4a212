"""How much time each real-time QoS record stands for, from the spacing of its participant's records.

Zoom's cadence is not one record a minute for everyone: its "Quality of Service Subscription Explainer"
now says "Approx. 1 event per minute, per participant (per QoS metric or aggregated set depending on
account settings)", an older version of the same page "4 to 6x per minute, per participant". Counting
records would weigh a participant by their cadence; the time counters
(`zoom_qss_media_time_seconds_total`, `zoom_qss_quality_time_seconds_total`) credit each record with
the time since the participant's record before it instead:

* a record stands for the interval from the participant's previous record time to its own (Zoom's
  records aggregate the time before them), capped at `max_gap` (120 s: one lost record at one a minute
  is still covered by the next; a longer silence is not presence);
* records within `SAME_TIME` (2 s) of each other are one time (Zoom's per-type deliveries of a minute
  share `event_ts`): they share that interval;
* the first record of a participant has no record before it: it stands for the spacing to the second,
  so that n records at any regular cadence give n intervals of presence (a participant's total does
  not depend on cadence); it is held until the second arrives;
* a participant with a single record time stands for `nominal` (60 s, Zoom's one a minute) when they
  leave (summary or leave event) or when their state expires; a newer record after they left starts
  a new presence (a rejoin), an older one is a late record of the presence that ended;
* a late record (a Zoom retry) between two held times takes the part of the gap it fills that was
  not credited yet (none when the gap was below the cap); one older than every held time is credited
  only if no earlier time was ever forgotten (it then is the first record). A retry that arrives after
  its participant's state expired is a lone record again (the nominal interval): it is counted twice
  only if a record after it had covered its interval already, i.e. at most `nominal` seconds for each
  record that failed delivery in the last minutes of a participant who then left.

State per participant: up to `keep` recent distinct record times, in whole seconds, packed as 32-bit
integers in one immutable `bytes` object replaced at each record (~85 bytes per participant; an
`array` was ~150: its object and over-allocated buffer, bench/memory.py), and the records held for the
first time (label tuples, only until the second record time). It is expired with the activity window, by arrival.
Everything in it is plain numbers and strings, so that it can be serialised (issue 13).
"""

from __future__ import annotations

import bisect
import struct
import sys
from array import array
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

__all__ = ["LAYOUT", "SAME_TIME", "Content", "Credit", "Timekeeper", "record_second"]

SAME_TIME = 2.0  # seconds: record times this close are one time (per-type deliveries of one record)

# What a record is credited for: the label sets of its active streams and of its grades.
Content = tuple[tuple[tuple[str, ...], ...], tuple[tuple[str, ...], ...]]
Credit = Callable[[float, Content, float], None]  # (seconds, content, when: the arrival it belongs to)

# State layout (native unsigned 32-bit ints, an `array("I")`'s bytes): the record times t1 < t2 < ...
# held, then the last arrival, then flags. The usual record reads the newest time and the tail in one
# unpack and writes them in one pack (a head before the times took two of each: +1.1 us per record).
_TAIL = struct.Struct("=II")  # arrival, flags
_LAST_TAIL = struct.Struct("=III")  # the newest time, arrival, flags
_TAIL_BYTES = _TAIL.size
_FORGOT = 1  # flag: an older time was ever forgotten
_LEFT = 2  # flag: the participant left
LAYOUT = "times,arrival,flags"  # in the snapshot; one without it is [arrival, forgot, left, times...]


class Timekeeper:
    """Credits `seconds` of each record's content to `credit(seconds, content, when)`, participant by participant."""

    def __init__(
        self, credit: Credit, window: float, *, max_gap: float = 120.0, nominal: float = 60.0, keep: int = 8
    ) -> None:
        self._credit = credit
        self.window = window
        self.max_gap = max_gap
        self.nominal = nominal
        self._keep = keep
        self._times: dict[Hashable, bytes] = {}
        self._held: dict[Hashable, list[Content]] = {}  # first records waiting for the second time
        self._labels: dict[tuple[str, ...], tuple[str, ...]] = {}  # one copy of each label set held

    def __len__(self) -> int:
        return len(self._times)

    def record(self, key: Hashable, made: float, now: float, content: Content) -> None:
        """A record of participant `key` made at `made`, arrived `now`: credit what it and earlier ones stand for."""
        at = _second(made)
        state = self._times.get(key)
        if state is None:
            self._start(key, at, now, content)
            return
        end = len(state) - _TAIL_BYTES  # the times' bytes
        if end:
            last, arrival, flags = _LAST_TAIL.unpack_from(state, end - 4)
        else:  # only times other replicas hinted had been held, and none is left
            last = 0
            arrival, flags = _TAIL.unpack_from(state)
        second = _second(now)
        if second > arrival:
            arrival = second
        cap = self.max_gap
        if at > last + SAME_TIME and flags & _LEFT:  # back after leaving: a new presence
            self._start(key, at, now, content, earlier=True)
            return
        if at > last + SAME_TIME:  # the usual case: the next record
            gap = min(at - last, cap)
            held = self._held.pop(key, None)
            if held is not None:  # the first time now has a spacing: it stands for it too
                for earlier in held:
                    self._credit(gap, earlier, now)
            self._credit(gap, content, now)
            if end >= 4 * self._keep:  # the oldest time goes
                self._times[key] = state[4:end] + _LAST_TAIL.pack(at, arrival, flags | _FORGOT)
            else:
                self._times[key] = state[:end] + _LAST_TAIL.pack(at, arrival, flags)
            return
        times = array("I", state[:end])
        index = bisect.bisect_left(times, at - SAME_TIME)
        if index < len(times) and times[index] <= at + SAME_TIME:  # the same time as a held one
            self._times[key] = state[:end] + _TAIL.pack(arrival, flags)
            self._same_time(key, times, index, content, now)
            return
        self._late(key, (arrival, flags), times, index, at, content, now)

    def _start(self, key: Hashable, at: int, now: float, content: Content, *, earlier: bool = False) -> None:
        """A first record; `earlier`: the participant had an earlier presence (its late records add nothing)."""
        self._times[key] = _LAST_TAIL.pack(at, _second(now), _FORGOT if earlier else 0)
        self._held[key] = [self._compact(content)]

    def _compact(self, content: Content) -> Content:
        """`content` made of shared label tuples: thousands of held records have a handful of label sets."""
        labels = self._labels
        if len(labels) >= _LABELS_MAX:
            labels.clear()
        streams, grades = content
        return tuple(labels.setdefault(s, s) for s in streams), tuple(labels.setdefault(g, g) for g in grades)

    def _same_time(self, key: Hashable, times: array[int], index: int, content: Content, now: float) -> None:
        """Another record (another QoS type) of a time already seen: the same interval."""
        held = self._held.get(key)
        if held is not None:  # still the only time: wait with the others
            held.append(self._compact(content))
        elif index > 0:
            self._credit(min(times[index] - times[index - 1], self.max_gap), content, now)
        elif len(times) > 1:  # the first time held: its interval was estimated by the spacing to the next
            self._credit(min(times[1] - times[0], self.max_gap), content, now)
        else:  # a lone time whose participant left: it stood for the nominal interval
            self._credit(min(self.nominal, self.max_gap), content, now)

    def _late(
        self,
        key: Hashable,
        tail: tuple[int, int],
        times: array[int],
        index: int,
        at: int,
        content: Content,
        now: float,
    ) -> None:
        """A record older than the newest time: it takes what is still uncredited of the gap it falls in."""
        cap = self.max_gap
        arrival, flags = tail
        if index == 0:
            if flags & _FORGOT:
                self._times[key] = times.tobytes() + _TAIL.pack(arrival, flags)
                return  # older than what is held: its interval was credited (up to the cap) after it
            following = times[0]
            gap = min(following - at, cap)
            self._credit(gap, content, now)  # the new first record: estimated by the spacing to the next
            held = self._held.pop(key, None)
            if held is not None:  # the former only time has a real interval now
                for earlier in held:
                    self._credit(gap, earlier, now)
        else:
            before, after = times[index - 1], times[index]
            uncredited = min(after - at, cap) + min(at - before, cap) - min(after - before, cap)
            if uncredited > 0.0:
                self._credit(uncredited, content, now)
        times.insert(index, at)
        if len(times) > self._keep:
            del times[0]
            flags |= _FORGOT
        self._times[key] = times.tobytes() + _TAIL.pack(arrival, flags)

    def snapshot(self) -> dict[str, Any]:
        """Plain data for persistence.py: each participant's packed times and their held first records."""
        # The live bytes (an `array("I")`'s) and lists, packed slice by slice between events by persistence.py.
        times, held = self._times, self._held
        return {
            "byteorder": sys.byteorder,
            "layout": LAYOUT,
            "keys": list(times),
            "times": list(times.values()),
            "held_keys": list(held),
            "held": list(held.values()),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back a `snapshot()`; participants held already stay as they are. A snapshot without `layout`
        (before this one) has each state as [arrival, forgot, left, times...]."""
        swap = data["byteorder"] != sys.byteorder
        tail_last = data.get("layout") == LAYOUT
        fields = 2 if tail_last else 3  # besides the times, of which a state has one at least
        for participant, packed in zip(data["keys"], data["times"], strict=True):
            state = array("I")
            state.frombytes(packed)
            if swap:
                state.byteswap()
            if len(state) <= fields or participant in self._times:
                continue  # no record time: nothing to take back
            if not tail_last:
                arrival, forgot, left = state[:3]
                state = state[3:]
                state.extend((arrival, (_FORGOT if forgot else 0) | (_LEFT if left else 0)))
            self._times[participant] = state.tobytes()
        for participant, held in zip(data["held_keys"], data["held"], strict=True):
            if participant in self._times and participant not in self._held:
                self._held[participant] = [self._compact(content) for content in held]

    def hint(self, key: Hashable, times: Sequence[int], now: float) -> None:
        """Record times of participant `key` that other replicas received (shared_state.py), credited there."""
        packed = self._times.get(key)
        if packed is None:
            held, arrival, flags = array("I"), _second(now), 0
        else:
            end = len(packed) - _TAIL_BYTES
            held = array("I", packed[:end])
            arrival, flags = _TAIL.unpack_from(packed, end)
        for at in times:  # searched in place: a slice per time was ~4 us per event with Redis
            index = bisect.bisect_left(held, at - SAME_TIME)
            if index < len(held) and held[index] <= at + SAME_TIME:
                continue
            held.insert(index, at)
        while len(held) > self._keep:
            del held[0]
            flags |= _FORGOT
        self._times[key] = held.tobytes() + _TAIL.pack(arrival, flags)
        if key in self._held and len(held) > 1:  # the held first time's successor came elsewhere
            self.release(key, min(held[1] - held[0], self.max_gap), now)

    def release(self, key: Hashable, gap: float, now: float) -> None:
        """The held first time of `key` stands for `gap`: its successor reached another replica."""
        for content in self._held.pop(key, ()):
            self._credit(gap, content, now)

    def end(self, key: Hashable) -> None:
        """The participant left: a lone first time stands for the nominal interval; late records still count."""
        state = self._times.get(key)
        if state is None:
            return
        end = len(state) - _TAIL_BYTES
        arrival, flags = _TAIL.unpack_from(state, end)
        self._times[key] = state[:end] + _TAIL.pack(arrival, flags | _LEFT)
        held = self._held.pop(key, None)
        if held is not None:
            for content in held:  # credited as of its arrival, so that its series age from then
                self._credit(min(self.nominal, self.max_gap), content, arrival)

    def end_prefix(self, prefix: tuple[str, ...]) -> None:
        """Every participant whose key starts with `prefix` left (their meeting ended)."""
        width = len(prefix)
        for key in [key for key in self._times if isinstance(key, tuple) and key[:width] == prefix]:
            self.end(key)

    def expire(self, now: float) -> int:
        """Forget participants with no record for the activity window (settling a lone first time); returns how many."""
        cutoff = now - self.window
        tail = _TAIL.unpack_from
        stale = [key for key, state in self._times.items() if tail(state, len(state) - _TAIL_BYTES)[0] < cutoff]
        for key in stale:
            self.end(key)
            del self._times[key]
        # A dict keeps its table after its keys are gone: the held first records of a burst of joins (the
        # hour's meetings starting, the agent's start) would keep one slot per participant for good
        # (~40 bytes per active participant in bench/memory.py's 10k case). Few are held at a time: copied.
        self._held = dict(self._held)
        return len(stale)


_LAST_SECOND = 2**32 - 1
_LABELS_MAX = 16_384


def record_second(moment: float) -> int:
    """A record time as the Timekeeper holds it (whole seconds)."""
    return _second(moment)


def _second(moment: float) -> int:
    """Unix time in whole seconds, within what 32 bits hold (Zoom's `date_time` has seconds; junk is clamped)."""
    return min(max(int(moment + 0.5), 0), _LAST_SECOND)
