"""Typed records -> metric store: dedupe, enrichment joins, activity, time, and the recording itself.

Every source calls `Pipeline.ingest` with the records it decoded; nothing here knows how a record
arrived except the `source` name used for self-metrics. Runs synchronously on the event loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from qss_exporter.activity import ActivityTracker
from qss_exporter.catalogue import Catalogue
from qss_exporter.dedupe import DedupeWindow, ParticipantHistory, SessionSummaries, digest
from qss_exporter.detail import DetailTracker
from qss_exporter.enrichment import ParticipantDirectory
from qss_exporter.store import CounterSeries, HistogramSeries, RefusedSeries, Sample, Store
from qss_exporter.tenancy import Tenancy
from qss_exporter.timekeeping import Content, Timekeeper
from qss_exporter.zoom.events import PARSE_ERRORS
from qss_exporter.zoom.measured import UNMEASURED_FIELDS
from qss_exporter.zoom.records import (
    DedupeKey,
    MeetingEvent,
    ParseError,
    ParticipantInfo,
    PhoneQosRecord,
    QosRecord,
    Record,
    SummaryRecord,
)
from qss_exporter.zoom.values import MALFORMED

if TYPE_CHECKING:
    from qss_exporter.persistence import Stateful
    from qss_exporter.shared_state import SharedState, Verdict

__all__ = ["SESSION_INSTANCES_MAX", "Pipeline", "QosListener", "RecordListener"]

SESSION_INSTANCES_MAX = 100_000  # Video SDK sessions whose summaries are matched across webhook and REST

QosListener = Callable[[QosRecord, str, tuple[str, ...]], None]
RecordListener = Callable[[Record, str], None]

_Histogram = HistogramSeries | RefusedSeries
_Counter = CounterSeries | RefusedSeries
_StreamSeries = tuple[
    _Histogram, _Histogram, _Histogram, _Histogram, _Histogram, _Histogram, _Histogram, _Counter, _Counter
]


class Pipeline:
    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        directory: ParticipantDirectory,
        dedupe: DedupeWindow,
        history: ParticipantHistory,
        activity_window: float,
        accounts: Tenancy,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._m = catalogue
        self._directory = directory
        self._dedupe = dedupe
        self._history = history
        # Video SDK summaries: webhook and REST share no id (zoom/summaries.py); the poller consults it too.
        self.session_summaries = SessionSummaries(dedupe.window, SESSION_INSTANCES_MAX)
        self.accounts = accounts
        self._clock = clock
        # The closed (field, reason) set exists from the start at 0, so the first error is a visible increase.
        for error in PARSE_ERRORS:
            catalogue.parse_errors.inc(error, 0)
        for field in UNMEASURED_FIELDS:
            catalogue.unmeasured.inc((field,), 0)
        # Per media-stream label set, the eight series its values go to (one dict lookup per stream
        # instead of eight): recording became ~2x faster (bench/hotpath.py).
        self._stream_cache: dict[tuple[str, ...], _StreamSeries] = {}
        self._generation = store.generation
        self.participants = ActivityTracker(activity_window)
        # Time per stream and grade from the spacing of each participant's records (issue 12): the
        # participant state it holds is pipeline state (to be persisted and shared, issue 13).
        self.time = Timekeeper(self._credit_time, activity_window)
        self._qos_listeners: list[QosListener] = []
        self._record_listeners: list[RecordListener] = []
        self.calls = ActivityTracker(activity_window)
        self.detail: DetailTracker | None = None  # detail mode, when the configuration turns it on
        self.shared: SharedState | None = None  # state.backend: redis (shared_state.py)
        self._verdict: Verdict | None = None  # what Redis said about the record being ingested
        self._digest: int | None = None  # its dedupe key's digest, when ingest_shared has it
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
            lambda: [Sample((), float(len(dedupe) + len(history)))],
            capped=False,
        )
        store.callback(
            "zoom_qss_dedupe_evicted_total",
            "Dedupe keys dropped before their window ended because dedupe_max_entries was reached.",
            (),
            lambda: [Sample((), float(dedupe.evicted + history.evicted))],
            type="counter",
            capped=False,
        )
        store.callback(
            "zoom_qss_enrichment_participants",
            "Participants whose *_data enrichment is held.",
            (),
            lambda: [Sample((), float(len(directory)))],
            capped=False,
        )

    def add_qos_listener(self, listener: QosListener) -> None:
        """Call `listener(record, account label, enrichment label values)` after each QoS record is recorded."""
        self._qos_listeners.append(listener)

    def add_record_listener(self, listener: RecordListener) -> None:
        """Call `listener(record, source)` after each record is taken in (not for duplicates)."""
        self._record_listeners.append(listener)

    def remember(self, key: DedupeKey) -> None:
        """Treat a summary `key` as counted already (the poller restores those counted before a restart)."""
        self._dedupe.seen(key, self._clock())

    def account_label(self, account_id: str) -> str | None:
        """The `account` label of `account_id`; None when no configured account speaks for it."""
        return self.accounts.label(account_id)

    async def ingest_shared(self, record: Record, source: str) -> bool:
        """`ingest`, after one round trip to the state shared with other replicas (with `state.backend: redis`).

        Without Redis, or when it does not answer within its call timeout, this is `ingest` on local state.
        """
        shared = self.shared
        if shared is None:
            return self.ingest(record, source)
        account = self.accounts.label(record.account_id)
        if account is None:
            return False
        key = digest(record.dedupe_key)  # once, for Redis and for the local history
        verdict = await shared.check(record, self._directory, account, key)
        self._verdict, self._digest = verdict, key
        try:
            return self._ingest(record, source, account)
        finally:
            self._verdict = self._digest = None

    def ingest(self, record: Record, source: str) -> bool:
        """Record one event; False when it was a duplicate and changed nothing.

        Sources check first (`accounts.check`) that the credential that delivered the record may speak
        for its account; a record of an account the table does not know is not recorded (False).
        """
        account = self.accounts.label(record.account_id)
        if account is None:
            return False
        return self._ingest(record, source, account)

    def _ingest(self, record: Record, source: str, account: str) -> bool:
        """`ingest` once the record's account label is known (ingest_shared has it already)."""
        verdict = self._verdict
        now = self._store.now = self._clock()
        # The frequent events are remembered per participant (or call), the rare ones globally.
        if isinstance(record, QosRecord | ParticipantInfo):
            entity: tuple[str, ...] = (record.account_id, record.instance, record.participant_id)
            if self._history.seen(entity, record.dedupe_key, now, self._digest):
                return False
        elif isinstance(record, PhoneQosRecord) and record.event == "phone.call_qos":
            if self._history.seen((record.account_id, record.call_id), record.dedupe_key, now, self._digest):
                return False
        elif self._dedupe.seen(record.dedupe_key, now, self._digest):
            return False
        if verdict is not None and verdict.duplicate:
            return False  # counted by another replica (or by this one, and Redis remembers it)
        if (
            isinstance(record, SummaryRecord)
            and record.product == "session"
            and source != "poll"
            and not self.session_summaries.webhook(
                record.account_id, record.instance, record.participant_id, record.match, now
            )
        ):
            return False  # this user was counted from the REST listing already
        m = self._m
        m.events.inc((account, source, record.event))
        if record.event_time is not None:
            m.event_lag.observe((source,), max(0.0, now - record.event_time))
        if isinstance(record, QosRecord):
            self._qos(record, account, now)
        elif isinstance(record, SummaryRecord):
            self._summary(record, account, source, now)
        elif isinstance(record, ParticipantInfo):
            self._participant_info(record, account, now)
        elif isinstance(record, MeetingEvent):
            self._meeting_event(record, account, now)
        else:
            self._phone(record, account, now)
        errors: tuple[ParseError, ...] = getattr(record, "parse_errors", ())
        if len(errors) == 1:
            m.parse_errors.inc(errors[0])
        elif errors:  # an event refusing thousands of entries is counted in one step per (field, reason)
            for error, count in Counter(errors).items():
                m.parse_errors.inc(error, count)
        for field in getattr(record, "unmeasured", ()):
            m.unmeasured.inc((field,))
        for listener in self._record_listeners:
            listener(record, source)
        return True

    def count_parse_error(self, field: str) -> None:
        """An event rejected whole because `field` was missing or of the wrong shape."""
        self._m.parse_errors.inc((field, MALFORMED))

    def _stream_series(self, labels: tuple[str, ...]) -> _StreamSeries:
        """The series one media stream's values go to, looked up once per label set and kept."""
        if self._store.generation != self._generation:  # a series was removed: handles may be stale
            self._stream_cache.clear()
            self._generation = self._store.generation
        group = self._stream_cache.get(labels)
        if group is None:
            m = self._m
            group = (
                m.media_latency.handle(labels),
                m.media_jitter.handle(labels),
                m.media_loss.handle(labels),
                m.media_max_loss.handle(labels),
                m.media_bitrate.handle(labels),
                m.media_frame_rate.handle(labels),
                m.media_height.handle(labels),
                m.media_records.handle(labels),
                m.media_time.handle(labels),
            )
            if not any(isinstance(series, RefusedSeries) for series in group):
                self._stream_cache[labels] = group
        return group

    def _qos(self, record: QosRecord, account: str, now: float) -> None:
        m = self._m
        product = record.product
        extra = self._enrichment(record)
        timed: list[tuple[str, ...]] = []
        for stream in record.streams:
            labels = (account, product, stream.media, stream.direction, stream.path, *extra)
            latency, jitter, loss, max_loss, bitrate, frame_rate, height, records, _ = self._stream_series(labels)
            timed.append(labels)
            if stream.latency is not None:
                latency.observe(stream.latency, now)
            if stream.jitter is not None:
                jitter.observe(stream.jitter, now)
            if stream.avg_loss is not None:
                loss.observe(stream.avg_loss, now)
            if stream.max_loss is not None:
                max_loss.observe(stream.max_loss, now)
            if stream.bitrate is not None:
                bitrate.observe(stream.bitrate, now)
            if stream.frame_rate is not None:
                frame_rate.observe(stream.frame_rate, now)
            if stream.height is not None:
                height.observe(stream.height, now)
            records.add(1.0, now)
        graded: list[tuple[str, ...]] = []
        for grade in record.grades:
            if grade.quality is not None:
                labels = (account, product, grade.media, grade.quality, *extra)
                m.quality_records.inc(labels)
                graded.append(labels)
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
        key = (account, product, record.instance, record.participant_id)
        verdict = self._verdict
        if verdict is not None and verdict.ended:
            self.participants.end(key, now)  # they left, and another replica saw it
        self.participants.touch(key, at, (account, product, *extra))
        if timed or graded:
            made = record.record_time if record.record_time is not None else now
            if verdict is not None and verdict.times and not verdict.hold:  # records other replicas received
                self.time.hint(key, verdict.times, now)
            if verdict is not None and verdict.ended:
                self.time.end(key)
            self.time.record(key, made, now, (tuple(timed), tuple(graded)))
        for listener in self._qos_listeners:
            listener(record, account, extra)
        if self.detail is not None:
            self.detail.on_qos(record, account, at, now)

    def _credit_time(self, seconds: float, content: Content, when: float) -> None:
        """Timekeeper's sink: `seconds` of each stream and grade a record (or a held first record) had.

        `when` is the arrival the time belongs to (older than now when a lone record is settled at
        expiry), so that the series age from then.
        """
        streams, grades = content
        for labels in streams:
            self._stream_series(labels)[8].add(seconds, when)
        quality_time = self._m.quality_time
        for labels in grades:
            series = quality_time.handle(labels)
            series.add(seconds, when)

    def _summary(self, record: SummaryRecord, account: str, source: str, now: float) -> None:
        m = self._m
        product = record.product
        extra = self._enrichment(record)
        m.participant_sessions.inc((account, product, source, *extra))
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
        key = (account, product, record.instance, record.participant_id)
        self.participants.end(key, now)
        self.time.end(key)
        if self.detail is not None:
            self.detail.on_summary(record, account, now)

    def _enrichment(self, record: QosRecord | SummaryRecord) -> tuple[str, ...]:
        """The participant's enrichment label values: the shared directory's when Redis told them, else ours."""
        key = (record.account_id, record.instance, record.participant_id)
        extra = self._directory.lookup(*key)
        shared = self._verdict.enrichment if self._verdict is not None else None
        if shared is not None and shared != extra:  # new to this replica: held to its closed sets, kept
            now = self._clock()
            extra = self._directory.put(key, self._directory.admit(shared, now), now)
        return extra

    def _participant_info(self, record: ParticipantInfo, account: str, now: float) -> None:
        shared = self._verdict.enrichment if self._verdict is not None else None
        if shared is not None:  # the merge of every replica's data events for this participant
            who = (record.account_id, record.instance, record.participant_id)
            self._directory.put(who, self._directory.admit(shared, now), now)
        else:
            self._directory.update(record, now)
        if record.final:
            key = (account, record.product, record.instance, record.participant_id)
            self.participants.end(key, now)
            self.time.end(key)
        if self.detail is not None:
            self.detail.on_info(record, account, now)

    def _meeting_event(self, record: MeetingEvent, account: str, now: float) -> None:
        """Ordinary meeting events: a leave or the meeting's end ends activity at once (QSS alone waits for
        the summary or the activity window); started and joined only give detail mode its context."""
        if record.kind == "left":
            key = (account, record.product, record.instance, record.participant_id)
            self.participants.end(key, now)
            self.time.end(key)
        elif record.kind == "ended":
            self.participants.end_prefix((account, record.product, record.instance), now)
            self.time.end_prefix((account, record.product, record.instance))
        if self.detail is not None:
            self.detail.on_context(record, account, now)

    def _phone(self, record: PhoneQosRecord, account: str, now: float) -> None:
        m = self._m
        summary = record.event == "phone.call_qos_summary"
        counted = self._verdict.samples if self._verdict is not None else ()
        for index, sample in enumerate(record.samples):
            # A summary may repeat samples already received one by one: count each sample once.
            if summary and self._history.seen(
                (record.account_id, record.call_id),
                ("phone.call_qos", record.account_id, record.call_id, sample.leg, sample.direction, sample.sample_time),
                now,
            ):
                continue
            if index < len(counted) and counted[index]:
                continue  # received one by one on another replica
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
            if self._verdict is not None and self._verdict.ended:
                self.calls.end(key, now)
            at = min(record.event_time, now) if record.event_time is not None else now
            self.calls.touch(key, at, (account,))

    def stateful(self) -> dict[str, Stateful]:
        """The parts holding what the pipeline knows between events, by name (saved by persistence.py)."""
        parts: dict[str, Stateful] = {
            "enrichment": self._directory,
            "dedupe": self._dedupe,
            "history": self._history,
            "participants": self.participants,
            "calls": self.calls,
            "time": self.time,
        }
        if self.detail is not None:
            parts["detail"] = self.detail
        return parts

    def expire(self) -> None:
        """Periodic housekeeping: stale series, participants, calls and enrichment entries."""
        now = self._clock()
        self.time.expire(now)  # first: a lone record settled now belongs to its arrival, and ages with it
        self._store.expire()
        self.participants.expire(now)
        self.calls.expire(now)
        self._directory.expire(now)
        self._history.expire(now)
        self.session_summaries.expire(now)
        if self.detail is not None:
            self.detail.expire(now)
