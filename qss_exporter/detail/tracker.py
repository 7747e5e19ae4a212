"""Detail mode's records in: the participants' table, joins, leaves and expiry, and the ranking timer.

The pipeline hands every QoS record, summary, data event and context event to a DetailTracker; it
keeps the participants it may show (the allowlisted, or everyone when a worst-N selection needs
them all), and owns the meetings' context, the selection and the rendered families.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from qss_exporter.detail.context import MeetingContext
from qss_exporter.detail.selection import Selection
from qss_exporter.detail.series import DetailSeries
from qss_exporter.detail.tables import GRADE_VALUES, DetailSettings, Key, MeetingKey, Participant, Values
from qss_exporter.identity import HashedLabels
from qss_exporter.store import Store
from qss_exporter.zoom.records import MeetingEvent, ParticipantIdentity, ParticipantInfo, QosRecord, SummaryRecord

__all__ = ["DetailTracker"]


class DetailTracker:
    """The detail tables, their selection and cap, and the callback families that render them."""

    def __init__(self, settings: DetailSettings) -> None:
        self.settings = settings
        self._label = HashedLabels(settings.key)
        self.selection = Selection(settings, self._label)
        self.context = MeetingContext(self._label, settings.window, settings.plain_participant_name)
        self._participants: dict[Key, Participant] = {}
        self._left: dict[Key, float] = {}  # left participants, so that a late record does not bring them back

    @property
    def series(self) -> int:
        """Detail series exposed (reserved) now."""
        return self.selection.series

    @property
    def refused(self) -> dict[str, int]:
        return self.selection.refused

    # ------------------------------------------------------------------------------------ records in

    def on_qos(self, record: QosRecord, account: str, at: float, now: float) -> None:
        """A participant's one-minute record (`at`: its event time, never in the future)."""
        key = (account, record.product, record.instance, record.participant_id)
        selection = self.selection
        p = self._participants.get(key)
        if p is None:
            if key in self._left:
                return
            allowed = selection.allowed(record.identity)
            if not (allowed or selection.ranks):
                return
            p = self._join(key, record.identity, allowed, at)
        elif at < p.seen:
            return  # a redelivered older minute: the latest values stay
        p.seen = at
        if at > p.meeting.seen:
            p.meeting.seen = at
        streams: dict[tuple[str, str, str], Values] = {
            (s.media, s.direction, s.path): (s.latency, s.jitter, s.avg_loss, s.bitrate) for s in record.streams
        }
        p.streams = streams
        p.grades = {g.media: (GRADE_VALUES.get(g.quality) if g.quality else None, g.score) for g in record.grades}
        p.score = selection.score(streams, [g.score for g in record.grades if g.score is not None])
        # The worst-N ranking is not re-run here: it runs on its timer (`run`), every interval.
        if p.admitted:
            selection.resize(p)
        elif p.allowed or p.worst:
            selection.admit(p)

    def on_summary(self, record: SummaryRecord, account: str, now: float) -> None:
        """The participant left (their whole-session summary)."""
        mkey = (account, record.product, record.instance)
        self.context.note_number(self.context.meetings.get(mkey), record.meeting_number)
        self.leave((*mkey, record.participant_id), now)

    def on_info(self, record: ParticipantInfo, account: str, now: float) -> None:
        mkey = (account, record.product, record.instance)
        self.context.note_number(self.context.meetings.get(mkey), record.meeting_number)
        if record.final:
            self.leave((*mkey, record.participant_id), now)

    def on_context(self, record: MeetingEvent, account: str, now: float) -> None:
        """meeting.started / ended / participant_joined / participant_left and their equivalents."""
        mkey = (account, record.product, record.instance)
        if record.kind == "ended":
            self._end_meeting(mkey, now)
        elif record.kind == "left":
            self.leave((*mkey, record.participant_id), now)
        else:
            self.context.on_event(record, mkey, now)

    def leave(self, key: Key, now: float) -> None:
        p = self._participants.pop(key, None)
        if p is None:
            return
        self._left[key] = now
        self._forget(key, p)

    # -------------------------------------------------------------------------------- the ranking

    def evaluate(self, now: float) -> None:
        """Re-rank the worst participants and meetings now (Selection.evaluate)."""
        self.selection.evaluate(now, self._participants, self.context.meetings)

    def tick(self, now: float) -> None:
        """Re-rank if the interval has passed since the last ranking."""
        if now >= self.selection.next_evaluation:
            self.evaluate(now)

    async def run(self, clock: Callable[[], float]) -> None:
        """Re-rank every `worst.interval_seconds` until cancelled (a background task of the agent)."""
        if not self.selection.ranks:
            return
        while True:
            self.tick(clock())
            await asyncio.sleep(self.selection.due_in(clock()))

    # --------------------------------------------------------------------------------- housekeeping

    def expire(self, now: float) -> None:
        """Drop participants idle past the activity window, meetings left empty, and old leave marks."""
        cutoff = now - self.settings.window
        for key in [key for key, p in self._participants.items() if p.seen < cutoff]:
            self._forget(key, self._participants.pop(key))
        for mkey in self.context.stale(now):
            self._drop_meeting(mkey)
        for key in [key for key, at in self._left.items() if at < cutoff]:
            del self._left[key]
        self.selection.forget_verdicts()
        # A dict or set never shrinks by deleting entries; clearing an emptied one frees its table, so
        # that after a busy hour the memory returns to what an idle agent holds (tests/test_detail.py).
        for table in (self._participants, self.context.meetings, self._left):
            if not table:
                table.clear()
        self.selection.shrink()
        self.tick(now)  # catches up a ranking that is due (the clock jumped, or the timer is late)

    def sizes(self) -> dict[str, int]:
        """Entries held per table (tests compare them with a baseline)."""
        meetings = self.context.meetings
        selection = self.selection
        return {
            "participants": len(self._participants),
            "meetings": len(meetings),
            "left": len(self._left),
            "worst": len(selection.worst) + len(selection.worst_meetings),
            "names": sum(len(m.names) for m in meetings.values()),
            "verdicts": len(selection.verdicts),
            "series": selection.series,
        }

    def snapshot(self) -> dict[str, Any]:
        """Plain data for persistence.py: the meetings' context and the leave marks. Tracked participants
        are not saved: their next one-minute record tracks them again. The meeting number, topic and
        names only go to disk where their plain label is opted in; otherwise the hashed label does."""
        plain = self.settings
        return {
            "meetings": [
                (
                    mkey,
                    m.number if plain.plain_meeting_number else "",
                    m.topic if plain.plain_topic else "",
                    dict(m.names),  # held only with detail.plain.participant_name
                    m.seen,
                    m.label,
                )
                for mkey, m in self.context.meetings.items()
            ],
            "left": list(self._left.items()),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back a `snapshot()`: what this tracker learned since the start stays."""
        context = self.context
        for mkey, number, topic, names, seen, label in data["meetings"]:
            m = context.meeting(mkey, float(seen))
            if number:
                context.note_number(m, number)
            elif not m.number:
                m.label = label  # the hash of the number, saved without it
            m.topic = m.topic or topic
            m.seen = max(m.seen, float(seen))
            if self.settings.plain_participant_name:
                m.names = {**names, **m.names}
        for key, at in data["left"]:
            self._left.setdefault(key, float(at))

    def register(self, store: Store, clock: Callable[[], float]) -> None:
        """The detail families on `store` (callbacks: computed from these tables at each scrape or export)."""
        DetailSeries(self.settings, self._participants, self.context.meetings, self.selection).register(store, clock)

    # ---------------------------------------------------------------------------------- internals

    def _join(self, key: Key, identity: ParticipantIdentity, allowed: bool, at: float) -> Participant:
        m = self.context.meeting(key[:3], at)
        name = (m.names.pop(key[3], "") or identity.name) if self.settings.plain_participant_name else ""
        p = self._participants[key] = m.members[key] = Participant(m, allowed, name, at)
        # The label of a signed-in person is what `lookup` gives for their email or account user id; a
        # guest (or a second device of the same person in the meeting) gets the hash of the per-meeting id.
        basis = identity.email or identity.user_id
        label = self._label(basis) if basis else ""
        if not label or label in m.labels:
            label = self._label(f"{key[2]}/{key[3]}")
        p.label = label
        m.labels[label] = key
        return p

    def _forget(self, key: Key, p: Participant) -> None:
        self.selection.forget(key, p)
        m = p.meeting
        m.members.pop(key, None)
        if m.labels.get(p.label) == key:
            del m.labels[p.label]
        mkey = key[:3]
        if self.context.meetings.get(mkey) is m and self.context.forgettable(m):
            self._drop_meeting(mkey)  # nothing left to remember about it

    def _drop_meeting(self, mkey: MeetingKey) -> None:
        self.selection.forget_meeting(mkey, self.context.meetings.pop(mkey))

    def _end_meeting(self, mkey: MeetingKey, now: float) -> None:
        m = self.context.meetings.get(mkey)
        if m is None:
            return
        for key in list(m.members):
            self.leave(key, now)
        if mkey in self.context.meetings:
            self._drop_meeting(mkey)
