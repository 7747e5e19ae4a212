"""The in-memory metric store: the single source of truth that every output renders from.

It knows families, label tuples, buckets and time, and nothing about Zoom. Recording is plain
attribute arithmetic on pre-built series objects (no locks: everything runs on one event loop), so
that an observation costs well under a microsecond; `prometheus_client` measured ~3 us (see the
performance issue). A hard cap on series protects the process: stored series and the series of
computed (callback) families count against it alike, and the distinct series it refuses are counted.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from qss_exporter.distinct import DistinctCount

__all__ = [
    "CallbackFamily",
    "CounterFamily",
    "DualHistogramSeries",
    "ExponentialBuckets",
    "Family",
    "GaugeFamily",
    "HistogramFamily",
    "LabelValues",
    "RefusedSeries",
    "Sample",
    "Store",
]

LabelValues = tuple[str, ...]
FamilyType = Literal["counter", "gauge", "histogram"]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_text(names: Sequence[str], values: LabelValues) -> str:
    """`a="x",b="y"`: the exposition form of a label set, built once per series and cached."""
    return ",".join(f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True))


class Series:
    """State shared by all series: labels, their cached exposition text and last update time."""

    __slots__ = ("labels", "otlp", "text", "touched")

    def __init__(self, labels: LabelValues, text: str, now: float) -> None:
        self.labels = labels
        self.text = text
        self.touched = now
        # The OTLP encoder's per-series state (its encoded attributes, start time, accepted delta), made at
        # the series' first export and owned by outputs/otlp_encode.py; None while OTLP is off.
        self.otlp: Any = None


class CounterSeries(Series):
    """A counter's or a gauge's value."""

    __slots__ = ("value",)

    def __init__(self, labels: LabelValues, text: str, now: float) -> None:
        super().__init__(labels, text, now)
        self.value = 0.0

    def add(self, amount: float, now: float) -> None:
        self.value += amount
        self.touched = now


class HistogramSeries(Series):
    """Per-bucket (not cumulative) counts; the last slot is the +Inf bucket.

    A list: an `array("q")` of the counts took more (tracemalloc at 10k participants: +36 bytes per
    active participant; its object is larger and the counts past 256 it spares are few)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, labels: LabelValues, text: str, now: float, bounds: tuple[float, ...]) -> None:
        super().__init__(labels, text, now)
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float, now: float) -> None:
        # bisect_left: the first bound >= value, i.e. Prometheus's `le` (less than or equal).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.touched = now


class RefusedSeries:
    """Stands in for a series the cap refused (counted once, when refused): updates are dropped."""

    __slots__ = ("family",)

    def __init__(self, family: Family[Any]) -> None:
        self.family = family

    def observe(self, value: float, now: float) -> None:
        pass

    def add(self, amount: float, now: float) -> None:
        pass


class ExponentialBuckets:
    """A base-2 exponential histogram (OpenTelemetry's) of the same observations, at a fixed scale.

    Bucket `i` counts values in (base**i, base**(i+1)] with base = 2**(2**-scale); negative values
    (Wi-Fi RSSI in dBm) go to the mirrored `negative` buckets, zeros to `zero_count`. Only kept when
    OTLP exports exponential histograms: explicit buckets cannot be converted into these afterwards.
    """

    __slots__ = ("_factor", "negative", "positive", "scale", "zero_count")

    def __init__(self, scale: int) -> None:
        self.scale = scale
        self._factor = 2.0**scale
        self.positive: dict[int, int] = {}
        self.negative: dict[int, int] = {}
        self.zero_count = 0

    def add(self, value: float) -> None:
        if value > 0.0:
            index = math.ceil(math.log2(value) * self._factor) - 1
            self.positive[index] = self.positive.get(index, 0) + 1
        elif value < 0.0:
            index = math.ceil(math.log2(-value) * self._factor) - 1
            self.negative[index] = self.negative.get(index, 0) + 1
        else:
            self.zero_count += 1


class DualHistogramSeries(HistogramSeries):
    """A histogram series that also keeps exponential buckets (`otlp.histograms: exponential`)."""

    __slots__ = ("exponential",)

    def __init__(self, labels: LabelValues, text: str, now: float, bounds: tuple[float, ...], scale: int) -> None:
        super().__init__(labels, text, now, bounds)
        self.exponential = ExponentialBuckets(scale)

    def observe(self, value: float, now: float) -> None:
        super().observe(value, now)
        self.exponential.add(value)


@dataclass(frozen=True, slots=True)
class Sample:
    """A computed gauge value (callback gauges have no stored series)."""

    labels: LabelValues
    value: float


S = TypeVar("S", bound=Series)


