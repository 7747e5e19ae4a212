"""OTLP push of the metric store: the second output, rendered from the same store as /metrics.

Each export copies the store's numbers on the event loop (a plain copy, no formatting: the store
must not change while it is read, and the loop owns it), then builds the SDK's data model
(`MetricsData` ...) and sends it with the SDK's `OTLPMetricExporter` on a worker thread, so a slow
or dead collector never holds up webhook handling. One export is in flight at a time and a failed
one is not kept: with cumulative temporality the next export carries complete totals; with delta
the next one covers everything since the last export the collector acknowledged. Sample of what
one family becomes (cumulative):

    Metric(name="zoom.qss.media.latency", unit="s", data=Histogram(AggregationTemporality.CUMULATIVE,
        [HistogramDataPoint({"account": "acme", "product": "meeting", ...}, start, now, count=3,
                            sum=0.41, bucket_counts=[0, 0, 0, 1, 1, 1, 0, 0, 0, 0],
                            explicit_bounds=[0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2])]))
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from qss_exporter import __version__
from qss_exporter.config import OtlpConfig
from qss_exporter.outputs.otlp_names import otlp_name
from qss_exporter.outputs.otlp_settings import build_metric_exporter, resolve_settings
from qss_exporter.redaction import redact_url
from qss_exporter.store import (
    CallbackFamily,
    CounterFamily,
    DualHistogramSeries,
    GaugeFamily,
    HistogramFamily,
    HistogramSeries,
    LabelValues,
    Store,
)

__all__ = [
    "MAX_POINTS",
    "Batch",
    "FamilySnapshot",
    "OtlpMetrics",
    "OtlpSelfMetrics",
    "Renderer",
    "Snapshot",
    "build_otlp_metrics",
    "take_snapshot",
]

log = logging.getLogger(__name__)

Kind = Literal["counter", "gauge", "histogram"]
SCOPE = InstrumentationScope("qss_exporter", __version__)
# The store keeps no minimum or maximum per histogram series; the SDK's encoder leaves a None unset.
_UNKNOWN = cast(float, None)


# ------------------------------------------------------------------------------------- snapshot


@dataclass(slots=True)
class FamilySnapshot:
    """One family's numbers at one moment, copied out of the store."""

    name: str
    documentation: str
    kind: Kind
    labelnames: tuple[str, ...]
    observed: bool  # computed when read (a callback family), not accumulated in the store
    buckets: tuple[float, ...] = ()
    values: list[tuple[LabelValues, float]] = field(default_factory=list)
    histograms: list[tuple[LabelValues, tuple[int, ...], float]] = field(default_factory=list)
    # otlp.histograms: exponential: per series (scale, zero count, positive and negative buckets)
    exponential: list[_Exponential | None] = field(default_factory=list)


@dataclass(slots=True)
class Snapshot:
    time_ns: int
    families: list[FamilySnapshot]


_Exponential = tuple[int, int, dict[int, int], dict[int, int]]


def _copy_exponential(series: HistogramSeries) -> _Exponential | None:
    if not isinstance(series, DualHistogramSeries):
        return None
    buckets = series.exponential
    return buckets.scale, buckets.zero_count, dict(buckets.positive), dict(buckets.negative)


def _dense(buckets: dict[int, int]) -> Buckets:
    """OTLP's offset + contiguous counts from the store's sparse index -> count map."""
    if not buckets:
        return Buckets(0, [])
    low, high = min(buckets), max(buckets)
    return Buckets(low, [buckets.get(index, 0) for index in range(low, high + 1)])


def take_snapshot(store: Store, now: float) -> Snapshot:
    """Copy every family's numbers; runs on the event loop, so nothing changes while it reads."""
    families: list[FamilySnapshot] = []
    for family in store.families():
        kind: Kind = family.type
        snap = FamilySnapshot(
            family.name, family.documentation, kind, family.labelnames, isinstance(family, CallbackFamily)
        )
        if isinstance(family, CallbackFamily):
            snap.values = [(sample.labels, float(sample.value)) for sample in family.collect()]
        elif isinstance(family, HistogramFamily):
            snap.buckets = family.buckets
            series = list(family.series())
            snap.histograms = [(s.labels, tuple(s.counts), s.sum) for s in series]
            if family.exponential_scale is not None:
                snap.exponential = [_copy_exponential(s) for s in series]
        else:
            snap.values = [(s.labels, s.value) for s in family.series()]
        families.append(snap)
    return Snapshot(int(now * 1e9), families)


