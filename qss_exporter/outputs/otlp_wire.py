"""The Protocol Buffers wire format of OTLP metric requests, written directly as bytes.

An export of 100k series through the SDK's data model (a Python object per data point, then the
protobuf library's message objects) took 3.0 s and 97 MiB (bench/export.py); writing the bytes from
pre-encoded parts takes a tenth of that. This module owns the byte layout (points into Metric
messages into requests), and nothing else: field numbers are those of opentelemetry-proto's
`metrics/v1/metrics.proto` (stable since 1.0), and the resource and scope are encoded once by the
SDK's own public encoder (`encode_metrics`), so they are exactly what the SDK sends. Fields are
written in any order (protobuf allows it) and proto3 defaults (zero start times, flags, min/max) are
left out, as the SDK leaves them out. A request:

    ExportMetricsServiceRequest{resource_metrics: [ResourceMetrics{resource, scope_metrics: [
        ScopeMetrics{scope, metrics: [Metric{name, description, unit,
            histogram: Histogram{data_points: [HistogramDataPoint{attributes, start_time_unix_nano,
                time_unix_nano, count, sum, bucket_counts, explicit_bounds}], aggregation_temporality}}]}],
        schema_url}]}
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

__all__ = [
    "ATTRIBUTES_TAG",
    "CUMULATIVE",
    "DATA_TAG",
    "DELTA",
    "NUMBER_FIXED_BYTES",
    "Kind",
    "Request",
    "RequestBuilder",
    "RequestFrame",
    "dense_buckets",
    "key_value",
    "key_values",
    "length_delimited",
    "metric_head",
    "metric_trailer",
    "pack_doubles",
    "varint",
    "zigzag",
]

Kind = Literal["counter", "gauge", "histogram", "exponential"]
T = TypeVar("T")

# AggregationTemporality values of metrics.proto.
DELTA = 1
CUMULATIVE = 2

# Wire types: 0 varint, 1 fixed 64-bit, 2 length-delimited. A tag byte is (field number << 3) | wire type.
_VARINTS = [bytes([n]) if n < 0x80 else bytes([(n & 0x7F) | 0x80, n >> 7]) for n in range(1 << 14)]

# The data field of Metric for each kind (gauge 5, sum 7, histogram 9, exponential_histogram 10).
DATA_TAG: dict[Kind, bytes] = {"gauge": b"\x2a", "counter": b"\x3a", "histogram": b"\x4a", "exponential": b"\x52"}
# The attributes field of each data point type (NumberDataPoint 7, HistogramDataPoint 9, Exponential... 1).
ATTRIBUTES_TAG: dict[Kind, bytes] = {"gauge": b"\x3a", "counter": b"\x3a", "histogram": b"\x4a", "exponential": b"\x0a"}
# A NumberDataPoint's fixed fields: start and time (fixed64, tag 0x11 / 0x19) and as_double (0x21).
NUMBER_FIXED_BYTES = 27


def varint(value: int) -> bytes:
    """Base-128 varint of a non-negative integer (lengths, counts)."""
    if value < 1 << 14:
        return _VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def zigzag(value: int) -> int:
    """sint32/sint64 zigzag mapping (0, -1, 1, -2 ... to 0, 1, 2, 3 ...)."""
    return (value << 1) ^ (value >> 63)


def length_delimited(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + varint(len(payload)) + payload


def _text(value: str) -> bytes:
    # A label value is any string: one that is not valid Unicode (a lone surrogate) must not fail the export.
    return value.encode("utf-8", "replace")


def key_value(name: str, value: str) -> bytes:
    """One KeyValue{key, value: AnyValue{string_value}} message with its length, to follow a field tag."""
    any_value = length_delimited(b"\x0a", _text(value))
    body = length_delimited(b"\x0a", _text(name)) + length_delimited(b"\x12", any_value)
    return varint(len(body)) + body


def key_values(tag: bytes, names: Sequence[str], values: Sequence[str]) -> bytes:
    """Repeated KeyValue fields under `tag`: a series' labels as attributes."""
    return b"".join(tag + key_value(name, value) for name, value in zip(names, values, strict=True))