class Family(Generic[S]):
    """A metric family with a fixed label set. `ttl` None means its series never expire."""

    type: FamilyType

    def __init__(self, store: Store, name: str, documentation: str, labelnames: Sequence[str], ttl: float | None):
        self.store = store
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.ttl = ttl
        self._refused = DistinctCount()  # label sets the store's cap refused
        self._series: dict[LabelValues, S] = {}

    def __len__(self) -> int:
        return len(self._series)

    @property
    def dropped(self) -> int:
        """Distinct series (label sets) the store's cap refused; a refused series updated again is not recounted."""
        return self._refused.count()

    def series(self) -> Iterator[S]:
        return iter(list(self._series.values()))

    def get(self, labels: LabelValues) -> S | None:
        """The series for `labels`, created on first use; None when the series cap refuses it.

        Callers may keep the series object to update it directly until `store.generation` changes
        (which happens whenever a series is removed).
        """
        series = self._series.get(labels)
        if series is None and self._admit(labels):
            series = self._series[labels] = self._new(labels, self.store.label_text(self.labelnames, labels))
        return series

    def handle(self, labels: LabelValues) -> S | RefusedSeries:
        """Like `get`, but a refused series is a stand-in that counts each update as dropped."""
        return self.get(labels) or RefusedSeries(self)

    def _new(self, labels: LabelValues, text: str) -> S:
        raise NotImplementedError

    def remove(self, labels: LabelValues) -> None:
        if self._series.pop(labels, None) is not None:
            self.store.series_count -= 1
            self.store.generation += 1

    def clear(self) -> None:
        self.store.series_count -= len(self._series)
        self._series.clear()
        self.store.generation += 1

    def expire(self, now: float) -> int:
        """Drop series not updated for `ttl` seconds; returns how many were dropped."""
        if self.ttl is None:
            return 0
        cutoff = now - self.ttl
        stale = [labels for labels, series in self._series.items() if series.touched < cutoff]
        for labels in stale:
            del self._series[labels]
        if stale:
            self.store.series_count -= len(stale)
            self.store.generation += 1
        return len(stale)

    def _admit(self, labels: LabelValues) -> bool:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected {len(self.labelnames)} label values, got {labels!r}")
        store = self.store
        if store.series_count + store.computed_count >= store.max_series:
            self._refused.add(labels)
            return False
        store.series_count += 1
        return True


class CounterFamily(Family[CounterSeries]):
    type: FamilyType = "counter"

    def _new(self, labels: LabelValues, text: str) -> CounterSeries:
        return CounterSeries(labels, text, self.store.now)

    def inc(self, labels: LabelValues, amount: float = 1.0) -> None:
        series = self._series.get(labels) or self.get(labels)
        if series is not None:
            series.add(amount, self.store.now)

    def value(self, labels: LabelValues) -> float:
        series = self._series.get(labels)
        return series.value if series is not None else 0.0


class GaugeFamily(Family[CounterSeries]):
    type: FamilyType = "gauge"

    def _new(self, labels: LabelValues, text: str) -> CounterSeries:
        return CounterSeries(labels, text, self.store.now)

    def set(self, labels: LabelValues, value: float) -> None:
        series = self.get(labels)
        if series is not None:
            series.value = value  # gauges reuse the counter's value slot
            series.touched = self.store.now


class HistogramFamily(Family[HistogramSeries]):
    type: FamilyType = "histogram"

    def __init__(
        self,
        store: Store,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        ttl: float | None,
        buckets: Sequence[float],
        exponential_scale: int | None = None,
    ) -> None:
        super().__init__(store, name, documentation, labelnames, ttl)
        if not buckets or any(b >= a for a, b in zip(buckets[1:], buckets, strict=False)):
            raise ValueError(f"{name}: buckets must be non-empty and strictly increasing, got {list(buckets)}")
        self.buckets = tuple(float(b) for b in buckets)
        self.exponential_scale = exponential_scale

    def _new(self, labels: LabelValues, text: str) -> HistogramSeries:
        if self.exponential_scale is not None:
            return DualHistogramSeries(labels, text, self.store.now, self.buckets, self.exponential_scale)
        return HistogramSeries(labels, text, self.store.now, self.buckets)

    def observe(self, labels: LabelValues, value: float) -> None:
        series = self._series.get(labels) or self.get(labels)
        if series is not None:
            series.observe(value, self.store.now)


