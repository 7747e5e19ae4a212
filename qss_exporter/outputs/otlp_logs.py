"""Optional OTLP log records, one per real-time QoS record: the drill-down that metrics must not carry.

Off by default. When on, the pipeline hands each recorded QoS record to `QosLogs.on_qos` (a bounded
append on the event loop); a background task turns queued records into the SDK's log records and
sends them with its `OTLPLogExporter` on a worker thread. Privacy follows the labels' rules: no
email, name or IP is ever in a record (the QoS records carry none); the participant id is a keyed
HMAC unless the operator opts into plain ids or none. Sample record (attributes abridged):

    event_name="zoom.qss.participant_qos" severity=WARN body="meeting participant QoS: audio poor"
    zoom.account="acme" zoom.product="meeting" zoom.meeting.uuid="4444AAAiAAAAAiAiAiiAii=="
    zoom.participant.id_hmac="9f2c..." zoom.network_type="wifi" zoom.site="leeds"
    zoom.stream.audio.input.client.latency_seconds=0.134 zoom.quality.audio="poor"
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, Protocol

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from qss_exporter import __version__
from qss_exporter.config import OtlpConfig
from qss_exporter.identity import keyed_hash
from qss_exporter.outputs.otlp import OtlpSelfMetrics
from qss_exporter.outputs.otlp_settings import build_log_exporter, resolve_settings

__all__ = ["QosLike", "QosLogs", "build_qos_logs", "log_attributes"]

log = logging.getLogger(__name__)

SCOPE = InstrumentationScope("qss_exporter", __version__)
EVENT_NAME = "zoom.qss.participant_qos"
BATCH = 1000  # log records per request


# The shape of a QoS record as this module reads it (outputs do not import the Zoom layer).
class _Stream(Protocol):
    @property
    def media(self) -> str: ...
    @property
    def direction(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def bitrate(self) -> float | None: ...
    @property
    def latency(self) -> float | None: ...
    @property
    def jitter(self) -> float | None: ...
    @property
    def avg_loss(self) -> float | None: ...
    @property
    def max_loss(self) -> float | None: ...
    @property
    def frame_rate(self) -> float | None: ...
    @property
    def height(self) -> float | None: ...


class _Grade(Protocol):
    @property
    def media(self) -> str: ...
    @property
    def quality(self) -> str | None: ...
    @property
    def score(self) -> float | None: ...


class _Cpu(Protocol):
    @property
    def zoom_avg(self) -> float | None: ...
    @property
    def zoom_max(self) -> float | None: ...
    @property
    def system_max(self) -> float | None: ...


class QosLike(Protocol):
    @property
    def product(self) -> str: ...
    @property
    def instance(self) -> str: ...
    @property
    def participant_id(self) -> str: ...
    @property
    def event_time(self) -> float | None: ...
    @property
    def streams(self) -> Sequence[_Stream]: ...
    @property
    def grades(self) -> Sequence[_Grade]: ...
    @property
    def cpu(self) -> _Cpu | None: ...
    @property
    def rssi_dbm(self) -> float | None: ...
    @property
    def notifications(self) -> Sequence[str]: ...


_STREAM_VALUES = (
    ("bitrate", "bitrate_bytes_per_second"),
    ("latency", "latency_seconds"),
    ("jitter", "jitter_seconds"),
    ("avg_loss", "packet_loss_ratio"),
    ("max_loss", "max_packet_loss_ratio"),
    ("frame_rate", "frames_per_second"),
    ("height", "frame_height_pixels"),
)
_BAD = frozenset(("poor", "bad"))

ParticipantIds = Literal["hashed", "plain", "omit"]
Attributes = dict[str, str | float | Sequence[str]]


def log_attributes(
    record: QosLike,
    account: str,
    enrichment: Mapping[str, str],
    participant_ids: ParticipantIds,
    key: bytes | None,
) -> Attributes:
    """The attributes of one QoS record's log entry (values in base units, as in /metrics)."""
    attributes: Attributes = {
        "zoom.account": account,
        "zoom.product": record.product,
        "zoom.meeting.uuid": record.instance,
    }
    if participant_ids == "plain":
        attributes["zoom.participant.id"] = record.participant_id
    elif participant_ids == "hashed" and key is not None:
        attributes["zoom.participant.id_hmac"] = keyed_hash(key, record.participant_id)
    for label, value in enrichment.items():
        attributes[f"zoom.{label}"] = value
    for stream in record.streams:
        prefix = f"zoom.stream.{stream.media}.{stream.direction}.{stream.path}."
        for field, name in _STREAM_VALUES:
            value = getattr(stream, field)
            if value is not None:
                attributes[prefix + name] = value
    for grade in record.grades:
        if grade.quality is not None:
            attributes[f"zoom.quality.{grade.media}"] = grade.quality
        if grade.score is not None:
            attributes[f"zoom.quality_score.{grade.media}"] = grade.score
    cpu = record.cpu
    if cpu is not None:
        for measure, usage in (("zoom_avg", cpu.zoom_avg), ("zoom_max", cpu.zoom_max), ("system_max", cpu.system_max)):
            if usage is not None:
                attributes[f"zoom.cpu.{measure}_ratio"] = usage
    if record.rssi_dbm is not None:
        attributes["zoom.wifi.rssi_dbm"] = record.rssi_dbm
    if record.notifications:
        attributes["zoom.notifications"] = list(record.notifications)
    return attributes


