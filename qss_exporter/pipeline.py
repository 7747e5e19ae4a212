"""Typed records -> metric store: dedupe, enrichment joins, activity, and the recording itself.

Every source calls `Pipeline.ingest` with the records it decoded; nothing here knows how a record
arrived except the `source` name used for self-metrics. Runs synchronously on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from qss_exporter.activity import ActivityTracker
from qss_exporter.catalogue import Catalogue
from qss_exporter.dedupe import DedupeWindow
from qss_exporter.enrichment import ParticipantDirectory
from qss_exporter.store import Sample, Store
from qss_exporter.zoom.records import ParticipantInfo, PhoneQosRecord, QosRecord, Record, SummaryRecord

__all__ = ["Pipeline"]


class Pipeline:
    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        directory: ParticipantDirectory,
        dedupe: DedupeWindow,
        activity_window: float,
        account_names: Mapping[str, str],
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._m = catalogue
        self._directory = directory
        self._dedupe = dedupe
        self._account_names = dict(account_names)
        self._clock = clock
        self.participants = ActivityTracker(activity_window)
        self.calls = ActivityTracker(activity_window)
        enrichment = directory.labels
        store.callback(
            "zoom_qss_active_participants",
            "Participants with a QoS record within the activity window and no leave since.",
            ("account", "product", *enrichment),
            lambda: self.participants.count_by_labels(self._clock()),
        )
        store.callback(
            "zoom_qss_active_meetings",
            "Meetings, webinars and Video SDK sessions with at least one active participant.",
            ("account", "product"),
            lambda: self.participants.count_distinct(self._clock(), width=3, label_width=2),
        )
        store.callback(
            "zoom_qss_phone_active_calls",
            "Zoom Phone calls with a QoS sample within the activity window and not ended.",
            ("account",),
            lambda: self.calls.count_distinct(self._clock(), width=2, label_width=1),
        )
        store.callback(
            "zoom_qss_dedupe_keys",
            "Event keys remembered for deduplication.",
            (),
            lambda: [Sample((), float(len(dedupe)))],
        )
        store.callback(
            "zoom_qss_dedupe_evicted_total",
            "Dedupe keys dropped before their window ended because dedupe_max_entries was reached.",
            (),
            lambda: [Sample((), float(dedupe.evicted))],
            type="counter",
        )
        store.callback(
            "zoom_qss_enrichment_participants",
            "Participants whose *_data enrichment is held.",
            (),
            lambda: [Sample((), float(len(directory)))],
        )

    def account_label(self, account_id: str) -> str:
        return self._account_names.get(account_id, account_id)

    def ingest(self, record: Record, source: str) -> bool:
        """Record one event; False when it was a duplicate and changed nothing."""
        now = self._store.now = self._clock()
        if self._dedupe.seen(record.dedupe_key, now):
            return False
        m = self._m
        m.events.inc((source, record.event))
        if record.event_time is not None:
            m.event_lag.observe((source,), max(0.0, now - record.event_time))
        if isinstance(record, QosRecord):
            self._qos(record, now)
        elif isinstance(record, SummaryRecord):
            self._summary(record, source, now)
        elif isinstance(record, ParticipantInfo):
            self._participant_info(record, now)
        else:
            self._phone(record, now)
        for field in getattr(record, "parse_errors", ()):
            m.parse_errors.inc((field,))
        return True

    def count_parse_error(self, field: str) -> None:
        """An event rejected whole because `field` was missing or invalid."""
        self._m.parse_errors.inc((field,))

    def _qos(self, record: QosRecord, now: float) -> None:
        m = self._m
        account = self.account_label(record.account_id)
        product = record.product
        extra = self._directory.lookup(record.account_id, record.instance, record.participant_id)
        for stream in record.streams:
            labels = (account, product, stream.media, stream.direction, stream.path, *extra)
            if stream.latency is not None:
                m.media_latency.observe(labels, stream.latency)
            if stream.jitter is not None:
                m.media_jitter.observe(labels, stream.jitter)
            if stream.avg_loss is not None:
                m.media_loss.observe(labels, stream.avg_loss)
            if stream.max_loss is not None:
                m.media_max_loss.observe(labels, stream.max_loss)
            if stream.bitrate is not None:
                m.media_bitrate.observe(labels, stream.bitrate)
            if stream.frame_rate is not None:
                m.media_frame_rate.observe(labels, stream.frame_rate)
            if stream.height is not None:
                m.media_height.observe(labels, stream.height)
            m.media_records.inc(labels)
        for grade in record.grades:
            if grade.quality is not None:
                m.quality_records.inc((account, product, grade.media, grade.quality, *extra))
            if grade.score is not None:
                m.quality_score.observe((account, product, grade.media, *extra), grade.score)
        cpu = record.cpu
        if cpu is not None:
            for measure, value in (
                ("zoom_avg", cpu.zoom_avg),
                ("zoom_max", cpu.zoom_max),
                ("system_max", cpu.system_max),
            ):
                if value is not None:
                    m.cpu_usage.observe((account, product, measure, *extra), value)
        if record.rssi_dbm is not None:
            m.wifi_rssi.observe((account, product, *extra), record.rssi_dbm)
        for note in record.notifications:
            m.network_notifications.inc((account, product, note, *extra))
        at = min(record.event_time, now) if record.event_time is not None else now
        self.participants.touch(
            (account, product, record.instance, record.participant_id), at, (account, product, *extra)
        )

    def _summary(self, record: SummaryRecord, source: str, now: float) -> None:
        m = self._m
        account = self.account_label(record.account_id)
        product = record.product
        extra = self._directory.lookup(record.account_id, record.instance, record.participant_id)
        m.participant_sessions.inc((account, product, source))
        histograms = m.summary
        for stream in record.streams:
            base = (account, product, stream.media, stream.direction, stream.path)
            for stat, latency, jitter, loss, bitrate in (
                ("avg", stream.avg_latency, stream.avg_jitter, stream.avg_loss, stream.avg_bitrate),
                ("max", stream.max_latency, stream.max_jitter, stream.max_loss, stream.max_bitrate),
            ):
                labels = (*base, stat, *extra)
                for family, value in (
                    (histograms.latency, latency),
                    (histograms.jitter, jitter),
                    (histograms.loss, loss),
                    (histograms.bitrate, bitrate),
                ):
                    if value is not None:
                        family.observe(labels, value)
        for grade in record.grades:
            if grade.quality is not None:
                m.summary_quality.inc((account, product, grade.media, grade.quality, *extra))
        self.participants.end((account, product, record.instance, record.participant_id), now)

    def _participant_info(self, record: ParticipantInfo, now: float) -> None:
        self._directory.update(record, now)
        if record.final:
            account = self.account_label(record.account_id)
            self.participants.end((account, record.product, record.instance, record.participant_id), now)

    def _phone(self, record: PhoneQosRecord, now: float) -> None:
        m = self._m
        account = self.account_label(record.account_id)
        summary = record.event == "phone.call_qos_summary"
        for sample in record.samples:
            # A summary may repeat samples already received one by one: count each sample once.
            if summary and self._dedupe.seen(
                ("phone.call_qos", record.account_id, record.call_id, sample.leg, sample.direction, sample.sample_time),
                now,
            ):
                continue
            labels = (account, sample.leg, sample.direction)
            for family, value in (
                (m.phone_mos, sample.mos),
                (m.phone_latency, sample.latency),
                (m.phone_jitter, sample.jitter),
                (m.phone_loss, sample.avg_loss),
                (m.phone_bitrate, sample.bitrate),
            ):
                if value is not None:
                    family.observe(labels, value)
        key = (account, record.call_id)
        if summary:
            m.phone_calls.inc((account,))
        if record.ended:
            self.calls.end(key, now)
        else:
            at = min(record.event_time, now) if record.event_time is not None else now
            self.calls.touch(key, at, (account,))

    def expire(self) -> None:
        """Periodic housekeeping: stale series, participants, calls and enrichment entries."""
        now = self._clock()
        self._store.expire()
        self.participants.expire(now)
        self.calls.expire(now)
        self._directory.expire(now)
