"""The OTLP encoder: its bytes against the SDK's own encoder, start times, resets, deltas and request splits.

The oracle is the OpenTelemetry SDK: the same store is built into the SDK's data model (as the exporter
did before it wrote protobuf itself) and encoded by `encode_metrics`; both must decode to equal messages.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality as Temporality
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource

from qss_exporter.outputs.otlp import SCOPE, OtlpMetrics, OtlpSelfMetrics
from qss_exporter.outputs.otlp_encode import PAUSE_EVERY, EncodedRequest, Encoder
from qss_exporter.outputs.otlp_names import otlp_name
from qss_exporter.outputs.otlp_transport import Sent
from qss_exporter.store import (
    CallbackFamily,
    CounterFamily,
    DualHistogramSeries,
    HistogramFamily,
    Sample,
    Store,
)
from tests.otlp_receivers import attributes, metrics_of

RESOURCE = Resource({"service.name": "qss-exporter", "service.instance.id": "test", "deployment.environment": "ci"})
START = 1_000
NOW = 5_000
UNSET = cast(float, None)  # the store keeps no minimum or maximum: the SDK's encoder leaves None unset


class Clock:
    """Nanoseconds the test sets (every point of an export carries the time its slice began)."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def encoder(store: Store, temporality: Any = "cumulative", max_points: int = 100_000, clock: Any = None) -> Encoder:
    return Encoder(store, RESOURCE, SCOPE, temporality, START, max_points, clock or Clock())


def export(coder: Encoder, accepted: bool | Sequence[bool] = True) -> list[ExportMetricsServiceRequest]:
    """One export's requests, decoded; the collector accepts all, none, or request by request."""
    requests = [request for request in coder.encode() if request is not None]
    verdicts = [accepted] * len(requests) if isinstance(accepted, bool) else list(accepted)
    for request, ok in zip(requests, verdicts, strict=True):
        if ok:
            coder.accept(request)
    return [ExportMetricsServiceRequest.FromString(request.data) for request in requests]


def points(requests: list[ExportMetricsServiceRequest], name: str) -> list[Any]:
    found = []
    for request in requests:
        for metric in metrics_of(request):
            if metric.name == name:
                found += getattr(metric, metric.WhichOneof("data") or "gauge").data_points
    return found


def temporality_of(requests: list[ExportMetricsServiceRequest], name: str) -> int:
    metric = next(m for r in requests for m in metrics_of(r) if m.name == name)
    return int(getattr(metric, metric.WhichOneof("data") or "gauge").aggregation_temporality)


# ------------------------------------------------------------------------------ the SDK as the oracle


def sdk_request(store: Store, start: int, now: int) -> ExportMetricsServiceRequest:
    """What the SDK's encoder makes of the store, for a first cumulative export (every start: `start`)."""
    metrics: list[Metric] = []
    for family in store.families():
        name, unit = otlp_name(family.name, family.type)
        data: Any
        if isinstance(family, CallbackFamily):
            samples = [(s.labels, float(s.value)) for s in family.collect()]
            numbers = [
                NumberDataPoint(dict(zip(family.labelnames, labels, strict=True)), 0, now, v) for labels, v in samples
            ]
            if family.type == "counter":
                numbers = [NumberDataPoint(p.attributes, start, now, p.value) for p in numbers]
                data = Sum(numbers, AggregationTemporality.CUMULATIVE, True)
            else:
                data = Gauge(numbers)
        elif isinstance(family, HistogramFamily):
            hist_points: list[Any] = []
            for series in family.series():
                labels = dict(zip(family.labelnames, series.labels, strict=True))
                count = sum(series.counts)
                if isinstance(series, DualHistogramSeries):
                    b = series.exponential
                    hist_points.append(
                        ExponentialHistogramDataPoint(
                            labels,
                            start,
                            now,
                            count,
                            series.sum,
                            b.scale,
                            b.zero_count,
                            _dense(b.positive),
                            _dense(b.negative),
                            0,
                            UNSET,
                            UNSET,
                        )
                    )
                else:
                    hist_points.append(
                        HistogramDataPoint(
                            labels,
                            start,
                            now,
                            count,
                            series.sum,
                            tuple(series.counts),
                            family.buckets,
                            UNSET,
                            UNSET,
                        )
                    )
            exponential = family.exponential_scale is not None
            data = (ExponentialHistogram if exponential else Histogram)(hist_points, AggregationTemporality.CUMULATIVE)
        else:
            counter = isinstance(family, CounterFamily) and family.type == "counter"
            numbers = [
                NumberDataPoint(
                    dict(zip(family.labelnames, s.labels, strict=True)), start if counter else 0, now, s.value
                )
                for s in family.series()
            ]
            data = Sum(numbers, AggregationTemporality.CUMULATIVE, True) if counter else Gauge(numbers)
        if data.data_points:
            metrics.append(Metric(name, family.documentation, unit, data))
    scope = ScopeMetrics(SCOPE, metrics, "")
    return encode_metrics(MetricsData([ResourceMetrics(RESOURCE, [scope], RESOURCE.schema_url)]))