# -------------------------------------------------------------------------------------- rendering


@dataclass(slots=True)
class _Track:
    """What the renderer remembers of one series between exports."""

    # Cumulative: when the series' current run of totals began. Delta: when the collector last
    # accepted the series (the start of its next delta).
    start_ns: int
    total: float  # the counter value or histogram count (a decrease means the series started again)
    counts: tuple[int, ...] = ()  # delta only: the accepted cumulative bucket counts ...
    sum: float = 0.0  # ... and sum


_Key = tuple[str, LabelValues]
_Tracks = dict[_Key, _Track]
_Point = NumberDataPoint | HistogramDataPoint | ExponentialHistogramDataPoint

# Data points per request: far below the 4 MiB a Collector's gRPC receiver accepts by default
# (a histogram point with ten labels is well under 1 KiB).
MAX_POINTS = 2000
SWITCH_INTERVAL_SECONDS = 0.0005


@dataclass(slots=True)
class Batch:
    """One request's worth of metrics, and the series whose points it carries."""

    data: MetricsData
    keys: list[_Key]


class Renderer:
    """Turns snapshots into the SDK's MetricsData, keeping the per-series state temporality needs.

    Cumulative: start times are the process start, moved to the previous export when a series'
    total decreased (it expired and came back). Delta: each point is the difference to what the
    collector last accepted for that series (`commit`), so nothing is lost when an export fails,
    and unchanged series are not sent. Gauges have no temporality. Under `lowmemory` (the spec's
    third preference) counters and histograms are delta and the computed counters cumulative.
    """

    def __init__(
        self,
        resource: Resource,
        temporality: Literal["cumulative", "delta", "lowmemory"],
        start_ns: int,
        max_points: int = MAX_POINTS,
    ) -> None:
        self.resource = resource
        self.temporality = temporality
        self.start_ns = start_ns
        self.max_points = max_points
        self._tracks: _Tracks = {}
        self._last_ns = start_ns
        self._delta_families: set[str] = set()

    def _delta(self, family: FamilySnapshot) -> bool:
        if self.temporality == "cumulative" or family.kind == "gauge":
            return False
        return self.temporality == "delta" or not family.observed

    def render(self, snapshot: Snapshot) -> tuple[list[Batch], _Tracks]:
        """The requests for a snapshot (at most `max_points` points each) and the state to `commit`."""
        tracks: _Tracks = {}
        batches: list[Batch] = []
        metrics: list[Metric] = []
        keys: list[_Key] = []
        room = self.max_points
        for family in snapshot.families:
            name, unit = otlp_name(family.name, family.kind)
            delta = self._delta(family)
            if delta:
                self._delta_families.add(family.name)
            points, point_keys = self._points(family, snapshot.time_ns, delta, tracks)
            done = 0
            while done < len(points):  # a metric without points has no data type in OTLP: none is sent
                chunk = points[done : done + room]
                metrics.append(Metric(name, family.documentation, unit, self._data(family.kind, chunk, delta)))
                keys += point_keys[done : done + len(chunk)]
                done += len(chunk)
                room -= len(chunk)
                if room == 0:
                    batches.append(self._batch(metrics, keys))
                    metrics, keys, room = [], [], self.max_points
        if metrics:
            batches.append(self._batch(metrics, keys))
        return batches, tracks

    def commit(self, snapshot: Snapshot, tracks: _Tracks, rejected: set[_Key]) -> None:
        """Remember a rendered snapshot; for delta series, only what the collector accepted."""
        for key in rejected & tracks.keys():
            if key[0] in self._delta_families:
                before = self._tracks.get(key)
                if before is None:
                    del tracks[key]
                else:
                    tracks[key] = before
        self._tracks = tracks
        self._last_ns = snapshot.time_ns

    def _batch(self, metrics: list[Metric], keys: list[_Key]) -> Batch:
        scope = ScopeMetrics(SCOPE, metrics, "")
        return Batch(MetricsData([ResourceMetrics(self.resource, [scope], self.resource.schema_url)]), keys)

    @staticmethod
    def _data(kind: Kind, points: list[Any], delta: bool) -> Sum | Gauge | Histogram | ExponentialHistogram:
        temporality = AggregationTemporality.DELTA if delta else AggregationTemporality.CUMULATIVE
        if kind == "histogram" and isinstance(points[0], ExponentialHistogramDataPoint):
            return ExponentialHistogram(points, temporality)
        if kind == "histogram":
            return Histogram(points, temporality)
        if kind == "counter":
            return Sum(points, temporality, is_monotonic=True)
        return Gauge(points)

    def _points(
        self, family: FamilySnapshot, now: int, delta: bool, tracks: _Tracks
    ) -> tuple[list[_Point], list[_Key]]:
        points: list[_Point] = []
        keys: list[_Key] = []
        names = family.labelnames
        previous = self._tracks
        for labels, value in family.values:
            key = (family.name, labels)
            if family.kind == "gauge":
                points.append(NumberDataPoint(dict(zip(names, labels, strict=True)), 0, now, value))
                keys.append(key)
                continue
            before = previous.get(key)
            if delta:
                if before is not None and value == before.total:
                    tracks[key] = before  # unchanged: nothing to send
                    continue
                tracks[key] = _Track(now, value)
                if before is not None and value > before.total:
                    value -= before.total
                start = before.start_ns if before is not None else self.start_ns
            else:
                start = self._start(before, value)
                tracks[key] = _Track(start, value)
            points.append(NumberDataPoint(dict(zip(names, labels, strict=True)), start, now, value))
            keys.append(key)
        bounds = family.buckets
        exponential = family.exponential if family.exponential and not delta else [None] * len(family.histograms)
        for (labels, counts, total_sum), buckets in zip(family.histograms, exponential, strict=True):
            key = (family.name, labels)
            count = sum(counts)
            before = previous.get(key)
            if delta:
                if before is not None and count == before.total:
                    tracks[key] = before
                    continue
                tracks[key] = _Track(now, count, counts, total_sum)
                if before is not None and count > before.total:
                    counts = tuple(c - b for c, b in zip(counts, before.counts, strict=True))
                    total_sum -= before.sum
                    count -= int(before.total)
                start = before.start_ns if before is not None else self.start_ns
            else:
                start = self._start(before, count)
                tracks[key] = _Track(start, count)
            attributes = dict(zip(names, labels, strict=True))
            if buckets is not None:
                scale, zeros, positive, negative = buckets
                points.append(
                    ExponentialHistogramDataPoint(
                        attributes,
                        start,
                        now,
                        count,
                        total_sum,
                        scale,
                        zeros,
                        _dense(positive),
                        _dense(negative),
                        0,
                        _UNKNOWN,
                        _UNKNOWN,
                    )
                )
            else:
                points.append(
                    HistogramDataPoint(attributes, start, now, count, total_sum, counts, bounds, _UNKNOWN, _UNKNOWN)
                )
            keys.append(key)
        return points, keys

    def _start(self, previous: _Track | None, total: float) -> int:
        if previous is None:
            return self.start_ns
        if total < previous.total:  # the series was dropped and started again since the last export
            return self._last_ns + 1
        return previous.start_ns


