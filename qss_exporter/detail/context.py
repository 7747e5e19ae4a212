"""What detail mode knows of each meeting: its number, topic and joined names, and when it is forgotten.

Meetings come into the table with their first tracked participant or with a context event
(`meeting.started`, `meeting.participant_joined` ... see docs/detail.md); their label is the keyed
hash of the meeting number once known, else of the instance. A meeting known only from context
events is forgotten after CONTEXT_TTL_SECONDS without a QoS record or a member.
"""

from __future__ import annotations

from collections.abc import Iterator

from qss_exporter.detail.tables import Meeting, MeetingKey
from qss_exporter.identity import HashedLabels
from qss_exporter.zoom.records import MeetingEvent

__all__ = ["CONTEXT_TTL_SECONDS", "MeetingContext"]

# A meeting seen only through context events (started, joined) is forgotten after this long without
# a QoS record or a member; ended meetings go at once.
CONTEXT_TTL_SECONDS = 3600.0


class MeetingContext:
    """The meetings table: created on first sight, told numbers, topics and names, aged out when empty."""

    def __init__(self, label: HashedLabels, window: float, participant_names: bool) -> None:
        self._label = label
        self._window = window
        self._names = participant_names  # detail.plain.participant_name: keep names from joined events
        self.meetings: dict[MeetingKey, Meeting] = {}

    def meeting(self, mkey: MeetingKey, at: float) -> Meeting:
        """The meeting of `mkey`, created (labelled by its instance) on first sight."""
        m = self.meetings.get(mkey)
        if m is None:
            m = self.meetings[mkey] = Meeting(mkey[2], self._label(mkey[2]), at)
        return m

    def on_event(self, record: MeetingEvent, mkey: MeetingKey, now: float) -> None:
        """started / joined and their equivalents: the meeting's number and topic, a participant's name."""
        m = self.meeting(mkey, now)
        self.note_number(m, record.meeting_number)
        m.topic = record.topic or m.topic
        m.seen = max(m.seen, now)
        name = record.identity.name
        if record.kind == "joined" and name and self._names:
            member = m.members.get((*mkey, record.participant_id))
            if member is not None:
                member.name = name
            else:
                m.names[record.participant_id] = name

    def note_number(self, m: Meeting | None, number: str) -> None:
        """A meeting number (from a summary, a data event or a context event) relabels the meeting once."""
        if m is not None and number and number != m.number:
            m.number = number
            m.label = self._label(number)

    def forgettable(self, m: Meeting) -> bool:
        """A meeting left empty with nothing to remember about it goes at once."""
        return not m.members and not (m.number or m.topic)

    def stale(self, now: float) -> Iterator[MeetingKey]:
        """Empty meetings without a record or a member for the context TTL (or the activity window)."""
        cutoff = now - max(self._window, CONTEXT_TTL_SECONDS)
        return iter([mkey for mkey, m in self.meetings.items() if not m.members and m.seen < cutoff])
