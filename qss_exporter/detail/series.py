"""The detail families: computed from detail mode's tables at each scrape or OTLP export, never stored.

Only admitted participants and meetings are rendered, and only while active (a record within the
activity window), so a series is gone as soon as its participant leaves or falls quiet. Sample:

    zoom_qss_participant_packet_loss_ratio{account="acme",product="meeting",meeting="3f9c0e6d1a2b4c5d",
        participant="9a41c2e07b3d5f18",media="audio",direction="input",path="client"} 0.05
    zoom_qss_meeting_participants{account="acme",product="meeting",meeting="3f9c0e6d1a2b4c5d"} 6
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from qss_exporter.detail.selection import Selection
from qss_exporter.detail.tables import MEDIA, DetailSettings, Key, Meeting, MeetingKey, Participant
from qss_exporter.store import Sample, Store

__all__ = ["DetailSeries"]

_STREAM_FAMILIES = (
    ("latency_seconds", "latency", 0),
    ("jitter_seconds", "jitter", 1),
    ("packet_loss_ratio", "average packet loss (ratio 0-1)", 2),
    ("bitrate_bytes_per_second", "bitrate", 3),
)


class DetailSeries:
    """Renders the detail tables (shared, read-only here) as callback families of a store."""

    def __init__(
        self,
        settings: DetailSettings,
        participants: Mapping[Key, Participant],
        meetings: Mapping[MeetingKey, Meeting],
        selection: Selection,
    ) -> None:
        self.settings = settings
        self._participants = participants
        self._meetings = meetings
        self._selection = selection

    def register(self, store: Store, clock: Callable[[], float]) -> None:
        """The detail families (callbacks: computed from the tables at each scrape or export)."""
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
        selection = self._selection
        store.callback(
            "zoom_qss_detail_series",
            "Detail series exposed (a meeting reserves 13), held under detail.max_series.",
            (),
            lambda: [Sample((), float(selection.series))],
            capped=False,
        )
        store.callback(
            "zoom_qss_detail_series_refused_total",
            "Detail series the cap detail.max_series refused, by kind (participant or meeting), per attempt.",
            ("kind",),
            lambda: [Sample((kind,), float(n)) for kind, n in selection.refused.items()],
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

    def _plain(self, m: Meeting, p: Participant | None) -> tuple[str, ...]:
        s = self.settings
        values: list[str] = []
        if s.plain_meeting_number:
            values.append(m.number)
        if s.plain_topic:
            values.append(m.topic)
        if p is not None and s.plain_participant_name:
            values.append(p.name)
        return tuple(values)

    def _exposed(self, now: float) -> Iterator[tuple[Key, Participant]]:
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
