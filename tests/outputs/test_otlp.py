"""OTLP export end to end: the real agent pushes to real gRPC and HTTP receivers on loopback.

What arrives is decoded and translated the way a Prometheus OTLP receiver stores it, then compared
with /metrics: every family, label set, count, sum and bucket, and the names themselves.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import re
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from qss_exporter import __version__
from qss_exporter.config import config_from_mapping
from qss_exporter.errors import ConfigError
from qss_exporter.outputs.otlp_names import OTLP_NAMES
from tests.conftest import (
    OTHER_SECRET,
    SECRET,
    AgentFactory,
    RunningAgent,
    Series,
    base_config,
    merge,
    parse_metrics,
    total,
)
from tests.otlp_receivers import (
    GrpcReceiver,
    HttpReceiver,
    Received,
    as_prometheus,
    attributes,
    kind_of,
    metrics_of,
    normalise,
    prometheus_name,
    resource_attributes,
)
from tests.process import AgentProcess
from tests.samples import SAMPLES, load_sample

DOC = Path(__file__).resolve().parents[2] / "docs" / "otlp.md"
ALL_LABELS = {"data_center": True, "client_os": True, "client_version": True}
SELF = re.compile(r"zoom_qss_otlp_")
RUNTIME = re.compile(r"process_|python_gc_")  # read from the process at each scrape or export

Receiver = GrpcReceiver | HttpReceiver


@pytest.fixture
async def received() -> Received:
    return Received(asyncio.get_running_loop())


@pytest.fixture(params=["grpc", "http/protobuf"])
async def receiver(request: pytest.FixtureRequest, received: Received) -> AsyncIterator[Receiver]:
    server: Receiver = GrpcReceiver(received) if request.param == "grpc" else HttpReceiver(received)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def grpc_receiver(received: Received) -> AsyncIterator[GrpcReceiver]:
    server = GrpcReceiver(received)
    server.start()
    yield server
    server.stop()


def otlp(receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    protocol = "grpc" if isinstance(receiver, GrpcReceiver) else "http/protobuf"
    return {
        "enabled": True,
        "protocol": protocol,
        "endpoint": receiver.endpoint,
        "interval_seconds": 3600,
        "timeout_seconds": 1,
    } | overrides


def now_ms() -> int:
    return int(time.time() * 1000)


async def feed(running: RunningAgent) -> None:
    """Every Zoom sample, plus records happening now (active gauges) and a rejected request."""
    for path in sorted(SAMPLES.glob("*.json")):
        if path.name.startswith(("meeting.", "webinar.", "session.", "phone.")):
            secret = OTHER_SECRET if path.name.startswith("session.") else None
            response = await (
                running.post(load_sample(path.stem), secret) if secret else running.post(load_sample(path.stem))
            )
            assert response.status_code == 200, path.name
    body = copy.deepcopy(load_sample("meeting.participant_qos"))
    body["event_ts"] = now_ms()
    body["payload"]["object"]["participant"]["user_id"] = "live-participant"
    body["payload"]["object"]["participant"]["qos"][1]["details"]["latency"] = "fast"  # counted, not recorded
    assert (await running.post(body)).status_code == 200
    call = load_sample("phone.call_qos")
    call["event_ts"] = now_ms()
    call["payload"]["object"]["call_id"] = "live-call"
    assert (await running.post(call)).status_code == 200
    assert (await running.post(body, secret="wrong")).status_code == 401


async def exported_now(running: RunningAgent, received: Received) -> tuple[ExportMetricsServiceRequest, Series]:
    """An export and a scrape of the same moment.

    The exporter's own families change when an export completes, so export once, scrape, then
    export again: the second export's snapshot is taken before it completes, when nothing has
    changed since the scrape.
    """
    otlp = running.agent.otlp
    assert otlp is not None
    assert await otlp.export()
    scraped = await running.scrape()
    waiting = asyncio.ensure_future(received.next_metrics())
    assert await otlp.export()
    return await waiting, scraped


async def test_every_series_in_otlp_equals_metrics_at_the_same_moment(
    receiver: Receiver, received: Received, start_agent: AgentFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,service.name=from-env")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme%20corp")
    running = await start_agent(
        labels=ALL_LABELS,
        otlp=otlp(
            receiver,
            compression="gzip",
            headers={"Authorization": "Bearer s3cret"},
            resource_attributes={"service.namespace": "zoom"},
        ),
    )
    await feed(running)
    request, scraped = await exported_now(running, received)

    pushed = as_prometheus(request)
    assert _steady(pushed) == _steady(normalise(scraped))
    # The process and GC families move between any two readings (CPU time, memory): the same series in both.
    assert _runtime_keys(pushed) == _runtime_keys(scraped)
    assert {"process_cpu_seconds_total", "python_gc_collections_total"} <= {name for name, _ in _runtime_keys(pushed)}
    assert {name for name, _ in scraped} >= {"zoom_qss_media_latency_seconds_bucket", "zoom_qss_phone_calls_total"}
    assert total(scraped, "zoom_qss_active_participants") == 1
    assert total(scraped, "zoom_qss_phone_active_calls") == 1
    assert total(scraped, "zoom_qss_webhook_requests_total", outcome="bad_signature") == 1

    resource = resource_attributes(request)
    assert resource["service.name"] == "from-env"  # OTEL_RESOURCE_ATTRIBUTES is honoured ...
    assert resource["deployment.environment"] == "test"
    assert resource["service.namespace"] == "zoom"  # ... and the config adds to it
    assert resource["service.version"] == __version__
    assert re.fullmatch(r"[0-9a-f-]{36}", resource["service.instance.id"])
    headers = received.headers[-1]
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["x-tenant"] == "acme corp"
    for metric in metrics_of(request):
        data = getattr(metric, metric.WhichOneof("data") or "gauge")
        for point in data.data_points:
            assert point.time_unix_nano > 0
            if metric.WhichOneof("data") != "gauge":
                assert 0 < point.start_time_unix_nano <= point.time_unix_nano
                assert data.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


UNCONFIGURED_FAMILY_PREFIXES = (
    "zoom_qss_websocket_",
    "zoom_qss_api_",
    "zoom_qss_oauth_",
    "zoom_qss_poll_",
    "zoom_qss_leader",  # one series per pulled source: none without a poller or a WebSocket
    "zoom_qss_state_shared_up",  # only with state.backend: redis
)


async def test_names_translate_to_exactly_the_metrics_families(
    grpc_receiver: GrpcReceiver, received: Received, start_agent: AgentFactory
) -> None:
    logs = {"enabled": True, "participant_id": "omit"}  # so that every family has a series
    running = await start_agent(labels=ALL_LABELS, otlp=otlp(grpc_receiver, logs=logs))
    await feed(running)
    request, _ = await exported_now(running, received)
    exported = {(prometheus_name(m.name, m.unit, kind_of(m)), kind_of(m)) for m in metrics_of(request)}
    exposed = {(family.name, family.type) for family in running.agent.store.families()}
    # Families whose series exist only for accounts with a feature this agent does not configure (a
    # WebSocket subscription): nothing to export, but their names must translate back all the same.
    empty = {(family.name, family.type) for family in running.agent.store.stored_families() if not len(family)}
    assert all(name.startswith(UNCONFIGURED_FAMILY_PREFIXES) for name, _ in empty), empty
    assert exported == exposed - empty
    for name, kind in empty:
        assert prometheus_name(*OTLP_NAMES[name], kind) == name
    for metric in metrics_of(request):
        assert metric.name.startswith(("zoom.qss.", "process.", "python."))
        assert metric.description  # HELP text travels too
    # The documented table is the code's table, and both cover every family.
    assert documented_names() == OTLP_NAMES
    assert {name for name, _ in exposed} == set(OTLP_NAMES)
    unexported = {OTLP_NAMES[name] for name, _ in empty}
    assert set(OTLP_NAMES.values()) == {(m.name, m.unit) for m in metrics_of(request)} | unexported


def documented_names() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    row = re.compile(
        r"^\| `((?:zoom_qss|process|python)_[a-z_]+)` \| `((?:zoom\.qss|process|python)\.[a-z_.]+)` \| `([^`]*)` \|"
    )
    for line in DOC.read_text().splitlines():
        if match := row.match(line):
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        ("http.server.request.duration", "s", "histogram", "http_server_request_duration_seconds"),
        ("zoom.qss.media.bitrate", "By/s", "histogram", "zoom_qss_media_bitrate_bytes_per_second"),
        ("zoom.qss.media.frames", "{frame}/s", "histogram", "zoom_qss_media_frames_per_second"),
        ("system.cpu.utilization", "1", "gauge", "system_cpu_utilization_ratio"),
        ("zoom.qss.cpu.usage_ratio", "1", "histogram", "zoom_qss_cpu_usage_ratio"),
        ("requests.total.count", "{request}", "counter", "requests_count_total"),
        ("latency.seconds", "s", "gauge", "latency_seconds"),
        ("memory", "MiBy", "gauge", "memory_mebibytes"),
    ],
)
def test_prometheus_translation_rules(name: str, unit: str, kind: Any, expected: str) -> None:
    assert prometheus_name(name, unit, kind) == expected


async def _eventually(predicate: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll an observable condition of the agent (its /metrics) until it holds, bounded."""
    async with asyncio.timeout(within):
        while not await predicate():  # noqa: ASYNC110 - /metrics is the observable here; no event to await
            await asyncio.sleep(0.02)