def _dense(buckets: dict[int, int]) -> Buckets:
    if not buckets:
        return Buckets(0, [])
    low, high = min(buckets), max(buckets)
    return Buckets(low, [buckets.get(index, 0) for index in range(low, high + 1)])


LABEL_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)  # what the SDK can encode: no lone surrogates
FINITE = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@st.composite
def stores(draw: st.DrawFn) -> Store:
    """A store with every kind of family: labels of any text, integer and float gauges, any observations."""
    store = Store(10_000, lambda: 0.0)
    counter = store.counter("zoom_qss_events_total", draw(LABEL_TEXT), ("source", "kind"))
    for labels in draw(st.lists(st.tuples(LABEL_TEXT, LABEL_TEXT), max_size=6, unique=True)):
        counter.inc(labels, draw(st.floats(min_value=0, max_value=1e9)))
    gauge = store.gauge("zoom_qss_poll_backlog", "Backlog.", ("account",))
    for label in draw(st.lists(LABEL_TEXT, max_size=4, unique=True)):
        gauge.set((label,), draw(st.one_of(st.integers(-(2**62), 2**62), FINITE)))
    bounds = sorted(draw(st.sets(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=12)))
    histogram = store.histogram("zoom_qss_media_latency_seconds", "Latency.", ("site",), bounds)
    exponential = store.histogram(
        "zoom_qss_wifi_rssi_dbm", "RSSI.", ("site",), (-70.0,), exponential_scale=draw(st.integers(-2, 6))
    )
    for family in (histogram, exponential):
        for label in draw(st.lists(LABEL_TEXT, max_size=4, unique=True)):
            for value in draw(st.lists(FINITE, min_size=1, max_size=20)):
                family.observe((label,), value)
    values = draw(st.lists(st.tuples(LABEL_TEXT, st.floats(0, 1e9)), max_size=3, unique_by=lambda pair: pair[0]))
    samples = [Sample((label,), value) for label, value in values]
    store.callback("python_gc_collections_total", "GC runs.", ("generation",), lambda: samples, type="counter")
    store.callback("zoom_qss_series", "Series.", ("family",), lambda: samples)
    return store


@given(stores())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_first_export_decodes_to_exactly_what_the_sdk_encodes(store: Store) -> None:
    expected = sdk_request(store, START, NOW)
    assert export(encoder(store)) == ([expected] if expected.resource_metrics[0].scope_metrics[0].metrics else [])


def test_every_kind_appears_in_the_oracle_comparison() -> None:
    """The property test's stores hold every point type (so a wrong field number cannot hide)."""
    store = Store(100, lambda: 0.0)
    store.counter("zoom_qss_events_total", "E.", ("source",)).inc(("webhook",), 2)
    store.gauge("zoom_qss_poll_backlog", "B.", ("account",)).set(("acme",), 3)
    store.gauge("zoom_qss_dedupe_keys", "K.", ()).set((), 0.5)
    store.histogram("zoom_qss_media_latency_seconds", "L.", ("site",), (0.1, 1.0)).observe(("leeds",), 0.5)
    rssi = store.histogram("zoom_qss_wifi_rssi_dbm", "R.", ("site",), (-70.0,), exponential_scale=3)
    for value in (-60.0, 0.0, 2.0):
        rssi.observe(("leeds",), value)
    (request,) = export(encoder(store))
    assert request == sdk_request(store, START, NOW)
    kinds = {metric.WhichOneof("data") for metric in metrics_of(request)}
    assert kinds == {"sum", "gauge", "histogram", "exponential_histogram"}
    (backlog,) = points([request], "zoom.qss.poll.backlog")
    assert backlog.WhichOneof("value") == "as_int"  # an integer gauge stays an integer, as the SDK sends it
    (rssi_point,) = points([request], "zoom.qss.wifi.rssi_dbm")
    assert (rssi_point.zero_count, sum(rssi_point.negative.bucket_counts), sum(rssi_point.positive.bucket_counts)) == (
        1,
        1,
        1,
    )


@given(st.text(max_size=20))
def test_any_label_text_encodes_including_lone_surrogates(value: str) -> None:
    store = Store(10, lambda: 0.0)
    store.counter("zoom_qss_events_total", "E.", ("source",)).inc((value,))
    (request,) = export(encoder(store))
    (point,) = points([request], "zoom.qss.events")
    assert attributes(point.attributes) == {"source": value.encode("utf-8", "replace").decode()}
    assert point.as_double == 1


# -------------------------------------------------------------------------------- start times, resets