# ------------------------------------------------------------------------------------ self-metrics


@dataclass(frozen=True, slots=True)
class OtlpSelfMetrics:
    """The exporter's own families; registered whether or not OTLP is on, so the catalogue is fixed."""

    exports: CounterFamily
    duration: GaugeFamily
    last_success: GaugeFamily
    log_records_dropped: CounterFamily

    @classmethod
    def register(cls, store: Store) -> OtlpSelfMetrics:
        return cls(
            store.counter(
                "zoom_qss_otlp_exports_total",
                "OTLP export attempts by signal and outcome (ok, failed); a failed one retried within its timeout.",
                ("signal", "outcome"),
            ),
            store.gauge(
                "zoom_qss_otlp_last_export_duration_seconds",
                "Duration of the last OTLP export attempt, retries included.",
                ("signal",),
            ),
            store.gauge(
                "zoom_qss_otlp_last_success_timestamp_seconds",
                "Unix time of the last OTLP export the collector accepted.",
                ("signal",),
            ),
            store.counter(
                "zoom_qss_otlp_log_records_dropped_total",
                "QoS log records dropped because the OTLP log queue (otlp.logs.max_queue) was full.",
                (),
            ),
        )

    def start(self, signal: str) -> None:
        for outcome in ("ok", "failed"):
            self.exports.inc((signal, outcome), 0)

    def record(self, signal: str, ok: bool, seconds: float, now: float) -> None:
        self.exports.inc((signal, "ok" if ok else "failed"))
        self.duration.set((signal,), seconds)
        if ok:
            self.last_success.set((signal,), now)


# -------------------------------------------------------------------------------------- exporter