def metric_head(name: str, description: str, unit: str) -> bytes:
    """Metric's name (1), description (2) and unit (3), the part every chunk of a family repeats."""
    head = length_delimited(b"\x0a", _text(name))
    if description:
        head += length_delimited(b"\x12", _text(description))
    if unit:
        head += length_delimited(b"\x1a", _text(unit))
    return head


def metric_trailer(kind: Kind, temporality: int) -> bytes:
    """The data message's fields after its points: aggregation_temporality (2), is_monotonic (3) for sums."""
    if kind == "gauge":
        return b""
    if kind == "counter":
        return b"\x10" + varint(temporality) + b"\x18\x01"
    return b"\x10" + varint(temporality)


def dense_buckets(buckets: dict[int, int]) -> bytes:
    """ExponentialHistogramDataPoint.Buckets{offset (sint32), bucket_counts (packed uint64)} of a sparse map."""
    if not buckets:
        return b""
    low, high = min(buckets), max(buckets)
    get = buckets.get
    counts = b"".join([varint(get(index, 0)) for index in range(low, high + 1)])
    return b"\x08" + varint(zigzag(low)) + length_delimited(b"\x12", counts)


class RequestFrame:
    """The constant frame of every request: the resource and scope, encoded once by the SDK's encoder."""

    def __init__(self, resource: Resource, scope: InstrumentationScope) -> None:
        encoded = encode_metrics(
            MetricsData([ResourceMetrics(resource, [ScopeMetrics(scope, [], "")], resource.schema_url)])
        )
        (resource_metrics,) = encoded.resource_metrics
        (scope_metrics,) = resource_metrics.scope_metrics
        self._resource = length_delimited(b"\x0a", resource_metrics.resource.SerializeToString())
        self._scope = length_delimited(b"\x0a", scope_metrics.scope.SerializeToString())
        schema = resource_metrics.schema_url
        self._schema = length_delimited(b"\x1a", schema.encode()) if schema else b""

    def request(self, metrics: list[bytes], size: int) -> bytes:
        """An ExportMetricsServiceRequest of encoded Metric fields (`size`: their total length)."""
        scope_metrics = len(self._scope) + size
        resource_metrics = len(self._resource) + 1 + len(varint(scope_metrics)) + scope_metrics + len(self._schema)
        return b"".join(
            [
                b"\x0a",
                varint(resource_metrics),
                self._resource,
                b"\x12",
                varint(scope_metrics),
                self._scope,
                *metrics,
                self._schema,
            ]
        )


@dataclass(slots=True)
class Request(Generic[T]):
    """One serialised ExportMetricsServiceRequest, and what its acceptance commits (the encoder's state)."""

    data: bytes
    points: int
    accepted: list[T] = field(default_factory=list)


class RequestBuilder(Generic[T]):
    """Packs encoded data points into requests of at most `max_points`, splitting a family across requests."""

    def __init__(self, frame: RequestFrame, max_points: int) -> None:
        self.frame = frame
        self.max_points = max_points
        self.room = max_points
        self._metrics: list[bytes] = []  # the request's Metric fields so far ...
        self._size = 0  # ... and their length
        self._accepted: list[T] = []
        self._head = b""  # the current family's Metric name, description and unit
        self._data_tag = b""
        self._trailer = b""

    def family(self, head: bytes, kind: Kind, temporality: int) -> None:
        """The family whose points come next (`head`: its `metric_head`)."""
        self._head = head
        self._data_tag = DATA_TAG[kind]
        self._trailer = metric_trailer(kind, temporality)

    def add(self, points: list[bytes], accepted: list[T]) -> Request[T] | None:
        """Add at most `room` points of the current family; the request when it is full."""
        if not points:
            return None
        data = b"".join(points)
        body = len(data) + len(self._trailer)
        metric = self._head + self._data_tag + varint(body)
        size = len(metric) + body
        self._metrics += (b"\x12", varint(size), metric, data, self._trailer)
        self._size += 1 + len(varint(size)) + size
        self._accepted += accepted
        self.room -= len(points)
        return self.take() if self.room <= 0 else None

    def take(self) -> Request[T] | None:
        """The request built so far (None when empty); the next one starts empty."""
        points = self.max_points - self.room
        if not points:
            return None
        request = Request(self.frame.request(self._metrics, self._size), points, self._accepted)
        self._metrics, self._size, self._accepted, self.room = [], 0, [], self.max_points
        return request


def pack_doubles(values: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)
