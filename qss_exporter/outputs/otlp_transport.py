"""Sends serialised OTLP metric requests to the collector, over HTTP/protobuf (httpx) or gRPC (grpcio).

The SDK's exporters take only their own data model, whose building was the cost this replaces
(outputs/otlp_wire.py), and have no public entry for bytes; so this module sends the bytes itself,
with the same behaviour as the SDK's `OTLPMetricExporter` (opentelemetry-python 1.45):

* headers: the configured ones, `Content-Type: application/x-protobuf` (HTTP), gRPC metadata with
  lower-case keys; compression gzip or none (`Content-Encoding: gzip`; gRPC's own gzip);
* TLS: the configured CA, else the default roots (HTTP: certifi, or SSL_CERT_FILE / SSL_CERT_DIR,
  as httpx and requests use; gRPC: its own roots), and a client certificate and key (mutual TLS);
* one deadline of `timeout` seconds per request, retries included; at most 6 attempts with
  exponential backoff (1, 2, 4 ... s, +-20 % jitter), stopping early when the next wait would pass
  the deadline or shutdown began; HTTP retries 429, 502, 503, 504 and connection errors (a connection
  error once at once, for a stale pooled connection) and honours `Retry-After`; gRPC retries
  CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS,
  honours `RetryInfo`, and opens a new channel after the first UNAVAILABLE; redirects are not followed;
* `shutdown` ends any backoff wait at once and closes the connection.

Runs on the exporter's worker thread: every call blocks until the request is settled.
"""

from __future__ import annotations

import email.utils
import gzip
import logging
import math
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlparse

import grpc  # type: ignore[import-untyped]  # grpcio ships no type hints
import httpx
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]  # no stubs installed
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]  # generated, no stubs

from qss_exporter import __version__
from qss_exporter.outputs.otlp_settings import ExportSettings, grpc_credentials, tls_files

__all__ = ["MAX_ATTEMPTS", "GrpcTransport", "HttpTransport", "Sent", "Transport", "build_metric_transport"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
JITTER = 0.2
USER_AGENT = f"qss-exporter/{__version__}"
GRPC_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
_HTTP_RETRYABLE = frozenset({429, 502, 503, 504})
_GRPC_RETRYABLE = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
# What httpx raises when the connection, not the collector, failed (requests' ConnectionError and Timeout).
_CONNECTION_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)


@dataclass(frozen=True, slots=True)
class Sent:
    """How one request ended: accepted, or why not (for the log; never a header or body)."""

    ok: bool
    reason: str = ""


class Transport(Protocol):
    def send(self, request: bytes) -> Sent: ...

    def shutdown(self) -> None: ...


STOPPED = Sent(False, "not sent: shutting down")


def _backoff(attempt: int) -> float:
    return float(2**attempt) * random.uniform(1 - JITTER, 1 + JITTER)