def test_cumulative_start_is_the_process_start_then_just_after_the_last_complete_export() -> None:
    store = Store(100, lambda: 0.0)
    events = store.counter("zoom_qss_events_total", "Events.", ("source",))
    events.inc(("webhook",), 5)
    clock = Clock(200)
    coder = encoder(store, clock=clock)
    (first,) = points(export(coder), "zoom.qss.events")
    assert (first.start_time_unix_nano, first.time_unix_nano, first.as_double) == (START, 200, 5)
    clock.now = 300
    events.inc(("webhook",), 2)
    assert points(export(coder), "zoom.qss.events")[0].start_time_unix_nano == START
    events.remove(("webhook",))  # expired ...
    events.inc(("webhook",), 2)  # ... and came back: a new run of totals
    events.inc(("poll",), 1)  # new since the last export
    clock.now = 400
    reset, new = sorted(points(export(coder), "zoom.qss.events"), key=lambda p: p.as_double, reverse=True)
    assert (reset.start_time_unix_nano, reset.as_double) == (301, 2)
    assert (new.start_time_unix_nano, new.as_double) == (301, 1)
    clock.now = 500
    assert {p.start_time_unix_nano for p in points(export(coder), "zoom.qss.events")} == {301}


def test_a_computed_counter_that_decreases_starts_a_new_run() -> None:
    store = Store(100, lambda: 0.0)
    value = [7.0]
    store.callback("zoom_qss_series_dropped_total", "Dropped.", (), lambda: [Sample((), value[0])], type="counter")
    clock = Clock(200)
    coder = encoder(store, clock=clock)
    assert points(export(coder), "zoom.qss.series.dropped")[0].start_time_unix_nano == START
    value[0], clock.now = 3.0, 300
    reset = points(export(coder), "zoom.qss.series.dropped")[0]
    assert (reset.start_time_unix_nano, reset.as_double) == (201, 3)


def test_a_second_encoder_over_the_same_store_starts_afresh() -> None:
    store = Store(100, lambda: 0.0)
    store.histogram("zoom_qss_wifi_rssi_dbm", "R.", ("site",), (-70.0,), exponential_scale=2).observe(("a",), -50)
    first = encoder(store)
    export(first)
    second = encoder(store, "delta")  # explicit buckets now: the first encoder's exponential heads are gone
    (request,) = export(second)
    assert request.resource_metrics[0].scope_metrics[0].metrics[0].WhichOneof("data") == "histogram"
    with pytest.raises(RuntimeError, match="another OTLP encoder"):
        next(first.encode())


# ----------------------------------------------------------------------------------------- delta


def test_delta_covers_everything_since_the_last_accepted_export() -> None:
    store = Store(100, lambda: 0.0)
    lag = store.histogram("zoom_qss_event_lag_seconds", "Lag.", ("source",), (1.0, 5.0))
    clock = Clock(200)
    coder = encoder(store, "delta", clock=clock)
    lag.observe(("webhook",), 0.5)
    (first,) = points(export(coder), "zoom.qss.event.lag")
    assert (tuple(first.bucket_counts), first.start_time_unix_nano) == ((1, 0, 0), START)
    lag.observe(("webhook",), 2.0)
    lag.observe(("webhook",), 4.0)
    clock.now = 300
    (failed,) = points(export(coder, accepted=False), "zoom.qss.event.lag")
    assert tuple(failed.bucket_counts) == (0, 2, 0)
    lag.observe(("webhook",), 6.0)
    clock.now = 400
    requests = export(coder)
    assert temporality_of(requests, "zoom.qss.event.lag") == Temporality.AGGREGATION_TEMPORALITY_DELTA
    (retried,) = points(requests, "zoom.qss.event.lag")
    assert (retried.start_time_unix_nano, tuple(retried.bucket_counts), retried.count, retried.sum) == (
        200,
        (0, 2, 1),
        3,
        12.0,
    )
    clock.now = 500
    assert points(export(coder), "zoom.qss.event.lag") == []  # unchanged: nothing sent


def test_lowmemory_sends_stored_counters_as_deltas_and_computed_ones_cumulatively() -> None:
    store = Store(100, lambda: 0.0)
    store.counter("zoom_qss_events_total", "Events.", ("source",)).inc(("webhook",))
    store.callback("zoom_qss_dedupe_evicted_total", "Evicted.", (), lambda: [Sample((), 4.0)], type="counter")
    requests = export(encoder(store, "lowmemory"))
    assert temporality_of(requests, "zoom.qss.events") == Temporality.AGGREGATION_TEMPORALITY_DELTA
    assert temporality_of(requests, "zoom.qss.dedupe.evicted") == Temporality.AGGREGATION_TEMPORALITY_CUMULATIVE