class CallbackFamily:
    """A gauge or counter computed when rendered (active participants, series counts): no stored state.

    A `capped` family's series count against the store's cap like stored ones: `collect` keeps at most
    the room the cap leaves, remembers how many it exposed (`held`), and counts the label sets it cut.
    Fixed-size self-metrics are not capped, so that the cap can never hide its own refusals.
    """

    def __init__(
        self,
        store: Store,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        collect: Callable[[], Iterable[Sample]],
        type: FamilyType = "gauge",
        capped: bool = True,
    ) -> None:
        self.store = store
        self.type = type
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.capped = capped
        self.held = 0  # series exposed by the last collect (capped families)
        self._collect = collect
        self._refused = DistinctCount()

    def __len__(self) -> int:
        return self.held

    @property
    def dropped(self) -> int:
        """Distinct label sets the cap kept out of this family's output."""
        return self._refused.count()

    def collect(self) -> list[Sample]:
        samples = list(self._collect())
        if not self.capped:
            return samples
        store = self.store
        room = max(0, store.max_series - store.series_count - (store.computed_count - self.held))
        if len(samples) > room:
            for sample in samples[room:]:
                self._refused.add(sample.labels)
            del samples[room:]
        store.computed_count += len(samples) - self.held
        self.held = len(samples)
        return samples


AnyFamily = CounterFamily | GaugeFamily | HistogramFamily | CallbackFamily


class Store:
    """Owns every family, the series cap and the notion of "now" used to stamp updates.

    `now` is set by whoever records (one assignment per event rather than a clock call per
    observation); `expire` is called periodically by the application.
    """

    def __init__(self, max_series: int, clock: Callable[[], float]) -> None:
        self.max_series = max_series
        self.clock = clock
        self.now = clock()
        self.series_count = 0  # stored series
        self.computed_count = 0  # series the capped callback families exposed at their last collect
        self.generation = 0  # bumped whenever a series is removed, so cached series objects go stale
        self._families: dict[str, AnyFamily] = {}
        # One exposition text per label set, shared by the families with the same label names (a media
        # stream's nine): ~170 bytes per series each kept alone; tracemalloc at 10k participants, 168 -> 65
        # bytes per active participant (bench/memory.py). Pruned to the live series' texts at `expire`.
        self._texts: dict[tuple[str, ...], dict[LabelValues, str]] = {}  # label names -> values -> text
        self._texts_generation = 0

    @property
    def label_texts(self) -> int:
        """Label texts held (one per distinct label names and values of the stored series)."""
        return sum(len(texts) for texts in self._texts.values())

    def label_text(self, names: tuple[str, ...], values: LabelValues) -> str:
        """`label_text(names, values)`, the same string for every family with these label names."""
        texts = self._texts.get(names)
        if texts is None:
            texts = self._texts[names] = {}
        text = texts.get(values)
        if text is None:
            text = texts[values] = label_text(names, values)
        return text

    def _register(self, family: AnyFamily) -> None:
        if family.name in self._families:
            raise ValueError(f"metric family {family.name} registered twice")
        self._families[family.name] = family

    def counter(
        self, name: str, documentation: str, labelnames: Sequence[str], ttl: float | None = None
    ) -> CounterFamily:
        family = CounterFamily(self, name, documentation, labelnames, ttl)
        self._register(family)
        return family

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str], ttl: float | None = None) -> GaugeFamily:
        family = GaugeFamily(self, name, documentation, labelnames, ttl)
        self._register(family)
        return family

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        ttl: float | None = None,
        exponential_scale: int | None = None,
    ) -> HistogramFamily:
        family = HistogramFamily(self, name, documentation, labelnames, ttl, buckets, exponential_scale)
        self._register(family)
        return family

    def callback(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        collect: Callable[[], Iterable[Sample]],
        type: FamilyType = "gauge",
        capped: bool = True,
    ) -> CallbackFamily:
        family = CallbackFamily(self, name, documentation, labelnames, collect, type, capped)
        self._register(family)
        return family

    def families(self) -> list[AnyFamily]:
        return list(self._families.values())

    def family(self, name: str) -> AnyFamily:
        return self._families[name]

    def stored_families(self) -> Iterator[CounterFamily | GaugeFamily | HistogramFamily]:
        for family in self._families.values():
            if not isinstance(family, CallbackFamily):
                yield family

    def expire(self) -> int:
        """Drop every series idle past its family's TTL; returns how many were dropped."""
        now = self.now = self.clock()
        dropped = sum(family.expire(now) for family in self.stored_families())
        if self.generation != self._texts_generation:  # series were removed (here or by `remove`/`clear`)
            self._texts_generation = self.generation
            texts: dict[tuple[str, ...], dict[LabelValues, str]] = {}
            for family in self.stored_families():
                held = texts.setdefault(family.labelnames, {})
                for series in family._series.values():
                    held[series.labels] = series.text
            self._texts = texts
        return dropped