class _Retrying:
    """The retry loop both transports share: attempts, backoff within one deadline, shutdown."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self._shutdown = threading.Event()

    @property
    def stopped(self) -> bool:
        return self._shutdown.is_set()

    def run(self, attempt: Callable[[float, int], tuple[Sent, bool, float | None]]) -> Sent:
        """`attempt(remaining seconds, attempt number)` gives (outcome, retryable, server's wait or None)."""
        deadline = self.clock() + self.timeout
        sent = STOPPED
        for number in range(MAX_ATTEMPTS):
            if self._shutdown.is_set():
                return sent
            try:
                sent, retryable, wait = attempt(max(deadline - self.clock(), 0.0), number)
            except Exception:
                if not self._shutdown.is_set():
                    raise
                return STOPPED  # the connection was closed under the request by shutdown: expected
            if sent.ok or not retryable:
                return sent
            wait = _backoff(number) if wait is None else wait
            if number + 1 == MAX_ATTEMPTS or wait > deadline - self.clock():
                return sent
            log.debug("OTLP request failed (%s); retrying in %.2fs", sent.reason, wait)
            if self._shutdown.wait(wait):
                return sent
        return sent

    def shutdown(self) -> None:
        self._shutdown.set()


class HttpTransport:
    """OTLP/HTTP with protobuf bodies: POST to the full `/v1/metrics` URL."""

    def __init__(self, settings: ExportSettings, client: httpx.Client | None = None) -> None:
        self.endpoint = settings.endpoint
        self.gzip = settings.compression == "gzip"
        self.headers = {"content-type": "application/x-protobuf", "user-agent": USER_AGENT, **settings.headers}
        if self.gzip:
            self.headers["content-encoding"] = "gzip"
        self.client = client or httpx.Client(verify=_ssl_context(settings), follow_redirects=False)
        self.retrying = _Retrying(settings.timeout)

    def send(self, request: bytes) -> Sent:
        # gzip.compress releases the GIL while it deflates: the event loop runs meanwhile.
        body = gzip.compress(request, compresslevel=6) if self.gzip else request
        return self.retrying.run(lambda remaining, _: self._attempt(body, remaining))

    def _attempt(self, body: bytes, remaining: float) -> tuple[Sent, bool, float | None]:
        deadline = time.monotonic() + remaining
        try:
            try:
                response = self._post(body, remaining)
            except _CONNECTION_ERRORS:
                if deadline - time.monotonic() <= 0:
                    raise
                response = self._post(body, deadline - time.monotonic())  # a stale pooled connection: again at once
        except _CONNECTION_ERRORS as error:
            return Sent(False, f"{type(error).__name__}: {error}"), True, None
        except httpx.HTTPError as error:
            return Sent(False, f"{type(error).__name__}: {error}"), False, None
        status = response.status_code
        if 200 <= status < 400:
            return Sent(True), False, None
        reason = f"HTTP {status} {response.reason_phrase}".strip()
        retryable = status in _HTTP_RETRYABLE
        return Sent(False, reason), retryable, retry_after(response.headers.get("retry-after")) if retryable else None

    def _post(self, body: bytes, timeout: float) -> httpx.Response:
        return self.client.post(self.endpoint, content=body, headers=self.headers, timeout=max(timeout, 0.001))

    def shutdown(self) -> None:
        self.retrying.shutdown()
        self.client.close()


def retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date; None when absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - now(), 0.0)
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class GrpcTransport:
    """OTLP/gRPC: the MetricsService Export call, with the request's bytes passed through as they are."""

    def __init__(self, settings: ExportSettings) -> None:
        self.target = urlparse(settings.endpoint).netloc
        self.credentials = None if settings.insecure else grpc_credentials(settings, tls_files(settings))
        self.compression = grpc.Compression.Gzip if settings.compression == "gzip" else grpc.Compression.NoCompression
        self.metadata = tuple((key.lower(), value) for key, value in settings.headers.items())
        self.retrying = _Retrying(settings.timeout)
        self._lock = threading.Lock()
        self._channel, self._call = self._open()

    def _open(self) -> tuple[Any, Callable[..., bytes]]:
        options = [("grpc.primary_user_agent", USER_AGENT)]
        if self.credentials is None:
            channel = grpc.insecure_channel(self.target, options=options, compression=self.compression)
        else:
            channel = grpc.secure_channel(self.target, self.credentials, options=options, compression=self.compression)
        # No serialiser: the request is already the protobuf bytes; the response is not read.
        return channel, channel.unary_unary(GRPC_METHOD, request_serializer=None, response_deserializer=None)

    def send(self, request: bytes) -> Sent:
        return self.retrying.run(lambda remaining, number: self._attempt(request, remaining, number))

    def _attempt(self, request: bytes, remaining: float, number: int) -> tuple[Sent, bool, float | None]:
        try:
            self._call(request, metadata=self.metadata, timeout=max(remaining, 0.001))
        except grpc.RpcError as error:
            code = error.code()
            reason = f"gRPC {code.name}: {error.details()}"
            if code == grpc.StatusCode.UNAVAILABLE and number == 0:
                self._reconnect()
            return Sent(False, reason), code in _GRPC_RETRYABLE, _retry_info(error)
        return Sent(True), False, None

    def _reconnect(self) -> None:
        """A new channel after UNAVAILABLE, as the SDK does: the old one may hold a dead connection."""
        channel, call = self._open()
        with self._lock:
            if self.retrying.stopped:  # shutdown closed the channel meanwhile: none is left open
                old = channel
            else:
                old, self._channel, self._call = self._channel, channel, call
        old.close()

    def shutdown(self) -> None:
        self.retrying.shutdown()
        with self._lock:
            self._channel.close()  # cancels a call in flight


def _retry_info(error: Any) -> float | None:
    """The server's RetryInfo delay (google.rpc.retryinfo-bin trailer), if it sent one."""
    trailers = dict(error.trailing_metadata() or ())
    raw = trailers.get("google.rpc.retryinfo-bin")
    if raw is None:
        return None
    try:
        info = RetryInfo.FromString(raw)
    except DecodeError:
        return None
    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)


def _ssl_context(settings: ExportSettings) -> ssl.SSLContext:
    """The HTTP client's TLS: the configured CA or the default roots, and a client certificate if set."""
    tls_files(settings)  # every configured file is readable, or the start fails naming it
    if settings.certificate_file is not None:
        context = ssl.create_default_context(cafile=str(settings.certificate_file))
    else:
        context = httpx.create_ssl_context()
    if settings.client_certificate_file is not None:
        key = settings.client_key_file
        context.load_cert_chain(str(settings.client_certificate_file), None if key is None else str(key))
    return context


def build_metric_transport(settings: ExportSettings) -> Transport:
    """The transport for these settings; a TLS file that cannot be read fails here, naming its key."""
    if settings.protocol == "grpc":
        return GrpcTransport(settings)
    return HttpTransport(settings)
