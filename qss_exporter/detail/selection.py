"""Who detail mode shows: the allowlist, the worst-N ranking (on its own timer), and the cap on series.

A participant or meeting is admitted only if all its series fit under `max_series`; what does not
fit is refused whole and counted per attempt. The ranking runs every `interval` seconds from a
timer (DetailTracker.run), never from a record: a burst's first record must not pick the "worst"
from whoever happened to arrive first.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from qss_exporter.detail.tables import MEETING_SERIES, DetailSettings, Key, Meeting, MeetingKey, Participant, Values
from qss_exporter.identity import HashedLabels, lookup
from qss_exporter.zoom.records import ParticipantIdentity

__all__ = ["SCORES", "Selection"]

# Each score is "higher is worse" so that ranking is one `nlargest`: the highest value of one stream
# value (index into Values) over a media's streams, or 5 - the lowest Zoom quality score over media.
SCORES: dict[str, tuple[str, int] | None] = {
    "audio_loss": ("audio", 2),
    "video_loss": ("video", 2),
    "audio_latency": ("audio", 0),
    "audio_jitter": ("audio", 1),
    "quality": None,
}


class Selection:
    """The allowlist's verdicts, the current worst-N picks, the ranking's schedule and the series cap."""

    def __init__(self, settings: DetailSettings, label: HashedLabels) -> None:
        self.settings = settings
        self._label = label
        self._allow = frozenset(
            entry[len("hmac:") :] if entry.startswith("hmac:") else lookup(settings.key, entry)
            for entry in settings.allowlist
        )
        # Meetings' aggregates and the worst-N ranking need every participant; an allowlist alone does not.
        self.ranks = bool(settings.worst_participants or settings.worst_meetings)
        self._score_media, self._score_index = SCORES[settings.score] or ("", -1)
        self.verdicts: dict[tuple[str, str], bool] = {}  # allowlist answers, forgotten at each housekeeping
        self.worst: set[Key] = set()
        self.worst_meetings: set[MeetingKey] = set()
        self.next_evaluation = float("-inf")
        self.series = 0  # exposed (reserved) detail series
        self.refused = {"participant": 0, "meeting": 0}

    # -------------------------------------------------------------------------------- allowlist

    def allowed(self, identity: ParticipantIdentity) -> bool:
        if not self._allow:
            return False
        # With an allowlist alone, everyone else is not tracked and asks again each minute: remember the
        # answer (until the next housekeeping) instead of computing two HMACs per event.
        ids = (identity.user_id, identity.email)
        verdict = self.verdicts.get(ids)
        if verdict is None:
            verdict = self.verdicts[ids] = any(value and self._label(value) in self._allow for value in ids)
        return verdict

    def forget_verdicts(self) -> None:
        self.verdicts.clear()

    # ---------------------------------------------------------------------------------- scoring

    def score(self, streams: Mapping[tuple[str, str, str], Values], quality_scores: list[float]) -> float | None:
        """A participant's ranking score from their latest record (higher is worse; None: not rankable)."""
        index = self._score_index
        if index < 0:
            return 5.0 - min(quality_scores) if quality_scores else None
        values = [v[index] for (media, _, _), v in streams.items() if media == self._score_media]
        present = [value for value in values if value is not None]
        return max(present) if present else None

    # ---------------------------------------------------------------------------------- the cap

    @staticmethod
    def _count(p: Participant) -> int:
        streams = sum(value is not None for values in p.streams.values() for value in values)
        return streams + sum(value is not None for values in p.grades.values() for value in values)

    def admit(self, p: Participant) -> None:
        count = self._count(p)
        if self.series + count > self.settings.max_series:
            self.refused["participant"] += count
            return
        p.admitted, p.series = True, count
        self.series += count

    def resize(self, p: Participant) -> None:
        """A selected participant's new record may hold more streams: it stays only if the cap allows."""
        count = self._count(p)
        if self.series - p.series + count > self.settings.max_series:
            self.release(p)
            self.refused["participant"] += count
            return
        self.series += count - p.series
        p.series = count

    def release(self, p: Participant) -> None:
        if p.admitted:
            self.series -= p.series
            p.admitted, p.series = False, 0

    def forget(self, key: Key, p: Participant) -> None:
        """The participant left or went quiet."""
        self.release(p)
        self.worst.discard(key)

    def forget_meeting(self, mkey: MeetingKey, m: Meeting) -> None:
        if m.admitted:
            m.admitted = False
            self.series -= MEETING_SERIES
        self.worst_meetings.discard(mkey)

    def shrink(self) -> None:
        # A set never shrinks by deleting entries; clearing an emptied one frees its table.
        for table in (self.worst, self.worst_meetings):
            if not table:
                table.clear()

    # ---------------------------------------------------------------------------------- ranking

    def due_in(self, now: float) -> float:
        """Seconds until the next ranking is due (0 when it is due now)."""
        return max(0.0, self.next_evaluation - now)

    def evaluate(
        self, now: float, participants: Mapping[Key, Participant], meetings: Mapping[MeetingKey, Meeting]
    ) -> None:
        """Re-rank the worst participants and meetings (every `interval`).

        Last round's picks are released first and the new ones admitted worst first (participants, then
        meetings), so that under the cap the worst win over whoever was picked earlier; no scrape can
        see the gap in between, since all of it runs in one step of the event loop.
        """
        settings = self.settings
        self.next_evaluation = now + settings.interval
        cutoff = now - settings.window
        for key in self.worst:
            p = participants.get(key)
            if p is not None:
                p.worst = False
                if not p.allowed:
                    self.release(p)
        for mkey in self.worst_meetings:
            meeting = meetings.get(mkey)
            if meeting is not None and meeting.admitted:
                meeting.admitted = False
                self.series -= MEETING_SERIES
        chosen: list[Key] = []
        if settings.worst_participants:
            candidates = (
                (p.score, key)
                for key, p in participants.items()
                if p.score is not None and p.score > 0 and p.seen >= cutoff
            )
            chosen = [key for _, key in heapq.nlargest(settings.worst_participants, candidates)]
        self.worst = set(chosen)
        for key in chosen:
            p = participants[key]
            p.worst = True
            if not p.admitted:
                self.admit(p)
        chosen_meetings: list[MeetingKey] = []
        if settings.worst_meetings:
            scored = []
            for mkey, m in meetings.items():
                scores = [p.score for p in m.members.values() if p.score is not None and p.seen >= cutoff]
                if scores and sum(scores) > 0:
                    scored.append((sum(scores) / len(scores), mkey))
            chosen_meetings = [mkey for _, mkey in heapq.nlargest(settings.worst_meetings, scored)]
        self.worst_meetings = set(chosen_meetings)
        for mkey in chosen_meetings:
            meeting = meetings[mkey]
            if self.series + MEETING_SERIES > settings.max_series:
                self.refused["meeting"] += MEETING_SERIES
            else:
                meeting.admitted = True
                self.series += MEETING_SERIES
