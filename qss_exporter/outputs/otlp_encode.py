"""Encodes the store as OTLP metric requests, keeping the per-series state that temporality needs.

Runs on the event loop, reading the store directly (the loop owns it, so a series never changes
while it is read), and hands out a pause point every few dozen series: the exporter yields to the
loop there when its time slice is used up, so a webhook waits for at most one slice (0.5 ms) per
loop iteration, never for a whole export. Each stored series keeps its encoded data point head in the store's
`Series.otlp` slot, made at its first export: the point's tag and length, its attributes and, in
cumulative temporality, its start time. After that a histogram point is that head plus one
`struct.pack` of its numbers, and the slot holds plain bytes (nothing for the cyclic GC to walk).
Delta series and the computed (callback) families keep a small `Tracked` object instead.

Start times (cumulative): the process start for every series present at the first export; a series
created later (including one that expired and came back, which is a new series object) starts just
after the last export that read the whole store began, which is before its first observation. That
is how OTLP marks a reset. Delta: each point is the difference to what the collector last accepted
for that series (`accept`), so nothing is lost when a request fails, and unchanged series are not
sent. Gauges have no temporality. Under `lowmemory` (the spec's third preference) counters and
histograms are delta and the computed counters cumulative.
"""

from __future__ import annotations

import struct
import time
import weakref
from collections.abc import Callable, Generator, Iterator
from typing import Literal

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from qss_exporter.outputs.otlp_names import otlp_name
from qss_exporter.outputs.otlp_wire import (
    ATTRIBUTES_TAG,
    CUMULATIVE,
    DELTA,
    Kind,
    Request,
    RequestBuilder,
    RequestFrame,
    dense_buckets,
    key_value,
    length_delimited,
    metric_head,
    pack_doubles,
    varint,
    zigzag,
)
from qss_exporter.store import (
    AnyFamily,
    CallbackFamily,
    CounterFamily,
    DualHistogramSeries,
    GaugeFamily,
    HistogramFamily,
    LabelValues,
    Store,
)

__all__ = ["MAX_POINTS", "PAUSE_EVERY", "EncodedRequest", "Encoder", "Tracked"]

Temporality = Literal["cumulative", "delta", "lowmemory"]

# Data points per request: far below the 4 MiB a Collector's gRPC receiver accepts by default
# (a histogram point with ten labels is well under 1 KiB).
MAX_POINTS = 2000
# Series between two pause points: ~0.1 ms of encoding, so a slice ends close to the exporter's budget.
PAUSE_EVERY = 64
# Encoded label values kept per label name while one export makes new series' heads (most series share
# most values); cleared when full and after each export.
MAX_CACHED_VALUES = 50_000

_START = struct.Struct("<BQ")  # start_time_unix_nano (fixed64, tag 0x11)
_NUMBER = struct.Struct("<BQBQBd")  # NumberDataPoint: start, time (0x19), as_double (0x21)
_TIMED_DOUBLE = struct.Struct("<BQBd")  # time and as_double: a gauge, or a counter whose head has its start
_TIMED_INT = struct.Struct("<BQBq")  # time and as_int (sfixed64, tag 0x31): an integer gauge, as the SDK sends it
_NUMBER_BODY = 27  # start, time and value: 9 bytes each
_EXPONENTIAL = struct.Struct("<BQBQBd")  # time, count (0x21), sum (0x29)

# The one encoder whose state each store's series hold (another encoder over the same store, as tests
# and benchmarks make, clears them first).
_OWNERS: weakref.WeakKeyDictionary[Store, Encoder] = weakref.WeakKeyDictionary()


class Tracked:
    """A series whose start time or base values move between exports: a delta series, a computed sample."""

    __slots__ = ("counts", "head", "sent_counts", "sent_ns", "sent_sum", "sent_total", "start_ns", "sum", "total")

    def __init__(self, head: bytes, start_ns: int) -> None:
        self.head = head  # the point's tag, length and attributes; the start time is written per point
        # Cumulative: when the current run of totals began. Delta: when the collector last accepted the series.
        self.start_ns = start_ns
        # Delta: the last accepted total (None: never), bucket counts and sum. A computed counter in
        # cumulative: the last total sent, to see it decrease.
        self.total: float | None = None
        self.counts: tuple[int, ...] = ()
        self.sum = 0.0
        # Delta: what the request in flight carries, the base of the next delta once it is accepted.
        self.sent_ns = 0
        self.sent_total = 0.0
        self.sent_counts: tuple[int, ...] = ()
        self.sent_sum = 0.0


# One encoded request; accepting it commits its delta series.
EncodedRequest = Request[Tracked]


