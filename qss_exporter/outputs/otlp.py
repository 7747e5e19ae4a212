"""OTLP push of the metric store: the second output, rendered from the same store as /metrics.

Every `interval` seconds the store is encoded as protobuf on the event loop (outputs/otlp_encode.py),
in slices of at most SLICE_SECONDS between which webhooks are served, and each request of at most
2000 points is handed to one worker thread that sends it (outputs/otlp_transport.py) while the next
one is encoded. So a slow or dead collector never holds up webhook handling, and at most two
requests are in memory. One export runs at a time; a failed one is not kept: with cumulative
temporality the next export carries complete totals; with delta the next one covers everything since
what the collector last accepted. What one family becomes (cumulative), decoded:

    Metric(name="zoom.qss.media.latency", unit="s", histogram=Histogram(AGGREGATION_TEMPORALITY_CUMULATIVE,
        [HistogramDataPoint({"account": "acme", "product": "meeting", ...}, start, now, count=3,
                            sum=0.41, bucket_counts=[0, 0, 0, 1, 1, 1, 0, 0, 0, 0],
                            explicit_bounds=[0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2])]))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from qss_exporter import __version__
from qss_exporter.config import OtlpConfig
from qss_exporter.outputs.otlp_encode import EncodedRequest, Encoder
from qss_exporter.outputs.otlp_settings import resolve_settings
from qss_exporter.outputs.otlp_transport import Sent, Transport, build_metric_transport
from qss_exporter.redaction import redact_url
from qss_exporter.store import CounterFamily, GaugeFamily, Store

__all__ = ["SCOPE", "SLICE_SECONDS", "OtlpMetrics", "OtlpSelfMetrics", "build_otlp_metrics"]

log = logging.getLogger(__name__)

SCOPE = InstrumentationScope("qss_exporter", __version__)
# How long the encoder keeps the event loop before it lets everything that is ready run. A webhook
# spans a few loop iterations and may wait for one slice in each: with 2 ms slices the webhook p99 at
# 1,000 events/s while exporting 100k series every 10 s was 36-73 ms, with 0.5 ms 5-22 ms (two runs
# each, interleaved, on a busy 2-core machine; bench/export.py). Yielding costs one loop iteration
# (~20 us), so 100k series (~0.2 s of encoding) take ~400 slices and a few per cent more time.
SLICE_SECONDS = 0.0005


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
        transport: Transport,
        encoder: Encoder,
        self_metrics: OtlpSelfMetrics,
        interval: float,
        endpoint: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.endpoint = redact_url(endpoint)  # only ever shown in log lines
        self.transport = transport
        self.encoder = encoder
        self.self_metrics = self_metrics
        self.interval = interval
        self.clock = clock
        # One worker: sends never overlap, and a stuck one delays only the next export.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otlp-metrics")
        self._lock = asyncio.Lock()
        self._inflight: asyncio.Future[Sent] | None = None
        self._failing = False
        self.exports = 0  # attempts completed, for tests and the log
        self_metrics.start("metrics")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.export()

    async def export(self) -> bool:
        """Export the store once; True when the collector accepted every request."""
        async with self._lock:
            if self._inflight is not None and not self._inflight.done():
                # A previous attempt was cancelled while its thread kept sending: let it finish.
                await asyncio.shield(self._inflight)
            now = self.clock()
            started = time.perf_counter()
            try:
                sent = await self._stream()
            except Exception:
                # The encoder reads only the store; anything raised is a bug worth its trace, not a stop.
                log.exception("OTLP metric export raised")
                sent = Sent(False, "internal error")
            self.self_metrics.record("metrics", sent.ok, time.perf_counter() - started, now)
            self.exports += 1
            if sent.ok and self._failing:
                log.info("OTLP metric export to %s works again", self.endpoint)
            elif not sent.ok and not self._failing:
                log.warning(
                    "OTLP metric export to %s failed (%s); the next export carries the complete totals",
                    self.endpoint,
                    sent.reason,
                )
            self._failing = not sent.ok
            return sent.ok

    async def _stream(self) -> Sent:
        """Encode request after request in slices on the loop, each sent while the next is encoded.

        After a failed request the rest of the store is not encoded: the collector is failing, and the
        next export covers it (cumulative totals, or delta since what was accepted).
        """
        loop = asyncio.get_running_loop()
        encoding = self.encoder.encode()
        pending: tuple[EncodedRequest, asyncio.Future[Sent]] | None = None
        sent = Sent(True)
        slice_ends = time.perf_counter() + SLICE_SECONDS
        try:
            for request in encoding:
                if request is None:  # a pause point
                    if time.perf_counter() >= slice_ends:
                        await asyncio.sleep(0)
                        slice_ends = time.perf_counter() + SLICE_SECONDS
                    continue
                if pending is not None:
                    sent = await self._settle(*pending)
                    pending = None
                    if not sent.ok:
                        return sent
                    slice_ends = time.perf_counter() + SLICE_SECONDS
                self._inflight = loop.run_in_executor(self._executor, self._send, request.data)
                pending = (request, self._inflight)
            if pending is not None:
                sent = await self._settle(*pending)
            return sent
        finally:
            encoding.close()

    async def _settle(self, request: EncodedRequest, future: asyncio.Future[Sent]) -> Sent:
        sent = await asyncio.shield(future)
        if sent.ok:
            self.encoder.accept(request)
        return sent

    def _send(self, data: bytes) -> Sent:
        """Worker thread: one request, retried within its timeout by the transport."""
        try:
            return self.transport.send(data)
        except Exception:
            # The transport reports network and collector failures as a result; anything raised is a bug.
            log.exception("OTLP metric request raised")
            return Sent(False, "internal error")

    async def close(self, deadline: float) -> None:
        """Flush once (waiting for an export in flight first), then shut the transport down.

        Whatever is left after `deadline` seconds is abandoned: shutting the transport down ends its
        retry waits, so its worker thread finishes within one request timeout.
        """
        try:
            await asyncio.wait_for(self.export(), deadline)
        except TimeoutError:
            log.warning("OTLP final flush did not finish within %.1fs; abandoned", deadline)
        finally:
            self.transport.shutdown()
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
    encoder = Encoder(
        store, resource, SCOPE, settings.temporality, int(clock() * 1e9), clock_ns=lambda: int(clock() * 1e9)
    )
    transport = build_metric_transport(settings)
    log.info("OTLP export: %s", settings.describe())
    return OtlpMetrics(store, transport, encoder, self_metrics, settings.interval, settings.endpoint, clock)
