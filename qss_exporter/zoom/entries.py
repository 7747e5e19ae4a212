"""The pieces that real-time and summary events share: a person's ids and identity, and what a `qos[]`
entry other than a media stream carries (Zoom's grade, client CPU, Wi-Fi RSSI).

The events themselves are read by zoom/events.py (real time, data, context) and zoom/summaries.py.
"""

from __future__ import annotations

from typing import Any, Final

from qss_exporter.zoom import measured
from qss_exporter.zoom import vocabulary as vocab
from qss_exporter.zoom.records import NO_IDENTITY, CpuUsage, ParticipantIdentity, QualityGrade
from qss_exporter.zoom.values import INT_ID_LIMIT, MALFORMED, UNPARSABLE, Fields, free_text, identifier

__all__ = [
    "DETAILS_MALFORMED",
    "EVENT_ENTRIES_MAX",
    "TYPE_MALFORMED",
    "cpu",
    "first_id",
    "grade",
    "identity",
    "meeting_number",
    "rssi",
]

# Bounds on what one event may carry, from what Zoom sends. A real-time `qos[]` has one entry per QoS
# type (24 types today, 23 in summaries, REFERENCE.md 1.6); the room above that is for types Zoom adds.
EVENT_ENTRIES_MAX: Final = 64
_MEETING_NUMBER_MAX = 32

DETAILS_MALFORMED: Final = ("details", MALFORMED)
TYPE_MALFORMED: Final = ("type", MALFORMED)


def meeting_number(obj: dict[str, Any]) -> str:
    """`object.id`, a string or an integer ("" when absent, of another type, or longer than any meeting number)."""
    value = obj.get("id")
    if value.__class__ is int and 0 <= value < INT_ID_LIMIT:
        return str(value)
    text = free_text(value, _MEETING_NUMBER_MAX + 1)
    return text if len(text) <= _MEETING_NUMBER_MAX else ""


def identity(person: dict[str, Any], session: bool) -> ParticipantIdentity:
    """Who the participant is. Video SDK users have no account id or email: `user_key` is the app's own id."""
    user_id: Any
    email: Any
    name: Any
    if session:
        user_id, email, name = person.get("user_key"), "", person.get("name")
    else:
        user_id = person.get("participant_user_id") or person.get("id")
        email, name = person.get("email"), person.get("user_name")
    if not (user_id or email or name):
        return NO_IDENTITY
    # tuple.__new__ skips the NamedTuple's Python-level __new__: a third of this function's cost, which
    # every real-time event pays whether detail mode is on or not.
    return _new_tuple(ParticipantIdentity, (free_text(user_id), free_text(email), free_text(name)))


_new_tuple = tuple.__new__


def first_id(person: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of `keys` that holds a usable id."""
    for key in keys:
        value = identifier(person.get(key))
        if value is not None:
            return value
    return None


def cpu(fields: Fields, unmeasured: list[str]) -> CpuUsage | None:
    usage = CpuUsage(
        fields.get("zoom_avg_cpu_usage"),
        fields.get("zoom_max_cpu_usage"),
        fields.get("system_max_cpu_usage"),
    )
    if 0.0 in usage:
        usage = measured.cpu(usage, unmeasured)
    return usage if usage != _NO_CPU else None


_NO_CPU = CpuUsage(None, None, None)


def grade(kind: str, fields: Fields, unmeasured: list[str]) -> QualityGrade | None:
    """Zoom's grade of the media `kind` speaks about (`audio_quality`, or the keys inside `audio_input`)."""
    media = vocab.media_of_type(kind)
    if media is None:
        return None
    raw_quality = fields.text("quality")
    quality = vocab.QUALITIES.get(raw_quality.lower()) if raw_quality is not None else None
    if raw_quality is not None and quality is None:
        fields.errors.append(("quality", UNPARSABLE))
    score = measured.score(fields.get("quality_score"), unmeasured)
    if quality is None and score is None:
        return None
    return QualityGrade(media, quality, score)


def rssi(fields: Fields, unmeasured: list[str]) -> float | None:
    unit = fields.text("rssi_unit")
    if unit is not None and unit.lower() != "dbm":
        fields.errors.append(("rssi_unit", UNPARSABLE))
        return None
    return measured.rssi(fields.get("avg_rssi"), unmeasured)
