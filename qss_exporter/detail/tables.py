"""What detail mode holds: its settings, and one entry per tracked participant and meeting."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "GRADE_VALUES",
    "MEDIA",
    "MEETING_SERIES",
    "DetailSettings",
    "Key",
    "Meeting",
    "MeetingKey",
    "Participant",
    "Values",
]

Key = tuple[str, str, str, str]  # account label, product, instance, per-instance participant id
MeetingKey = tuple[str, str, str]  # account label, product, instance
Values = tuple[float | None, float | None, float | None, float | None]  # latency, jitter, loss, bitrate

# Zoom's grade as a number, so that dashboards can colour and sort it: higher is better.
GRADE_VALUES = {"good": 4.0, "fair": 3.0, "poor": 2.0, "bad": 1.0}
MEDIA = ("audio", "video", "share")
# A meeting's series: participants now, and four aggregates per media. Reserved whole under the cap.
MEETING_SERIES = 1 + 4 * len(MEDIA)


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


class Participant:
    """A tracked participant: their latest one-minute values, their label, and whether they are shown."""

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

    def __init__(self, meeting: Meeting, allowed: bool, name: str, seen: float) -> None:
        self.meeting = meeting
        self.allowed = allowed
        self.worst = False
        self.admitted = False  # its series are exposed (and counted under the cap)
        self.series = 0
        self.label = ""
        self.name = name
        self.seen = seen
        self.streams: dict[tuple[str, str, str], Values] = {}
        self.grades: dict[str, tuple[float | None, float | None]] = {}  # media -> (grade value, Zoom score)
        self.score: float | None = None


class Meeting:
    """A meeting, webinar or Video SDK session that detail mode knows of, with its tracked members."""

    __slots__ = ("admitted", "instance", "label", "labels", "members", "names", "number", "seen", "topic")

    def __init__(self, instance: str, label: str, seen: float) -> None:
        self.instance = instance
        self.label = label  # the hash of the meeting number once known, else of the instance
        self.members: dict[Key, Participant] = {}
        self.labels: dict[str, Key] = {}  # participant label -> member, to keep labels unique per meeting
        self.names: dict[str, str] = {}  # per-instance id -> display name from joined events (opted in only)
        self.number = ""
        self.topic = ""
        self.seen = seen
        self.admitted = False