class OtlpMetrics:
    """Pushes the store every `interval` seconds; `run` is a background task, `close` the final flush."""

    def __init__(
        self,
        store: Store,
        exporter: MetricExporter,
        renderer: Renderer,
        self_metrics: OtlpSelfMetrics,
        interval: float,
        endpoint: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.endpoint = redact_url(endpoint)  # only ever shown in log lines
        self.exporter = exporter
        self.renderer = renderer
        self.self_metrics = self_metrics
        self.interval = interval
        self.clock = clock
        # One worker: sends never overlap, and a stuck one delays only the next export.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otlp-metrics")
        self._lock = asyncio.Lock()
        self._inflight: asyncio.Future[bool] | None = None
        self._failing = False
        self.exports = 0  # attempts completed, for tests and the log
        self_metrics.start("metrics")

    async def run(self) -> None:
        # Building an export is CPU work on the worker thread. At the default 5 ms GIL switch
        # interval the event loop waited up to 5 ms per webhook for the GIL and fell behind: p50
        # 618 ms at 1,000 events/s while exporting 20k series every second; at 0.5 ms, 4.4 ms
        # (bench/export.py). A shorter interval costs little when only one thread is busy.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))
        while True:
            await asyncio.sleep(self.interval)
            await self.export()

    async def export(self) -> bool:
        """Export the store once; True when the collector accepted it."""
        async with self._lock:
            if self._inflight is not None and not self._inflight.done():
                # A previous attempt was cancelled while its thread kept sending: let it finish.
                await asyncio.shield(self._inflight)
            now = self.clock()
            snapshot = take_snapshot(self.store, now)
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            self._inflight = loop.run_in_executor(self._executor, self._send, snapshot)
            ok = await asyncio.shield(self._inflight)
            self.self_metrics.record("metrics", ok, time.perf_counter() - started, now)
            self.exports += 1
            if ok and self._failing:
                log.info("OTLP metric export to %s works again", self.endpoint)
            elif not ok and not self._failing:
                log.warning(
                    "OTLP metric export to %s failed; the next export carries the complete totals", self.endpoint
                )
            self._failing = not ok
            return ok

    def _send(self, snapshot: Snapshot) -> bool:
        """Worker thread: render, send request by request, and remember what the collector took.

        The cyclic GC is paused meanwhile: building an export allocates millions of short-lived
        objects, which set off full collections of the whole heap that stalled webhook answers (p99
        62 ms -> 35 ms at 1,000 events/s with 20k series exported every second, bench/export.py).
        Those objects are freed by reference counting; nothing cyclic is made here.
        """
        gc.disable()
        try:
            return self._render_and_send(snapshot)
        finally:
            gc.enable()

    def _render_and_send(self, snapshot: Snapshot) -> bool:
        batches, tracks = self.renderer.render(snapshot)
        rejected: set[_Key] = set()
        failed = False
        for batch in batches:
            if failed:  # the collector is failing: do not wait out a timeout per request
                rejected.update(batch.keys)
                continue
            try:
                result = self.exporter.export(batch.data)
            except Exception:
                # The SDK returns FAILURE for transport errors; anything raised is a bug worth its trace.
                log.exception("OTLP metric export raised")
                result = MetricExportResult.FAILURE
            if result is not MetricExportResult.SUCCESS:
                failed = True
                rejected.update(batch.keys)
        self.renderer.commit(snapshot, tracks, rejected)
        return not failed

    async def close(self, deadline: float) -> None:
        """Flush once (waiting for an export in flight first), then shut the exporter down.

        Whatever is left after `deadline` seconds is abandoned: shutting the SDK exporter down
        ends its retry waits, so its worker thread finishes within one request timeout.
        """
        try:
            await asyncio.wait_for(self.export(), deadline)
        except TimeoutError:
            log.warning("OTLP final flush did not finish within %.1fs; abandoned", deadline)
        finally:
            self.exporter.shutdown(timeout_millis=1000)
            self._executor.shutdown(wait=False, cancel_futures=True)


def build_otlp_metrics(
    config: OtlpConfig,
    store: Store,
    self_metrics: OtlpSelfMetrics,
    resource: Resource,
    environ: Mapping[str, str],
    clock: Callable[[], float] = time.time,
) -> OtlpMetrics:
    """The metric pusher for `otlp:` and the OTEL_* variables (see otlp_settings for precedence)."""
    settings = resolve_settings(config, environ, "metrics")
    renderer = Renderer(resource, settings.temporality, int(clock() * 1e9))
    exporter = build_metric_exporter(settings)
    log.info("OTLP export: %s", settings.describe())
    return OtlpMetrics(store, exporter, renderer, self_metrics, settings.interval, settings.endpoint, clock)
