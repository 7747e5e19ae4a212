"""Real OTLP receivers on loopback (gRPC MetricsService + LogsService, HTTP/protobuf) for the tests,
and the OTLP -> Prometheus translation a Prometheus server or a Collector applies to what they get.

The translation follows prometheus/otlptranslator's `UnderscoreEscapingWithSuffixes` (Prometheus's
default for its OTLP receiver; the Collector's `prometheus` exporters use the same rules): it is
written here from those rules, not taken from the exporter, so the parity test checks one against
the other.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import re
import ssl
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import grpc  # type: ignore[import-untyped]  # grpcio ships no type hints
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric

from tests.conftest import Series

Kind = Literal["counter", "gauge", "histogram"]

# ------------------------------------------------------------------------------------- receivers


@dataclass
class Received:
    """What a receiver got (filled from its threads), with an asyncio wake-up for waiting tests."""

    loop: asyncio.AbstractEventLoop
    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)
    logs: list[ExportLogsServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    # Answers to give instead of accepting, one per request in order: an HTTP status or a gRPC status code,
    # with response headers (HTTP) or trailing metadata (gRPC). `attempts` counts every request.
    failures: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    attempts: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: Any, extra: dict[str, Any] | None = None, times: int = 1) -> None:
        """Answer the next `times` requests with `status` (an HTTP status or a grpc.StatusCode)."""
        with self._lock:
            self.failures += [(status, extra or {})] * times

    def _failure(self) -> tuple[Any, dict[str, Any]] | None:
        with self._lock:
            self.attempts += 1
            return self.failures.pop(0) if self.failures else None

    def add(self, request: ExportMetricsServiceRequest | ExportLogsServiceRequest, headers: dict[str, str]) -> None:
        with self._lock:
            if isinstance(request, ExportMetricsServiceRequest):
                self.metrics.append(request)
            else:
                self.logs.append(request)
            self.headers.append(headers)
        self.loop.call_soon_threadsafe(self._changed.set)

    async def wait_until(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait (bounded) until `predicate()` holds; it is re-checked whenever a request arrives."""
        async with asyncio.timeout(within):
            while True:
                self._changed.clear()
                if predicate():
                    return
                await self._changed.wait()

    async def next_metrics(self, within: float = 10.0) -> ExportMetricsServiceRequest:
        """The first metrics request that arrives after this call."""
        seen = len(self.metrics)
        await self.wait_until(lambda: len(self.metrics) > seen, within)
        return self.metrics[seen]


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: ExportMetricsServiceRequest, context: Any) -> ExportMetricsServiceResponse:
        failure = self.received._failure()
        if failure is not None:
            code, trailers = failure
            context.set_trailing_metadata(tuple(trailers.items()))
            context.abort(code, "failing as the test asked")
        self.received.add(request, dict(context.invocation_metadata()))
        return ExportMetricsServiceResponse()


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: ExportLogsServiceRequest, context: Any) -> ExportLogsServiceResponse:
        self.received.add(request, dict(context.invocation_metadata()))
        return ExportLogsServiceResponse()