async def test_collector_down_then_back_costs_nothing_and_loses_nothing(
    receiver: Receiver, received: Received, start_agent: AgentFactory
) -> None:
    running = await start_agent(otlp=otlp(receiver, interval_seconds=0.1, timeout_seconds=0.5))
    await feed(running)

    async def accepted() -> float:
        return total(await running.scrape(), "zoom_qss_otlp_exports_total", outcome="ok")

    await _eventually(lambda: _at_least(accepted, 1))

    receiver.stop()
    tracemalloc.start()
    try:
        latencies: list[float] = []
        downtime_exports: list[float] = []

        exporter = running.agent.otlp
        assert exporter is not None

        async def failed() -> float:
            # The counter behind /metrics, read in place: under tracemalloc a scrape and its parsing took
            # ~1 s of the event loop each, during which no export could start, so waiting for five failed
            # exports by scraping took up to 10 s under load. The scrape below checks the same counter.
            return exporter.self_metrics.exports.value(("metrics", "failed"))

        async def post_during_downtime(count: int) -> None:
            for index in range(count):
                body = copy.deepcopy(load_sample("meeting.participant_qos"))
                body["event_ts"] = now_ms()
                body["payload"]["object"]["participant"]["user_id"] = f"down-{len(latencies)}-{index}"
                started = time.perf_counter()
                assert (await running.post(body)).status_code == 200
                latencies.append(time.perf_counter() - started)

        start_failed = await failed()
        await post_during_downtime(10)
        await _eventually(lambda: _at_least(failed, start_failed + 3))
        memory_early = await _settled_otlp_memory()
        downtime_exports.append(await failed())
        await post_during_downtime(10)
        await _eventually(lambda: _at_least(failed, downtime_exports[0] + 5))
        memory_late = await _settled_otlp_memory()
    finally:
        tracemalloc.stop()
    # Failed exports queue nothing: what the exporter holds does not grow with the outage.
    assert memory_late - memory_early < 256 * 1024, (memory_early, memory_late)
    assert max(latencies) < 1.0, latencies  # webhooks kept being answered (typically within milliseconds)
    scraped = await running.scrape()
    assert total(scraped, "zoom_qss_otlp_exports_total", outcome="ok") >= 1
    assert total(scraped, "zoom_qss_otlp_exports_total", outcome="failed") >= downtime_exports[0] + 5
    last_success = total(scraped, "zoom_qss_otlp_last_success_timestamp_seconds")

    receiver.start()  # the same port
    # The first export after recovery carries every event, including those of the outage.
    metrics_total = total(scraped, "zoom_qss_media_records_total")
    await received.wait_until(
        lambda: total(as_prometheus(received.metrics[-1]), "zoom_qss_media_records_total") == metrics_total
    )

    async def succeeded_again() -> bool:
        return total(await running.scrape(), "zoom_qss_otlp_last_success_timestamp_seconds") > last_success

    await _eventually(succeeded_again)
    after = await running.scrape()
    pushed = as_prometheus(received.metrics[-1])
    assert _without_self(pushed) == _without_self(normalise(after))


