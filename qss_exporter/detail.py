"""Detail mode: which meetings and participants get series of their own, what those hold, and when they go.

Selection is an allowlist (account user ids or emails, matched by keyed hash) and/or the worst N
participants and meetings by a score, re-ranked every interval. The series are computed from the
tables here when rendered (callback families): a leave removes one table entry and nothing in the
store goes stale, and the pipeline's cached series handles are never invalidated by detail churn.
A hard cap bounds the exposed series and counts what it refused. Knows records and the store's
`Sample`; not HTTP, not the configuration file.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from qss_exporter.identity import HashedLabels, lookup
from qss_exporter.store import Sample, Store
from qss_exporter.zoom.records import MeetingEvent, ParticipantIdentity, ParticipantInfo, QosRecord, SummaryRecord

__all__ = ["GRADE_VALUES", "MEETING_SERIES", "SCORES", "DetailSettings", "DetailTracker"]

Key = tuple[str, str, str, str]  # account label, product, instance, per-instance participant id
MeetingKey = tuple[str, str, str]  # account label, product, instance
_Values = tuple[float | None, float | None, float | None, float | None]  # latency, jitter, loss, bitrate

# Zoom's grade as a number, so that dashboards can colour and sort it: higher is better.
GRADE_VALUES = {"good": 4.0, "fair": 3.0, "poor": 2.0, "bad": 1.0}
MEDIA = ("audio", "video", "share")
# A meeting's series: participants now, and four aggregates per media. Reserved whole under the cap.
MEETING_SERIES = 1 + 4 * len(MEDIA)
# A meeting seen only through context events (started, joined) is forgotten after this long without
# a QoS record or a member; ended meetings go at once.
CONTEXT_TTL_SECONDS = 3600.0
_STREAM_FAMILIES = (
    ("latency_seconds", "latency", 0),
    ("jitter_seconds", "jitter", 1),
    ("packet_loss_ratio", "average packet loss (ratio 0-1)", 2),
    ("bitrate_bytes_per_second", "bitrate", 3),
)


# Each score is "higher is worse" so that ranking is one `nlargest`: the highest value of one stream
# value (index into _Values) over a media's streams, or 5 - the lowest Zoom quality score over media.
SCORES: dict[str, tuple[str, int] | None] = {
    "audio_loss": ("audio", 2),
    "video_loss": ("video", 2),
    "audio_latency": ("audio", 0),
    "audio_jitter": ("audio", 1),
    "quality": None,
}


@dataclass(frozen=True, slots=True)
class DetailSettings:
    """What detail mode selects and shows (built from `detail:` in the configuration by app.py)."""

    key: bytes
    window: float  # the activity window: no record for this long and the series go
    allowlist: tuple[str, ...] = ()  # plain account user ids / emails, or `hmac:<label>`
    worst_participants: int = 0
    worst_meetings: int = 0
    score: str = "audio_loss"
    interval: float = 60.0
    max_series: int = 10_000
    plain_meeting_number: bool = False
    plain_topic: bool = False
    plain_participant_name: bool = False


class _Participant:
    __slots__ = (
        "admitted",
        "allowed",
        "grades",
        "label",
        "meeting",
        "name",
        "score",
        "seen",
        "series",
        "streams",
        "worst",
    )

    def __init__(self, meeting: _Meeting, allowed: bool, name: str, seen: float) -> None:
        self.meeting = meeting
        self.allowed = allowed
        self.worst = False
        self.admitted = False  # its series are exposed (and counted under the cap)
        self.series = 0
        self.label = ""
        self.name = name
        self.seen = seen
        self.streams: dict[tuple[str, str, str], _Values] = {}
        self.grades: dict[str, tuple[float | None, float | None]] = {}  # media -> (grade value, Zoom score)
        self.score: float | None = None


class _Meeting:
    __slots__ = ("admitted", "instance", "label", "labels", "members", "names", "number", "seen", "topic")

    def __init__(self, instance: str, label: str, seen: float) -> None:
        self.instance = instance
        self.label = label  # the hash of the meeting number once known, else of the instance
        self.members: dict[Key, _Participant] = {}
        self.labels: dict[str, Key] = {}  # participant label -> member, to keep labels unique per meeting
        self.names: dict[str, str] = {}  # per-instance id -> display name from joined events (opted in only)
        self.number = ""
        self.topic = ""
        self.seen = seen
        self.admitted = False


class DetailTracker:
    """The detail tables, their selection and cap, and the callback families that render them."""

    def __init__(self, settings: DetailSettings) -> None:
        self.settings = settings
        self._label = HashedLabels(settings.key)
        self._allow = frozenset(
            entry[len("hmac:") :] if entry.startswith("hmac:") else lookup(settings.key, entry)
            for entry in settings.allowlist
        )
        # Meetings' aggregates and the worst-N ranking need every participant; an allowlist alone does not.
        self._tracks_all = bool(settings.worst_participants or settings.worst_meetings)
        self._score_media, self._score_index = SCORES[settings.score] or ("", -1)
        self._participants: dict[Key, _Participant] = {}
        self._meetings: dict[MeetingKey, _Meeting] = {}
        self._left: dict[Key, float] = {}  # left participants, so that a late record does not bring them back
        self._verdicts: dict[tuple[str, str], bool] = {}  # allowlist answers, forgotten at each housekeeping
        self._worst: set[Key] = set()
        self._worst_meetings: set[MeetingKey] = set()
        self._next_evaluation = float("-inf")
        self.series = 0  # exposed (reserved) detail series
        self.refused = {"participant": 0, "meeting": 0}

    # ------------------------------------------------------------------------------------ records in

    def on_qos(self, record: QosRecord, account: str, at: float, now: float) -> None:
        """A participant's one-minute record (`at`: its event time, never in the future)."""
        key = (account, record.product, record.instance, record.participant_id)
        p = self._participants.get(key)
        if p is None:
            if key in self._left:
                return
            allowed = self._allowed(record.identity)
            if not (allowed or self._tracks_all):
                return
            p = self._join(key, record.identity, allowed, at)
        elif at < p.seen:
            return  # a redelivered older minute: the latest values stay
        p.seen = at
        if at > p.meeting.seen:
            p.meeting.seen = at
        streams: dict[tuple[str, str, str], _Values] = {}
        score: float | None = None
        media, index = self._score_media, self._score_index
        for s in record.streams:
            values = streams[(s.media, s.direction, s.path)] = (s.latency, s.jitter, s.avg_loss, s.bitrate)
            if s.media == media:
                value = values[index]
                if value is not None and (score is None or value > score):
                    score = value
        p.streams = streams
        p.grades = {g.media: (GRADE_VALUES.get(g.quality) if g.quality else None, g.score) for g in record.grades}
        if index < 0:
            quality = [g.score for g in record.grades if g.score is not None]
            score = 5.0 - min(quality) if quality else None
        p.score = score
        if p.admitted:
            self._resize(p)
        elif p.allowed or p.worst:
            self._admit(p)
        if now >= self._next_evaluation:
            self.evaluate(now)

    def on_summary(self, record: SummaryRecord, account: str, now: float) -> None:
        """The participant left (their whole-session summary)."""
        self._note_number(account, record.product, record.instance, record.meeting_number)
        self.leave((account, record.product, record.instance, record.participant_id), now)

    def on_info(self, record: ParticipantInfo, account: str, now: float) -> None:
        self._note_number(account, record.product, record.instance, record.meeting_number)
        if record.final:
            self.leave((account, record.product, record.instance, record.participant_id), now)

    def on_context(self, record: MeetingEvent, account: str, now: float) -> None:
        """meeting.started / ended / participant_joined / participant_left and their equivalents."""
        mkey = (account, record.product, record.instance)
        if record.kind == "ended":
            self._end_meeting(mkey, now)
            return
        if record.kind == "left":
            self.leave((*mkey, record.participant_id), now)
            return
        m = self._meetings.get(mkey)
        if m is None:
            m = self._meetings[mkey] = _Meeting(record.instance, self._label(record.instance), now)
        self._set_number(m, record.meeting_number)
        m.topic = record.topic or m.topic
        m.seen = max(m.seen, now)
        name = record.identity.name
        if record.kind == "joined" and name and self.settings.plain_participant_name:
            member = m.members.get((*mkey, record.participant_id))
            if member is not None:
                member.name = name
            else:
                m.names[record.participant_id] = name

    def leave(self, key: Key, now: float) -> None:
        p = self._participants.pop(key, None)
        if p is None:
            return
        self._left[key] = now
        self._forget(key, p)

    # ---------------------------------------------------------------------------------- selection

    def evaluate(self, now: float) -> None:
        """Re-rank the worst participants and meetings (every `interval`; called by records and housekeeping).

        Last round's picks are released first and the new ones admitted worst first (participants, then
        meetings), so that under the cap the worst win over whoever was picked earlier; no scrape can
        see the gap in between, since all of it runs in one step of the event loop.
        """
        settings = self.settings
        self._next_evaluation = now + settings.interval
        cutoff = now - settings.window
        for key in self._worst:
            p = self._participants.get(key)
            if p is not None:
                p.worst = False
                if not p.allowed:
                    self._release(p)
        for mkey in self._worst_meetings:
            meeting = self._meetings.get(mkey)
            if meeting is not None and meeting.admitted:
                meeting.admitted = False
                self.series -= MEETING_SERIES
        chosen: list[Key] = []
        if settings.worst_participants:
            candidates = (
                (p.score, key)
                for key, p in self._participants.items()
                if p.score is not None and p.score > 0 and p.seen >= cutoff
            )
            chosen = [key for _, key in heapq.nlargest(settings.worst_participants, candidates)]
        self._worst = set(chosen)
        for key in chosen:
            p = self._participants[key]
            p.worst = True
            if not p.admitted:
                self._admit(p)
        chosen_meetings: list[MeetingKey] = []
        if settings.worst_meetings:
            scored = []
            for mkey, m in self._meetings.items():
                scores = [p.score for p in m.members.values() if p.score is not None and p.seen >= cutoff]
                if scores and sum(scores) > 0:
                    scored.append((sum(scores) / len(scores), mkey))
            chosen_meetings = [mkey for _, mkey in heapq.nlargest(settings.worst_meetings, scored)]
        self._worst_meetings = set(chosen_meetings)
        for mkey in chosen_meetings:
            meeting = self._meetings[mkey]
            if self.series + MEETING_SERIES > settings.max_series:
                self.refused["meeting"] += MEETING_SERIES
            else:
                meeting.admitted = True
                self.series += MEETING_SERIES

    def tick(self, now: float) -> None:
        if now >= self._next_evaluation:
            self.evaluate(now)

    def expire(self, now: float) -> None:
        """Drop participants idle past the activity window, meetings left empty, and old leave marks."""
        cutoff = now - self.settings.window
        for key in [key for key, p in self._participants.items() if p.seen < cutoff]:
            self._forget(key, self._participants.pop(key))
        context_cutoff = now - max(self.settings.window, CONTEXT_TTL_SECONDS)
        for mkey in [k for k, m in self._meetings.items() if not m.members and m.seen < context_cutoff]:
            self._drop_meeting(mkey)
        for key in [key for key, at in self._left.items() if at < cutoff]:
            del self._left[key]
        self._verdicts.clear()
        # A dict or set never shrinks by deleting entries; clearing an emptied one frees its table, so
        # that after a busy hour the memory returns to what an idle agent holds (tests/test_detail.py).
        for table in (self._participants, self._meetings, self._left, self._worst, self._worst_meetings):
            if not table:
                table.clear()
        self.tick(now)

    def sizes(self) -> dict[str, int]:
        """Entries held per table (tests compare them with a baseline)."""
        return {
            "participants": len(self._participants),
            "meetings": len(self._meetings),
            "left": len(self._left),
            "worst": len(self._worst) + len(self._worst_meetings),
            "names": sum(len(m.names) for m in self._meetings.values()),
            "verdicts": len(self._verdicts),
            "series": self.series,
        }

    def _allowed(self, identity: ParticipantIdentity) -> bool:
        if not self._allow:
            return False
        # With an allowlist alone, everyone else is not tracked and asks again each minute: remember the
        # answer (until the next housekeeping) instead of computing two HMACs per event.
        ids = (identity.user_id, identity.email)
        verdict = self._verdicts.get(ids)
        if verdict is None:
            verdict = self._verdicts[ids] = any(value and self._label(value) in self._allow for value in ids)
        return verdict

    def _join(self, key: Key, identity: ParticipantIdentity, allowed: bool, at: float) -> _Participant:
        mkey = key[:3]
        m = self._meetings.get(mkey)
        if m is None:
            m = self._meetings[mkey] = _Meeting(key[2], self._label(key[2]), at)
        name = (m.names.pop(key[3], "") or identity.name) if self.settings.plain_participant_name else ""
        p = self._participants[key] = m.members[key] = _Participant(m, allowed, name, at)
        # The label of a signed-in person is what `lookup` gives for their email or account user id; a
        # guest (or a second device of the same person in the meeting) gets the hash of the per-meeting id.
        basis = identity.email or identity.user_id
        label = self._label(basis) if basis else ""
        if not label or label in m.labels:
            label = self._label(f"{key[2]}/{key[3]}")
        p.label = label
        m.labels[label] = key
        return p

    def _count(self, p: _Participant) -> int:
        streams = sum(value is not None for values in p.streams.values() for value in values)
        return streams + sum(value is not None for values in p.grades.values() for value in values)

    def _admit(self, p: _Participant) -> None:
        count = self._count(p)
        if self.series + count > self.settings.max_series:
            self.refused["participant"] += count
            return
        p.admitted, p.series = True, count
        self.series += count

    def _resize(self, p: _Participant) -> None:
        """A selected participant's new record may hold more streams: it stays only if the cap allows."""
        count = self._count(p)
        if self.series - p.series + count > self.settings.max_series:
            self._release(p)
            self.refused["participant"] += count
            return
        self.series += count - p.series
        p.series = count

    def _release(self, p: _Participant) -> None:
        if p.admitted:
            self.series -= p.series
            p.admitted, p.series = False, 0

    def _forget(self, key: Key, p: _Participant) -> None:
        self._release(p)
        self._worst.discard(key)
        m = p.meeting
        m.members.pop(key, None)
        if m.labels.get(p.label) == key:
            del m.labels[p.label]
        mkey = key[:3]
        if not m.members and self._meetings.get(mkey) is m and not (m.number or m.topic):
            self._drop_meeting(mkey)  # nothing left to remember about it

    def _drop_meeting(self, mkey: MeetingKey) -> None:
        m = self._meetings.pop(mkey)
        if m.admitted:
            self.series -= MEETING_SERIES
        self._worst_meetings.discard(mkey)

    def _end_meeting(self, mkey: MeetingKey, now: float) -> None:
        m = self._meetings.get(mkey)
        if m is None:
            return
        for key in list(m.members):
            self.leave(key, now)
        if mkey in self._meetings:
            self._drop_meeting(mkey)

    def _note_number(self, account: str, product: str, instance: str, number: str) -> None:
        m = self._meetings.get((account, product, instance))
        if m is not None:
            self._set_number(m, number)

    def _set_number(self, m: _Meeting, number: str) -> None:
        if number and number != m.number:
            m.number = number
            m.label = self._label(number)

    # ------------------------------------------------------------------------------------ rendering

    def register(self, store: Store, clock: Callable[[], float]) -> None:
        """The detail families (callbacks: computed from these tables at each scrape or export)."""
        s = self.settings
        meeting_plain = tuple(
            name for name, on in (("meeting_number", s.plain_meeting_number), ("topic", s.plain_topic)) if on
        )
        person_plain = (*meeting_plain, *(("participant_name",) if s.plain_participant_name else ()))
        who = ("account", "product", "meeting", "participant")
        for suffix, what, index in _STREAM_FAMILIES:
            store.callback(
                f"zoom_qss_participant_{suffix}",
                f"Detail mode: a selected participant's {what} in their latest one-minute record, per stream.",
                (*who, "media", "direction", "path", *person_plain),
                lambda index=index: self._stream_samples(clock(), index),  # type: ignore[misc]  # bound per family
            )
        store.callback(
            "zoom_qss_participant_quality_grade",
            "Detail mode: a selected participant's latest Zoom quality grade: 4 good, 3 fair, 2 poor, 1 bad.",
            (*who, "media", *person_plain),
            lambda: self._grade_samples(clock(), 0),
        )
        store.callback(
            "zoom_qss_participant_quality_score",
            "Detail mode: a selected participant's latest Zoom quality score (1-5).",
            (*who, "media", *person_plain),
            lambda: self._grade_samples(clock(), 1),
        )
        meeting = ("account", "product", "meeting")
        store.callback(
            "zoom_qss_meeting_participants",
            "Detail mode: active participants of a selected meeting, webinar or Video SDK session.",
            (*meeting, *meeting_plain),
            lambda: self._meeting_samples(clock(), None),
        )
        for suffix, what, index in _STREAM_FAMILIES:
            store.callback(
                f"zoom_qss_meeting_{suffix}",
                f"Detail mode: mean {what} over a selected meeting's active participants' latest records, per media.",
                (*meeting, "media", *meeting_plain),
                lambda index=index: self._meeting_samples(clock(), index),  # type: ignore[misc]
            )
        store.callback(
            "zoom_qss_detail_series",
            "Detail series exposed (a meeting reserves 13), held under detail.max_series.",
            (),
            lambda: [Sample((), float(self.series))],
            capped=False,
        )
        store.callback(
            "zoom_qss_detail_series_refused_total",
            "Detail series the cap detail.max_series refused, by kind (participant or meeting), per attempt.",
            ("kind",),
            lambda: [Sample((kind,), float(n)) for kind, n in self.refused.items()],
            type="counter",
            capped=False,
        )
        store.callback(
            "zoom_qss_detail_tracked",
            "Entries held by detail mode, by kind (participants, meetings): the memory it uses.",
            ("kind",),
            lambda: [
                Sample(("participants",), float(len(self._participants))),
                Sample(("meetings",), float(len(self._meetings))),
            ],
            capped=False,
        )

    def _plain(self, m: _Meeting, p: _Participant | None) -> tuple[str, ...]:
        s = self.settings
        values: list[str] = []
        if s.plain_meeting_number:
            values.append(m.number)
        if s.plain_topic:
            values.append(m.topic)
        if p is not None and s.plain_participant_name:
            values.append(p.name)
        return tuple(values)

    def _exposed(self, now: float) -> Iterator[tuple[Key, _Participant]]:
        """Shown participants, each label set once: a meeting restarted under the same number (a new
        instance) may briefly hold the same person twice; the most recent record wins."""
        cutoff = now - self.settings.window
        shown = sorted(
            ((key, p) for key, p in self._participants.items() if p.admitted and p.seen >= cutoff),
            key=lambda item: item[1].seen,
            reverse=True,
        )
        done: set[tuple[str, str, str, str]] = set()
        for key, p in shown:
            identity = (key[0], key[1], p.meeting.label, p.label)
            if identity not in done:
                done.add(identity)
                yield key, p

    def _stream_samples(self, now: float, index: int) -> list[Sample]:
        samples = []
        for key, p in self._exposed(now):
            base = (key[0], key[1], p.meeting.label, p.label)
            plain = self._plain(p.meeting, p)
            for (media, direction, path), values in p.streams.items():
                value = values[index]
                if value is not None:
                    samples.append(Sample((*base, media, direction, path, *plain), value))
        return samples

    def _grade_samples(self, now: float, index: int) -> list[Sample]:
        samples = []
        for key, p in self._exposed(now):
            base = (key[0], key[1], p.meeting.label, p.label)
            plain = self._plain(p.meeting, p)
            for media, values in p.grades.items():
                value = values[index]
                if value is not None:
                    samples.append(Sample((*base, media, *plain), value))
        return samples

    def _meeting_samples(self, now: float, index: int | None) -> list[Sample]:
        cutoff = now - self.settings.window
        samples = []
        done: set[tuple[str, str, str]] = set()
        # Most recent first, so that two instances under one meeting number show the current one.
        for (account, product, _), m in sorted(self._meetings.items(), key=lambda item: item[1].seen, reverse=True):
            if not m.admitted:
                continue
            active = [p for p in m.members.values() if p.seen >= cutoff]
            base = (account, product, m.label)
            if not active or base in done:
                continue
            done.add(base)
            plain = self._plain(m, None)
            if index is None:
                samples.append(Sample((*base, *plain), float(len(active))))
                continue
            for media in MEDIA:
                values = [
                    v[index] for p in active for k, v in p.streams.items() if k[0] == media and v[index] is not None
                ]
                if values:
                    samples.append(Sample((*base, media, *plain), sum(values) / len(values)))  # type: ignore[arg-type]
        return samples