class GrpcReceiver:
    """An OTLP/gRPC receiver (metrics and logs) on 127.0.0.1; `stop` and `start` again on the same port.

    With `credentials` (grpc.ssl_server_credentials) it speaks TLS, on the name `localhost`.
    """

    def __init__(self, received: Received, credentials: Any = None) -> None:
        self.received = received
        self.credentials = credentials
        self.port = 0
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        return f"https://localhost:{self.port}" if self.credentials else f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = grpc.server(ThreadPoolExecutor(max_workers=4))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(  # type: ignore[no-untyped-call]  # generated
            _MetricsServicer(self.received), server
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(  # type: ignore[no-untyped-call]  # generated
            _LogsServicer(self.received), server
        )
        if self.credentials is not None:
            self.port = server.add_secure_port(f"127.0.0.1:{self.port}", self.credentials)
        else:
            self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None


class HttpReceiver:
    """An OTLP/HTTP receiver (`/v1/metrics`, `/v1/logs`, protobuf, gzip or deflate) on 127.0.0.1.

    With `tls` (a server-side ssl.SSLContext) it speaks HTTPS, on the name `localhost`.
    """

    def __init__(self, received: Received, tls: ssl.SSLContext | None = None) -> None:
        self.received = received
        self.tls = tls
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.statuses: list[int] = []

    @property
    def endpoint(self) -> str:
        return f"https://localhost:{self.port}" if self.tls else f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                encoding = self.headers.get("content-encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                headers = {key.lower(): value for key, value in self.headers.items()}
                failure = received._failure()
                if failure is not None:
                    status, extra = failure
                    self.send_response(status)
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                response: ExportMetricsServiceResponse | ExportLogsServiceResponse
                if self.path == "/v1/metrics" and headers.get("content-type") == "application/x-protobuf":
                    received.add(ExportMetricsServiceRequest.FromString(body), headers)
                    response = ExportMetricsServiceResponse()
                elif self.path == "/v1/logs" and headers.get("content-type") == "application/x-protobuf":
                    received.add(ExportLogsServiceRequest.FromString(body), headers)
                    response = ExportLogsServiceResponse()
                else:
                    self.send_error(404)
                    return
                payload = response.SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-http-receiver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


# ------------------------------------------------------------------------------------ translation

_UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}
_INVALID = re.compile(r"[^a-zA-Z0-9:]")


def _clean_unit(unit: str) -> str:
    return re.sub(r"__+", "_", _INVALID.sub("_", unit)).removeprefix("_")


def prometheus_name(name: str, unit: str, kind: Kind) -> str:
    """The Prometheus family name of an OTLP metric (UnderscoreEscapingWithSuffixes)."""
    tokens = [token for token in _INVALID.split(name) if token]
    main, slash, per = unit.partition("/")
    main, per = main.strip(), per.strip()
    main_suffix = _UNITS.get(main, main) if main and not re.search(r"[{}]", main) else ""
    per_suffix = "per_" + _PER_UNITS.get(per, per) if slash and per and not re.search(r"[{}]", per) else ""
    main_suffix, per_suffix = _clean_unit(main_suffix), _clean_unit(per_suffix)
    if main_suffix in tokens:
        main_suffix = ""
    per_suffix = "" if per_suffix == "per_" else per_suffix.removesuffix("_")
    if per_suffix in tokens:
        per_suffix = ""
    if per_suffix:
        main_suffix = main_suffix.removesuffix("_")
    tokens += [suffix for suffix in (main_suffix, per_suffix) if suffix]
    if kind == "counter":
        tokens = [token for token in tokens if token != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        tokens = [token for token in tokens if token != "ratio"] + ["ratio"]
    return "_".join(tokens)


def kind_of(metric: Metric) -> Kind:
    data = metric.WhichOneof("data")
    if data == "sum":
        return "counter" if metric.sum.is_monotonic else "gauge"
    if data in ("histogram", "exponential_histogram"):
        return "histogram"
    assert data == "gauge", f"{metric.name}: unexpected OTLP data {data}"
    return "gauge"


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value") or "string_value")


def attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


def metrics_of(request: ExportMetricsServiceRequest) -> Iterator[Metric]:
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            yield from scope_metrics.metrics


def le(bound: float | str) -> str:
    """A canonical `le` label value, so that "1", "1.0" and 1.0 compare equal."""
    value = float(bound)
    return "+Inf" if math.isinf(value) else repr(value)


def normalise(samples: Series) -> Series:
    """/metrics samples with canonical `le` values."""
    result: Series = {}
    for (name, labels), value in samples.items():
        fixed = frozenset((key, le(label) if key == "le" else label) for key, label in labels)
        result[(name, fixed)] = value
    return result


def as_prometheus(request: ExportMetricsServiceRequest) -> Series:
    """The samples a Prometheus OTLP receiver stores for one request (cumulative points only)."""
    samples: Series = {}
    for metric in metrics_of(request):
        kind = kind_of(metric)
        name = prometheus_name(metric.name, metric.unit, kind)
        if kind == "histogram":
            assert metric.histogram.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
            for hist in metric.histogram.data_points:
                labels = attributes(hist.attributes)
                running = 0
                for bound, count in zip([*hist.explicit_bounds, math.inf], hist.bucket_counts, strict=True):
                    running += count
                    samples[(f"{name}_bucket", frozenset({**labels, "le": le(bound)}.items()))] = running
                assert running == hist.count
                samples[(f"{name}_sum", frozenset(labels.items()))] = hist.sum
                samples[(f"{name}_count", frozenset(labels.items()))] = hist.count
            continue
        points = metric.sum.data_points if metric.WhichOneof("data") == "sum" else metric.gauge.data_points
        for point in points:
            value = point.as_double if point.WhichOneof("value") == "as_double" else point.as_int
            samples[(name, frozenset(attributes(point.attributes).items()))] = value
    return samples


def resource_attributes(request: ExportMetricsServiceRequest | ExportLogsServiceRequest) -> dict[str, Any]:
    resources = [item.resource for item in getattr(request, "resource_metrics", None) or request.resource_logs]
    assert len(resources) == 1
    return attributes(resources[0].attributes)


__all__ = [
    "GrpcReceiver",
    "HttpReceiver",
    "Received",
    "as_prometheus",
    "kind_of",
    "metrics_of",
    "normalise",
    "prometheus_name",
    "resource_attributes",
]