_Queued = tuple[QosLike, str, tuple[str, ...], float]


class QosLogs:
    """Bounded queue of QoS records and the background task that ships them as OTLP logs."""

    def __init__(
        self,
        exporter: LogRecordExporter,
        resource: Resource,
        enrichment_labels: Sequence[str],
        participant_ids: ParticipantIds,
        key: bytes | None,
        max_queue: int,
        self_metrics: OtlpSelfMetrics,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if participant_ids == "hashed" and not key:
            raise ValueError("hashed participant ids need a key")
        self.exporter = exporter
        self.resource = resource
        self.labels = tuple(enrichment_labels)
        self.participant_ids = participant_ids
        self._key = key
        self.max_queue = max_queue
        self.self_metrics = self_metrics
        self.interval = interval
        self.clock = clock
        self._queue: deque[_Queued] = deque()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otlp-logs")
        self._lock = asyncio.Lock()
        self._inflight: asyncio.Future[int] | None = None
        self_metrics.start("logs")
        self_metrics.log_records_dropped.inc((), 0)

    def on_qos(self, record: QosLike, account: str, enrichment: tuple[str, ...]) -> None:
        """Pipeline listener (hot path): queue the record, or count it dropped when the queue is full."""
        if len(self._queue) >= self.max_queue:
            self.self_metrics.log_records_dropped.inc(())
            return
        self._queue.append((record, account, enrichment, self.clock()))

    def __len__(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.export()

    async def export(self) -> bool:
        """Send everything queued now; True when every batch was accepted."""
        async with self._lock:
            if self._inflight is not None and not self._inflight.done():
                await asyncio.shield(self._inflight)
            if not self._queue:
                return True
            queued = list(self._queue)
            self._queue.clear()
            started = time.perf_counter()
            self._inflight = asyncio.get_running_loop().run_in_executor(self._executor, self._send, queued)
            lost = await asyncio.shield(self._inflight)
            ok = lost == 0
            self.self_metrics.record("logs", ok, time.perf_counter() - started, self.clock())
            if lost:
                self.self_metrics.log_records_dropped.inc((), lost)
                log.warning("OTLP log export failed; %d QoS log records dropped", lost)
            return ok

    def _send(self, queued: list[_Queued]) -> int:
        """Worker thread: build the SDK's log records and send them in batches; returns how many were lost."""
        lost = 0
        for start in range(0, len(queued), BATCH):
            batch = [self._log_record(*item) for item in queued[start : start + BATCH]]
            try:
                result = self.exporter.export(batch)
            except Exception:
                log.exception("OTLP log export raised")
                result = LogRecordExportResult.FAILURE
            if result is not LogRecordExportResult.SUCCESS:
                lost += len(batch)
        return lost

    def _log_record(self, record: QosLike, account: str, extra: tuple[str, ...], received: float) -> ReadableLogRecord:
        attributes = log_attributes(
            record, account, dict(zip(self.labels, extra, strict=True)), self.participant_ids, self._key
        )
        grades = [f"{grade.media} {grade.quality}" for grade in record.grades if grade.quality is not None]
        bad = any(grade.quality in _BAD for grade in record.grades)
        event_time = record.event_time if record.event_time is not None else received
        return ReadableLogRecord(
            LogRecord(
                timestamp=round(event_time * 1e6) * 1000,  # microseconds: exact for Zoom's milliseconds
                observed_timestamp=int(received * 1e9),
                severity_number=SeverityNumber.WARN if bad else SeverityNumber.INFO,
                severity_text="WARN" if bad else "INFO",
                body=f"{record.product} participant QoS" + (f": {', '.join(grades)}" if grades else ""),
                attributes=attributes,
                event_name=EVENT_NAME,
            ),
            self.resource,
            SCOPE,
        )

    async def close(self, deadline: float) -> None:
        """Send what is queued (within `deadline` seconds), then shut the exporter down."""
        try:
            await asyncio.wait_for(self.export(), deadline)
        except TimeoutError:
            log.warning("OTLP final log flush did not finish within %.1fs; abandoned", deadline)
        finally:
            self.exporter.shutdown()  # type: ignore[no-untyped-call]  # unannotated in the SDK
            self._executor.shutdown(wait=False, cancel_futures=True)


def build_qos_logs(
    config: OtlpConfig,
    enrichment_labels: Sequence[str],
    self_metrics: OtlpSelfMetrics,
    resource: Resource,
    environ: Mapping[str, str],
    clock: Callable[[], float] = time.time,
) -> QosLogs:
    settings = resolve_settings(config, environ, "logs")
    logs = config.logs
    key = logs.participant_id_hash_key.reveal().encode() if logs.participant_id_hash_key is not None else None
    log.info("OTLP export: %s (participant ids %s)", settings.describe(), logs.participant_id)
    return QosLogs(
        build_log_exporter(settings),
        resource,
        enrichment_labels,
        logs.participant_id,
        key,
        logs.max_queue,
        self_metrics,
        settings.interval,
        clock,
    )