class Encoder:
    """Turns one store into encoded requests (`encode`) and remembers what the collector accepted (`accept`)."""

    def __init__(
        self,
        store: Store,
        resource: Resource,
        scope: InstrumentationScope,
        temporality: Temporality,
        start_ns: int,
        max_points: int = MAX_POINTS,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if store in _OWNERS:
            for family in store.stored_families():
                for series in family.series():
                    series.otlp = None
        _OWNERS[store] = self
        self.store = store
        self.frame = RequestFrame(resource, scope)
        self.temporality = temporality
        self.start_ns = start_ns
        self.max_points = max_points
        self.clock_ns = clock_ns
        self._walked_ns: int | None = None  # when the last export that read the whole store began
        self._computed: dict[tuple[str, LabelValues], Tracked] = {}
        self._heads: dict[str, bytes] = {}
        self._values: dict[str, dict[str, bytes]] = {}  # label name -> value -> its encoded KeyValue

    def encode(self) -> Generator[EncodedRequest | None]:
        """The requests of one export, with a None at each pause point.

        The caller may stop early (a request failed): what was not encoded keeps its state.
        """
        if _OWNERS.get(self.store) is not self:
            raise RuntimeError("another OTLP encoder was made for this store since")
        begin = self.clock_ns()
        batch = RequestBuilder[Tracked](self.frame, self.max_points)
        seen: dict[tuple[str, LabelValues], Tracked] = {}
        complete = False
        try:
            for family in self.store.families():
                if isinstance(family, CallbackFamily):
                    yield from self._computed_family(family, batch, seen)
                elif isinstance(family, HistogramFamily) and self._delta(family):
                    yield from self._delta_histograms(family, batch)
                elif isinstance(family, HistogramFamily) and family.exponential_scale is not None:
                    yield from self._exponential(family, batch)
                elif isinstance(family, HistogramFamily):
                    yield from self._histograms(family, batch)
                elif self._delta(family):
                    yield from self._delta_counters(family, batch)
                else:
                    yield from self._numbers(family, batch)
            last = batch.take()
            if last is not None:
                yield last
            complete = True
        finally:
            if complete:
                self._computed = seen
                self._walked_ns = begin
            else:
                self._computed.update(seen)
            self._values.clear()  # only the series' own heads are kept between exports

    @staticmethod
    def accept(request: EncodedRequest) -> None:
        """The collector accepted `request`: its delta points become the base of the next ones."""
        for state in request.accepted:
            state.start_ns = state.sent_ns
            state.total = state.sent_total
            state.counts = state.sent_counts
            state.sum = state.sent_sum

    # --------------------------------------------------------------------------------------- helpers

    def _delta(self, family: AnyFamily) -> bool:
        if self.temporality == "cumulative" or family.type == "gauge":
            return False
        return self.temporality == "delta" or not isinstance(family, CallbackFamily)

    def _new_start(self) -> int:
        """The start of a stored series first seen now: it was created after the last complete read began."""
        return self.start_ns if self._walked_ns is None else self._walked_ns + 1

    def _attributes(self, tag: bytes, names: tuple[str, ...], values: LabelValues) -> bytes:
        """A new series' labels as attributes under `tag`; each label's values are encoded once (~5x faster)."""
        caches = self._values
        parts = []
        for name, value in zip(names, values, strict=True):
            cache = caches.get(name)
            if cache is None:
                cache = caches[name] = {}
            encoded = cache.get(value)
            if encoded is None:
                if len(cache) >= MAX_CACHED_VALUES:
                    cache.clear()
                encoded = cache[value] = key_value(name, value)
            parts.append(encoded)
        return tag + tag.join(parts) if parts else b""

    def _head(self, family: AnyFamily, kind: Kind, batch: RequestBuilder[Tracked], delta: bool) -> None:
        head = self._heads.get(family.name)
        if head is None:
            name, unit = otlp_name(family.name, family.type)
            head = self._heads[family.name] = metric_head(name, family.documentation, unit)
        batch.family(head, kind, DELTA if delta else CUMULATIVE)

    def _point_head(self, kind: Kind, names: tuple[str, ...], labels: LabelValues, body: int, start: int) -> bytes:
        """A point's tag, length and attributes, then its start time unless `start` is 0 (written per point)."""
        attributes = self._attributes(ATTRIBUTES_TAG[kind], names, labels)
        if start:
            attributes += _START.pack(0x11, start)
        return b"\x0a" + varint(len(attributes) + body) + attributes

    # ------------------------------------------------------------------------------ stored families

    def _histograms(self, family: HistogramFamily, batch: RequestBuilder[Tracked]) -> Iterator[EncodedRequest | None]:
        """Cumulative explicit-bucket points: head (with start) + time, count, sum, bucket counts, bounds."""
        self._head(family, "histogram", batch, False)
        pack, body, counts_field, bounds_field = _histogram_layout(family, with_start=False)
        names, new_start, now = family.labelnames, self._new_start(), self.clock_ns()
        points: list[bytes] = []
        for index, series in enumerate(family.series()):
            if index % PAUSE_EVERY == PAUSE_EVERY - 1:
                yield None
                now = self.clock_ns()
            head = series.otlp
            if head is None:
                head = series.otlp = self._point_head("histogram", names, series.labels, body, new_start)
            counts = series.counts
            points.append(
                head + pack(0x19, now, 0x21, sum(counts), 0x29, series.sum, counts_field, *counts, bounds_field)
            )
            if len(points) >= batch.room:
                request = batch.add(points, [])
                points = []
                if request is not None:
                    yield request
        request = batch.add(points, [])
        if request is not None:
            yield request

    def _delta_histograms(
        self, family: HistogramFamily, batch: RequestBuilder[Tracked]
    ) -> Iterator[EncodedRequest | None]:
        """Delta explicit-bucket points: the change since the last accepted point; unchanged series are skipped."""
        self._head(family, "histogram", batch, True)
        pack, body, counts_field, bounds_field = _histogram_layout(family, with_start=True)
        names, new_start, now = family.labelnames, self._new_start(), self.clock_ns()
        points: list[bytes] = []
        accepted: list[Tracked] = []
        for index, series in enumerate(family.series()):
            if index % PAUSE_EVERY == PAUSE_EVERY - 1:
                yield None
                now = self.clock_ns()
            state: Tracked | None = series.otlp
            if state is None:
                state = series.otlp = Tracked(self._point_head("histogram", names, series.labels, body, 0), new_start)
            counts = tuple(series.counts)
            count = sum(counts)
            before = state.total
            if before is not None and count == before:
                continue  # unchanged since the last accepted export: nothing to send
            state.sent_ns, state.sent_total, state.sent_counts, state.sent_sum = now, count, counts, series.sum
            accepted.append(state)
            if before is not None and count > before:  # (a lower count would be a new run: sent whole)
                sent = [now_count - old for now_count, old in zip(counts, state.counts, strict=True)]
                total_sum, count = series.sum - state.sum, count - int(before)
            else:
                sent, total_sum = list(counts), series.sum
            points.append(
                state.head
                + pack(0x11, state.start_ns, 0x19, now, 0x21, count, 0x29, total_sum, counts_field, *sent, bounds_field)
            )
            if len(points) >= batch.room:
                request = batch.add(points, accepted)
                points, accepted = [], []
                if request is not None:
                    yield request
        request = batch.add(points, accepted)
        if request is not None:
            yield request

    def _exponential(self, family: HistogramFamily, batch: RequestBuilder[Tracked]) -> Iterator[EncodedRequest | None]:
        """Base-2 exponential histogram points (cumulative only), from the store's dual series."""
        self._head(family, "exponential", batch, False)
        names, new_start, now = family.labelnames, self._new_start(), self.clock_ns()
        tag = ATTRIBUTES_TAG["exponential"]
        points: list[bytes] = []
        for index, series in enumerate(family.series()):
            if index % PAUSE_EVERY == PAUSE_EVERY - 1:
                yield None
                now = self.clock_ns()
            if not isinstance(series, DualHistogramSeries):  # every series is one when the scale is set
                continue
            head = series.otlp
            if head is None:  # attributes and start: the length varies with the buckets, so it is not kept
                head = series.otlp = self._attributes(tag, names, series.labels) + _START.pack(0x11, new_start)
            buckets = series.exponential
            body = b"".join(
                [
                    head,
                    _EXPONENTIAL.pack(0x19, now, 0x21, sum(series.counts), 0x29, series.sum),
                    b"\x30" + varint(zigzag(buckets.scale)),
                    _START.pack(0x39, buckets.zero_count) if buckets.zero_count else b"",  # zero_count: fixed64
                    # positive (8) and negative (9) Buckets, left out when empty as the SDK leaves them out
                    length_delimited(b"\x42", dense_buckets(buckets.positive)) if buckets.positive else b"",
                    length_delimited(b"\x4a", dense_buckets(buckets.negative)) if buckets.negative else b"",
                ]
            )
            points.append(b"\x0a" + varint(len(body)) + body)
            if len(points) >= batch.room:
                request = batch.add(points, [])
                points = []
                if request is not None:
                    yield request
        request = batch.add(points, [])
        if request is not None:
            yield request

    def _numbers(
        self, family: CounterFamily | GaugeFamily, batch: RequestBuilder[Tracked]
    ) -> Iterator[EncodedRequest | None]:
        """Cumulative counter (Sum) points and gauge points: head (a counter's with start) + time and value."""
        gauge = family.type == "gauge"
        self._head(family, family.type, batch, False)
        names, new_start, now = family.labelnames, self._new_start(), self.clock_ns()
        points: list[bytes] = []
        for index, series in enumerate(family.series()):
            if index % PAUSE_EVERY == PAUSE_EVERY - 1:
                yield None
                now = self.clock_ns()
            head = series.otlp
            if head is None:
                start = 0 if gauge else new_start  # a gauge has no start time
                head = series.otlp = self._point_head(family.type, names, series.labels, 18, start)
            value = series.value
            if gauge and isinstance(value, int):
                points.append(head + _TIMED_INT.pack(0x19, now, 0x31, value))
            else:
                points.append(head + _TIMED_DOUBLE.pack(0x19, now, 0x21, value))
            if len(points) >= batch.room:
                request = batch.add(points, [])
                points = []
                if request is not None:
                    yield request
        request = batch.add(points, [])
        if request is not None:
            yield request

    def _delta_counters(
        self, family: CounterFamily | GaugeFamily, batch: RequestBuilder[Tracked]
    ) -> Iterator[EncodedRequest | None]:
        """Delta counter points of stored series (gauges never come here)."""
        self._head(family, "counter", batch, True)
        names, new_start, now = family.labelnames, self._new_start(), self.clock_ns()
        points: list[bytes] = []
        accepted: list[Tracked] = []
        for index, series in enumerate(family.series()):
            if index % PAUSE_EVERY == PAUSE_EVERY - 1:
                yield None
                now = self.clock_ns()
            state: Tracked | None = series.otlp
            if state is None:
                state = series.otlp = Tracked(
                    self._point_head("counter", names, series.labels, _NUMBER_BODY, 0), new_start
                )
            point = _delta_number(state, now, float(series.value), accepted)
            if point is None:
                continue
            points.append(point)
            if len(points) >= batch.room:
                request = batch.add(points, accepted)
                points, accepted = [], []
                if request is not None:
                    yield request
        request = batch.add(points, accepted)
        if request is not None:
            yield request

    # ----------------------------------------------------------------------------- computed families

    def _computed_family(
        self, family: CallbackFamily, batch: RequestBuilder[Tracked], seen: dict[tuple[str, LabelValues], Tracked]
    ) -> Iterator[EncodedRequest | None]:
        """Computed gauges and counters, read now; a counter that decreased starts a new run."""
        gauge = family.type == "gauge"
        delta = self._delta(family)
        self._head(family, family.type, batch, delta)
        body = _NUMBER_BODY - (9 if gauge else 0)
        now = self.clock_ns()
        points: list[bytes] = []
        accepted: list[Tracked] = []
        for sample in family.collect():
            key = (family.name, sample.labels)
            state = self._computed.get(key)
            if state is None:
                # A computed counter counts from the process start (the runtime's own totals, the store's drops).
                state = Tracked(self._point_head(family.type, family.labelnames, sample.labels, body, 0), self.start_ns)
            seen[key] = state
            value = float(sample.value)
            if gauge:
                points.append(state.head + _TIMED_DOUBLE.pack(0x19, now, 0x21, value))
            elif delta:
                point = _delta_number(state, now, value, accepted)
                if point is not None:
                    points.append(point)
            else:
                if state.total is not None and value < state.total:  # decreased: a new run of totals
                    state.start_ns = self._new_start()
                state.total = value
                points.append(state.head + _NUMBER.pack(0x11, state.start_ns, 0x19, now, 0x21, value))
            if len(points) >= batch.room:
                request = batch.add(points, accepted)
                points, accepted = [], []
                if request is not None:
                    yield request
        request = batch.add(points, accepted)
        if request is not None:
            yield request
        yield None  # collecting may read /proc: a pause after each computed family


def _histogram_layout(family: HistogramFamily, with_start: bool) -> tuple[Callable[..., bytes], int, bytes, bytes]:
    """A family's point packer (time, count, sum, counts, bounds; start first `with_start`) and its body length."""
    buckets = len(family.buckets) + 1
    counts_field = b"\x32" + varint(8 * buckets)  # bucket_counts: packed fixed64
    bounds = pack_doubles(family.buckets)
    bounds_field = b"\x3a" + varint(len(bounds)) + bounds  # explicit_bounds: packed double
    layout = f"<{'BQ' if with_start else ''}BQBQBd{len(counts_field)}s{buckets}Q{len(bounds_field)}s"
    packer = struct.Struct(layout)
    return packer.pack, packer.size, counts_field, bounds_field


def _delta_number(state: Tracked, now: int, value: float, accepted: list[Tracked]) -> bytes | None:
    """A counter's delta point since its last accepted value; None when unchanged.

    A value below the accepted one means the counter started again: its whole value is the delta.
    """
    before = state.total
    if before is not None and value == before:
        return None
    state.sent_ns, state.sent_total, state.sent_counts, state.sent_sum = now, value, (), 0.0
    accepted.append(state)
    sent = value - before if before is not None and value > before else value
    return state.head + _NUMBER.pack(0x11, state.start_ns, 0x19, now, 0x21, sent)