@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(st.integers(0, 5), st.floats(0, 10)), max_size=12), st.lists(st.booleans(), max_size=4)
        ),
        min_size=1,
        max_size=8,
    )
)
@settings(max_examples=60, deadline=None)
def test_accepted_deltas_add_up_to_the_totals_whatever_fails(
    rounds: list[tuple[list[tuple[int, float]], list[bool]]],
) -> None:
    """Observations between exports, each request accepted or not: the accepted points sum to the store."""
    store = Store(100, lambda: 0.0)
    lag = store.histogram("zoom_qss_event_lag_seconds", "Lag.", ("source",), (1.0, 5.0))
    events = store.counter("zoom_qss_events_total", "Events.", ("source",))
    clock = Clock(100)
    coder = encoder(store, "delta", max_points=3, clock=clock)
    counts, sums, totals = [0, 0, 0], 0.0, 0.0
    for number, (observations, verdicts) in enumerate([*rounds, ([], [])]):
        for source, value in observations:
            lag.observe((f"s{source}",), value)
            events.inc((f"s{source}",), 1)
        clock.now += 100
        requests = [request for request in coder.encode() if request is not None]
        final = number == len(rounds)
        for index, request in enumerate(requests):
            if final or (verdicts[index] if index < len(verdicts) else True):
                coder.accept(request)
                decoded = [ExportMetricsServiceRequest.FromString(request.data)]
                for point in points(decoded, "zoom.qss.event.lag"):
                    counts = [a + b for a, b in zip(counts, point.bucket_counts, strict=True)]
                    sums += point.sum
                totals += sum(point.as_double for point in points(decoded, "zoom.qss.events"))
    assert counts == [sum(s.counts[i] for s in lag.series()) for i in range(3)]
    assert sums == pytest.approx(sum(s.sum for s in lag.series()))
    assert totals == sum(s.value for s in events.series())


# -------------------------------------------------------------------------------- requests, pauses


def test_large_stores_are_split_and_a_failed_request_keeps_only_its_series_pending() -> None:
    store = Store(100, lambda: 0.0)
    events = store.counter("zoom_qss_events_total", "Events.", ("source",))
    for index in range(5):
        events.inc((f"s{index}",))
    coder = encoder(store, "delta", max_points=2)
    requests = export(coder, accepted=[True, False, True])
    assert [len(points([request], "zoom.qss.events")) for request in requests] == [2, 2, 1]
    again = export(coder)
    pending = [attributes(p.attributes)["source"] for p in points(again, "zoom.qss.events")]
    assert pending == [attributes(p.attributes)["source"] for p in points([requests[1]], "zoom.qss.events")]


def test_the_encoder_pauses_every_few_dozen_series() -> None:
    store = Store(10_000, lambda: 0.0)
    events = store.counter("zoom_qss_events_total", "Events.", ("source",))
    for index in range(1000):
        events.inc((f"s{index}",))
    items = list(encoder(store, max_points=300).encode())
    requests = [item for item in items if item is not None]
    assert [request.points for request in requests] == [300, 300, 300, 100]
    assert sum(item is None for item in items) >= 1000 // PAUSE_EVERY
    longest = max(len(run) for run in _runs_between_pauses(items))
    assert longest <= 1  # between two pauses at most one request completes


def _runs_between_pauses(items: list[EncodedRequest | None]) -> Iterator[list[EncodedRequest]]:
    run: list[EncodedRequest] = []
    for item in items:
        if item is None:
            yield run
            run = []
        else:
            run.append(item)
    yield run


class _Accepting:
    """A transport that takes every request (the loop-sharing test needs no network)."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []

    def send(self, request: bytes) -> Sent:
        self.requests.append(request)
        return Sent(True)

    def shutdown(self) -> None:
        pass


async def test_an_export_lets_the_event_loop_run_between_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a zero slice the exporter yields at every pause point: other tasks run all through an export."""
    monkeypatch.setattr("qss_exporter.outputs.otlp.SLICE_SECONDS", 0.0)
    store = Store(100_000, lambda: 0.0)
    latency = store.histogram("zoom_qss_media_latency_seconds", "Latency.", ("site",), (0.1, 1.0))
    for index in range(20 * PAUSE_EVERY):
        latency.observe((f"site-{index}",), 0.5)
    transport = _Accepting()
    exporter = OtlpMetrics(store, transport, encoder(store, max_points=500), OtlpSelfMetrics.register(store), 3600)
    turns = 0
    done = False

    async def other_task() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    before = turns
    assert await exporter.export()
    done = True
    await ticking
    assert turns - before >= 20  # the loop ran between slices, not once after the whole export
    decoded = [ExportMetricsServiceRequest.FromString(request) for request in transport.requests]
    assert len(points(decoded, "zoom.qss.media.latency")) == 20 * PAUSE_EVERY
    assert all(math.isclose(p.sum, 0.5) for p in points(decoded, "zoom.qss.media.latency"))
    await exporter.close(1.0)