async def _at_least(value: Callable[[], Awaitable[float]], minimum: float) -> bool:
    return await value() >= minimum


async def _settled_otlp_memory() -> int:
    """The least of a few readings: an export in flight on the worker thread allocates transiently."""
    readings = []
    for _ in range(8):
        readings.append(_otlp_memory())
        await asyncio.sleep(0.03)
    return min(readings)


def _otlp_memory() -> int:
    """Bytes currently allocated by the OTLP code paths (ours, the SDK's, gRPC's Python side)."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [
            tracemalloc.Filter(True, "*qss_exporter/outputs/otlp*"),
            tracemalloc.Filter(True, "*opentelemetry/*"),
            tracemalloc.Filter(True, "*grpc/*"),
            tracemalloc.Filter(True, "*requests/*"),
            tracemalloc.Filter(True, "*urllib3/*"),
        ]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


def _without_self(samples: Series) -> Series:
    return {key: value for key, value in samples.items() if not SELF.match(key[0]) and not RUNTIME.match(key[0])}


def _steady(samples: Series) -> Series:
    """Everything but the process and GC families, whose values change between any two readings."""
    return {key: value for key, value in samples.items() if not RUNTIME.match(key[0])}


def _runtime_keys(samples: Series) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    return {key for key in samples if RUNTIME.match(key[0])}


async def test_delta_temporality_adds_up_to_the_totals_across_a_failed_export(
    received: Received, start_agent: AgentFactory
) -> None:
    server = GrpcReceiver(received)
    server.start()
    try:
        running = await start_agent(otlp=otlp(server, temporality="delta", timeout_seconds=0.5))
        exporter = running.agent.otlp
        assert exporter is not None
        await feed(running)
        assert await exporter.export()
        server.stop()
        body = copy.deepcopy(load_sample("meeting.participant_qos"))
        body["event_ts"] = now_ms()
        body["payload"]["object"]["participant"]["user_id"] = "while-down"
        assert (await running.post(body)).status_code == 200
        assert not await exporter.export()  # this delta is not lost: the next one covers it
        server.start()
        assert await exporter.export()
        assert await exporter.export()  # nothing changed in the store's QoS families: no QoS points
    finally:
        server.stop()
    scraped = await running.scrape()
    sums = _delta_sums(received.metrics)
    for name in ("zoom_qss_media_records_total", "zoom_qss_media_latency_seconds_count", "zoom_qss_events_total"):
        assert sums.get(name) == total(scraped, name), name
    assert sums["zoom_qss_media_latency_seconds_sum"] == pytest.approx(
        total(scraped, "zoom_qss_media_latency_seconds_sum")
    )
    last = {m.name for m in metrics_of(received.metrics[-1]) if m.WhichOneof("data") != "gauge" and _points(m)}
    assert "zoom.qss.media.records" not in last


def _points(metric: Any) -> list[Any]:
    return list(getattr(metric, metric.WhichOneof("data") or "gauge").data_points)


def _delta_sums(requests: list[ExportMetricsServiceRequest]) -> dict[str, float]:
    """Per Prometheus name, everything the delta points of all requests add up to."""
    sums: dict[str, float] = {}
    for request in requests:
        for metric in metrics_of(request):
            kind = kind_of(metric)
            name = prometheus_name(metric.name, metric.unit, kind)
            if kind == "counter":
                assert metric.sum.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
                sums[name] = sums.get(name, 0) + sum(p.as_double for p in metric.sum.data_points)
            elif kind == "histogram":
                assert metric.histogram.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
                sums[f"{name}_count"] = sums.get(f"{name}_count", 0) + sum(
                    p.count for p in metric.histogram.data_points
                )
                sums[f"{name}_sum"] = sums.get(f"{name}_sum", 0) + sum(p.sum for p in metric.histogram.data_points)
    return sums


async def test_shutdown_flushes_once(received: Received, start_agent: AgentFactory) -> None:
    server = HttpReceiver(received)
    server.start()
    try:
        running = await start_agent(otlp=otlp(server))
        await feed(running)
        scraped = await running.scrape()
        running.agent.stop()
        assert running.task is not None
        await asyncio.wait_for(running.task, 15)
    finally:
        server.stop()
    assert len(received.metrics) == 1
    assert _without_self(as_prometheus(received.metrics[0])) == _without_self(normalise(scraped))


# ------------------------------------------------------------------------------------------- logs

HASH_KEY = "participant-hash-key"
PERSONAL_KEYS = {"email", "user_email", "user_name", "name", "pc_name", "mac_addr", "ip_address", "location"}


def _personal(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {v for k, v in value.items() if k in PERSONAL_KEYS and isinstance(v, str) and v}
        return found.union(*(_personal(inner) for inner in value.values()))
    if isinstance(value, list):
        return set().union(*(_personal(inner) for inner in value))
    return set()


def log_records(received: Received) -> list[Any]:
    return [
        record
        for request in received.logs
        for resource_logs in request.resource_logs
        for scope_logs in resource_logs.scope_logs
        for record in scope_logs.log_records
    ]


async def test_one_log_record_per_qos_record_with_hashed_participant_and_no_personal_data(
    receiver: Receiver, received: Received, start_agent: AgentFactory
) -> None:
    logs = {"enabled": True, "participant_id_hash_key": HASH_KEY}
    running = await start_agent(labels=ALL_LABELS, otlp=otlp(receiver, logs=logs))
    data = load_sample("meeting.participant_data")  # 10.20.4.117 on Wi-Fi: site leeds
    assert (await running.post(data)).status_code == 200
    qos = copy.deepcopy(load_sample("meeting.participant_qos"))
    qos["event_ts"] = now_ms()
    person = qos["payload"]["object"]["participant"]
    person["user_id"] = data["payload"]["object"]["participant"]["participant_id"]
    person["qos"][0]["details"]["latency"] = "134 ms"
    assert (await running.post(qos)).status_code == 200
    assert (await running.post(load_sample("phone.call_qos"))).status_code == 200  # phone: no log record

    exporter = running.agent.otlp_logs
    assert exporter is not None
    assert await exporter.export()
    await received.wait_until(lambda: bool(received.logs))
    (record,) = log_records(received)
    attrs = attributes(record.attributes)
    digest = hmac.new(HASH_KEY.encode(), person["user_id"].encode(), hashlib.sha256).hexdigest()
    assert attrs["zoom.participant.id_hmac"] == digest
    assert "zoom.participant.id" not in attrs
    assert attrs["zoom.account"] == "acme"
    assert attrs["zoom.product"] == "meeting"
    assert attrs["zoom.meeting.uuid"] == qos["payload"]["object"]["uuid"]
    assert (attrs["zoom.site"], attrs["zoom.network_type"]) == ("leeds", "wifi")
    assert {"zoom.data_center", "zoom.client_os", "zoom.client_version"} <= set(attrs)
    assert attrs["zoom.stream.audio.input.client.latency_seconds"] == pytest.approx(0.134)
    assert attrs["zoom.stream.audio.input.client.bitrate_bytes_per_second"] == 41 * 125
    assert attrs["zoom.quality.audio"] == "good"
    assert record.event_name == "zoom.qss.participant_qos"
    assert record.time_unix_nano == qos["event_ts"] * 1_000_000
    assert record.body.string_value.startswith("meeting participant QoS")
    assert resource_attributes(received.logs[0])["service.name"] == "qss-exporter"

    wire = b"".join(request.SerializeToString() for request in received.logs)
    personal = _personal(qos) | _personal(data)
    assert person["email"] in personal  # the samples do carry personal data
    assert [value for value in personal if value.encode() in wire] == []
    assert person["user_id"].encode() not in wire
    assert not re.search(rb"\d+\.\d+\.\d+\.\d+", wire)  # no IPv4 address
    scraped = await running.scrape()
    assert total(scraped, "zoom_qss_otlp_exports_total", signal="logs", outcome="ok") == 1


async def test_plain_participant_ids_only_by_opt_in_and_a_full_queue_is_counted(
    grpc_receiver: GrpcReceiver, received: Received, start_agent: AgentFactory
) -> None:
    logs = {"enabled": True, "participant_id": "plain", "max_queue": 100}
    running = await start_agent(otlp=otlp(grpc_receiver, logs=logs))
    for index in range(103):
        body = copy.deepcopy(load_sample("meeting.participant_qos"))
        body["event_ts"] = now_ms()
        body["payload"]["object"]["participant"]["user_id"] = f"person-{index}"
        assert (await running.post(body)).status_code == 200
    assert total(await running.scrape(), "zoom_qss_otlp_log_records_dropped_total") == 3
    exporter = running.agent.otlp_logs
    assert exporter is not None
    assert await exporter.export()
    await received.wait_until(lambda: len(log_records(received)) == 100)
    ids = [attributes(record.attributes)["zoom.participant.id"] for record in log_records(received)]
    assert ids == [f"person-{index}" for index in range(100)]
    assert len(exporter) == 0


def test_logs_config_needs_a_hash_key_unless_ids_are_plain_or_omitted() -> None:
    base = base_config() | {"otlp": {"enabled": True, "logs": {"enabled": True}}}
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(base)
    assert caught.value.problems == [
        "otlp.logs.participant_id_hash_key: missing (hashed participant ids need a key; or set participant_id: omit)"
    ]
    for participant_id in ("plain", "omit"):
        merged = merge(base, {"otlp": {"logs": {"participant_id": participant_id}}})
        assert config_from_mapping(merged).otlp.logs.participant_id == participant_id


async def test_exponential_histograms_on_request_hold_exactly_the_observations_of_metrics(
    grpc_receiver: GrpcReceiver, received: Received, start_agent: AgentFactory
) -> None:
    running = await start_agent(otlp=otlp(grpc_receiver, histograms="exponential", exponential_scale=4))
    await feed(running)
    request, scraped = await exported_now(running, received)
    base = 2.0 ** (2.0**-4)
    histograms = 0
    for metric in metrics_of(request):
        assert metric.WhichOneof("data") != "histogram", metric.name  # every histogram is exponential now
        if metric.WhichOneof("data") != "exponential_histogram":
            continue
        name = prometheus_name(metric.name, metric.unit, "histogram")
        for point in metric.exponential_histogram.data_points:
            histograms += 1
            labels = attributes(point.attributes)
            assert point.scale == 4
            assert point.count == total(scraped, f"{name}_count", **labels)
            assert point.sum == pytest.approx(total(scraped, f"{name}_sum", **labels))
            assert (
                point.zero_count + sum(point.positive.bucket_counts) + sum(point.negative.bucket_counts) == point.count
            )
    assert histograms > 50
    # One known observation: the sample's 38 ms audio-input latency lies inside its bucket's bounds.
    latency = next(m for m in metrics_of(request) if m.name == "zoom.qss.media.latency")
    point = next(
        p
        for p in latency.exponential_histogram.data_points
        if attributes(p.attributes)["direction"] == "input" and p.count == 1 and p.sum == pytest.approx(0.038)
    )
    index = point.positive.offset + list(point.positive.bucket_counts).index(1)
    assert base**index < 0.038 <= base ** (index + 1)
    assert running.agent.config.otlp.exponential_scale == 4


async def test_log_records_reach_the_collector_while_the_agent_keeps_running(
    grpc_receiver: GrpcReceiver, received: Received, tmp_path: Path
) -> None:
    """Issue 12: the periodic log export never started (the empty log queue is falsy), so records left
    only in the final flush at shutdown. Here they must arrive while the agent process keeps running."""
    config = base_config() | {
        "otlp": otlp(grpc_receiver, interval_seconds=0.5, logs={"enabled": True, "participant_id": "omit"})
    }
    agent = await asyncio.to_thread(AgentProcess, tmp_path, config)
    try:
        for index in range(5):
            body = copy.deepcopy(load_sample("meeting.participant_qos"))
            body["event_ts"] = now_ms()
            body["payload"]["object"]["participant"]["user_id"] = f"person-{index}"
            raw = json.dumps(body).encode()
            assert (await asyncio.to_thread(agent.post_signed, raw, SECRET)).status_code == 200
        await received.wait_until(lambda: len(log_records(received)) == 5, within=10)
        assert agent.process.poll() is None  # still running: no shutdown flush was involved
        scraped = parse_metrics(await asyncio.to_thread(agent.scrape_text))
        assert total(scraped, "zoom_qss_otlp_exports_total", signal="logs", outcome="ok") >= 1
        assert total(scraped, "zoom_qss_otlp_log_records_dropped_total") == 0
    finally:
        await asyncio.to_thread(agent.kill)
