"""Zoom event envelopes (already JSON-decoded) -> typed records. No dict travels past this module.

`decode` is total: any JSON value, at any depth and size, gives a record, an UnknownEvent or an
InvalidEvent, and never raises. A refused value drops only that value, a refused entry only that
entry; each is listed in the record's parse_errors as (field, reason), from the closed set
PARSE_ERRORS. An event carries at most one entry per QoS type (REFERENCE.md 1.6): further entries
are refused as `too_many_entries`, so one event cannot count as thousands.
"""

from __future__ import annotations

import sys
from typing import Any, Final

from qss_exporter.zoom import vocabulary as vocab
from qss_exporter.zoom.phone import decode_phone
from qss_exporter.zoom.records import (
    NO_IDENTITY,
    CpuUsage,
    InvalidEvent,
    MeetingEvent,
    ParseError,
    ParticipantIdentity,
    ParticipantInfo,
    Product,
    QosRecord,
    QualityGrade,
    Record,
    StreamSample,
    StreamSummary,
    SummaryRecord,
    UnknownEvent,
    UrlValidation,
)
from qss_exporter.zoom.values import (
    ID_MAX,
    INT_ID_LIMIT,
    MALFORMED,
    PARSE_ERRORS,
    QOS_MALFORMED,
    QOS_TOO_MANY,
    TOO_MANY_ENTRIES,
    UNPARSABLE,
    Fields,
    free_text,
    identifier,
    quantity,
    resolution_height,
    timestamp_text,
)

__all__ = ["CONTEXT_EVENTS", "EVENT_ENTRIES_MAX", "KNOWN_EVENTS", "PARSE_ERRORS", "decode", "decode_rest_summary"]

Decoded = Record | UrlValidation | UnknownEvent | InvalidEvent

_PRODUCTS: dict[str, Product] = {"meeting": "meeting", "webinar": "webinar", "session": "session"}

KNOWN_EVENTS = (
    "meeting.participant_qos",
    "meeting.participant_qos_summary",
    "meeting.participant_data",
    "meeting.participant_data_summary",
    "webinar.participant_qos",
    "webinar.participant_qos_summary",
    "webinar.participant_data",
    "webinar.participant_data_summary",
    "session.user_qos",
    "session.user_qos_summary",
    "session.user_data",
    "session.user_data_summary",
    "phone.call_qos",
    "phone.call_qos_summary",
)

# Ordinary (non-QSS) events an app may also subscribe to: meeting number, topic and exact leave times
# for detail mode. Everything works without them.
CONTEXT_EVENTS = (
    "meeting.started",
    "meeting.ended",
    "meeting.participant_joined",
    "meeting.participant_left",
    "webinar.started",
    "webinar.ended",
    "webinar.participant_joined",
    "webinar.participant_left",
    "session.started",
    "session.ended",
    "session.user_joined",
    "session.user_left",
)

# Bounds on what one event may carry, from what Zoom sends. A real-time `qos[]` has one entry per QoS
# type (24 types today, 23 in summaries, REFERENCE.md 1.6); the room above that is for types Zoom adds.
EVENT_ENTRIES_MAX: Final = 64
_DATA_ENTRIES_MAX = 8  # `data[]`: one element in all of Zoom's examples
_TOPIC_MAX = 200  # Zoom limits a meeting topic to 200 characters
_MEETING_NUMBER_MAX = 32


_DETAILS_MALFORMED: Final = ("details", MALFORMED)
_TYPE_MALFORMED: Final = ("type", MALFORMED)


def decode(envelope: object) -> Decoded:
    """Turn one decoded webhook / WebSocket body into a typed record."""
    if not isinstance(envelope, dict):
        return InvalidEvent("", "envelope")
    event = envelope.get("event")
    if not isinstance(event, str) or not event:
        return InvalidEvent("", "event")
    event = event[:ID_MAX]  # only ever compared with known names, or reported
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        return InvalidEvent(event, "payload")
    if event == "endpoint.url_validation":
        token = payload.get("plainToken")
        if not isinstance(token, str) or not token or len(token) > ID_MAX:
            return InvalidEvent(event, "plainToken")
        return UrlValidation(token)
    if event not in _KNOWN:
        return UnknownEvent(event)
    account_id = payload.get("account_id")
    if not isinstance(account_id, str) or not account_id:
        return InvalidEvent(event, "account_id")
    obj = payload.get("object")
    if not isinstance(obj, dict):
        return InvalidEvent(event, "object")
    raw_ts = envelope.get("event_ts")
    event_ts = raw_ts if raw_ts.__class__ is int and 0 < raw_ts < INT_ID_LIMIT else None
    kind = event.partition(".")[2]
    if event in _CONTEXT:
        return _context_event(event, kind, account_id, obj, event_ts)
    if event.startswith("phone."):
        return decode_phone(event, account_id, obj, event_ts)
    product = _PRODUCTS[event.partition(".")[0]]
    return _participant_event(event, kind, product, account_id, obj, event_ts)


_KNOWN = frozenset(KNOWN_EVENTS + CONTEXT_EVENTS)
_CONTEXT = frozenset(CONTEXT_EVENTS)
_STREAM_TYPES = vocab.STREAM_TYPES


def _participant_event(
    event: str, kind: str, product: Product, account_id: str, obj: dict[str, Any], event_ts: int | None
) -> Decoded:
    if product == "session":
        instance = obj.get("session_id")
        person = obj.get("user")
        id_keys: tuple[str, ...] = ("id",)
    else:
        instance = obj.get("uuid")
        person = obj.get("participant")
        # Real-time events call the per-instance id `user_id`, summaries and data `participant_id`.
        id_keys = ("user_id", "participant_id") if kind == "participant_qos" else ("participant_id", "user_id")
    if not isinstance(instance, str) or not instance or len(instance) > ID_MAX:
        return InvalidEvent(event, "session_id" if product == "session" else "uuid")
    if not isinstance(person, dict):
        return InvalidEvent(event, "user" if product == "session" else "participant")
    participant_id = _first_id(person, id_keys)
    if participant_id is None:
        return InvalidEvent(event, id_keys[0])
    # Interned, so that every table keyed by them shares one copy per participant, not one per event.
    instance, participant_id = sys.intern(instance), sys.intern(participant_id)
    event_time = event_ts / 1000.0 if event_ts is not None else None
    identity = _identity(person, product == "session")
    if kind.endswith(("_data", "_data_summary")):
        return _participant_info(
            event, product, account_id, instance, participant_id, person, event_ts, identity, _meeting_number(obj)
        )
    entries = person.get("qos")
    if not isinstance(entries, list):
        return InvalidEvent(event, "qos")
    if kind.endswith("_summary"):
        return _summary(
            event, product, account_id, instance, participant_id, event_time, entries, identity, _meeting_number(obj)
        )
    return _realtime(event, product, account_id, instance, participant_id, event_ts, entries, identity)


def _meeting_number(obj: dict[str, Any]) -> str:
    """`object.id`, a string or an integer ("" when absent, of another type, or longer than any meeting number)."""
    value = obj.get("id")
    if value.__class__ is int and 0 <= value < INT_ID_LIMIT:
        return str(value)
    text = free_text(value, _MEETING_NUMBER_MAX + 1)
    return text if len(text) <= _MEETING_NUMBER_MAX else ""


def _identity(person: dict[str, Any], session: bool) -> ParticipantIdentity:
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


def _first_id(person: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = identifier(person.get(key))
        if value is not None:
            return value
    return None


def _realtime(
    event: str,
    product: Product,
    account_id: str,
    instance: str,
    participant_id: str,
    event_ts: int | None,
    entries: list[Any],
    identity: ParticipantIdentity = NO_IDENTITY,
) -> QosRecord:
    errors: list[ParseError] = []
    streams: list[StreamSample] = []
    grades: list[QualityGrade] = []
    notifications: list[str] = []
    cpu: CpuUsage | None = None
    rssi: float | None = None
    latest = ""
    seen: dict[str, None] = {}  # the entry types, in Zoom's order
    for index, entry in enumerate(entries):
        if index == EVENT_ENTRIES_MAX:
            errors.extend([QOS_TOO_MANY] * (len(entries) - index))
            break
        if entry.__class__ is not dict:
            errors.append(QOS_MALFORMED)
            continue
        details = entry.get("details")
        kind = entry.get("type")
        if details.__class__ is not dict:
            errors.append(_DETAILS_MALFORMED)
            continue
        if kind.__class__ is not str:
            errors.append(_TYPE_MALFORMED)
            continue
        if kind in seen:
            errors.append(QOS_TOO_MANY)
            continue
        seen[kind] = None
        stamp = timestamp_text(entry.get("date_time"))
        if stamp > latest:
            latest = stamp
        stream = _STREAM_TYPES.get(kind)
        if stream is not None:
            bitrate = quantity(details, "bitrate", errors)
            latency = quantity(details, "latency", errors)
            jitter = quantity(details, "jitter", errors)
            avg_loss = quantity(details, "avg_loss", errors)
            max_loss = quantity(details, "max_loss", errors)
            frame_rate = quantity(details, "frame_rate", errors)
            height = resolution_height(details, errors)
            # Zoom reports inactive streams (camera off, nobody sharing) as "", as zeros or not at
            # all: a stream with no non-zero value is not a participant-minute of that media.
            if bitrate or latency or jitter or avg_loss or max_loss or frame_rate or height:
                streams.append(
                    StreamSample(
                        stream[0],
                        stream[1],
                        stream[2],
                        bitrate,
                        latency,
                        jitter,
                        avg_loss,
                        max_loss,
                        frame_rate,
                        height,
                    )
                )
            if "quality" not in details and "quality_score" not in details and "avg_rssi" not in details:
                continue
        fields = Fields(details, errors)
        if kind == "cpu_usage":
            cpu = _cpu(fields)
        elif kind == "notification":
            note = fields.text("network_notification")
            if note is not None:
                notifications.append(vocab.notification(note))
        # Zoom's own example puts quality and RSSI keys inside an audio_input entry, so these are
        # read from whatever entry carries them, attributed by the entry's type.
        if "quality" in details or "quality_score" in details:
            grade = _grade(kind, fields)
            if grade is not None:
                grades.append(grade)
        if "avg_rssi" in details:
            rssi = _rssi(fields)
    # The record's identity is its content (issue 12): Zoom may send a participant's minute as one event
    # per QoS type, all with the same event_ts and date_time. The entry types, the latest time and the
    # values read from the entries (normalised: "41 kbps" and "41kbps" are one value), in Zoom's order,
    # tell such events apart, while a redelivery or the same body over the WebSocket gives the same
    # key. event_ts only counts when no entry has a time: then it is all that tells two minutes of equal
    # values apart. A hash of a tuple: ~1.5 us, against ~5 us for an order-free one of frozensets.
    content = hash((tuple(seen), latest, tuple(streams), tuple(grades), cpu, rssi, tuple(notifications)))
    key = (event, account_id, instance, participant_id, content, 0 if latest else event_ts or 0)
    return QosRecord(
        event,
        account_id,
        product,
        instance,
        participant_id,
        event_ts / 1000.0 if event_ts is not None else None,
        key,
        tuple(streams),
        tuple(grades),
        cpu,
        rssi,
        tuple(notifications),
        tuple(errors),
        identity,
    )


def _cpu(fields: Fields) -> CpuUsage | None:
    usage = CpuUsage(
        fields.get("zoom_avg_cpu_usage"),
        fields.get("zoom_max_cpu_usage"),
        fields.get("system_max_cpu_usage"),
    )
    return usage if usage != _NO_CPU else None


_NO_CPU = CpuUsage(None, None, None)


def _grade(kind: str, fields: Fields) -> QualityGrade | None:
    media = vocab.media_of_type(kind)
    if media is None:
        return None
    raw_quality = fields.text("quality")
    quality = vocab.QUALITIES.get(raw_quality.lower()) if raw_quality is not None else None
    if raw_quality is not None and quality is None:
        fields.errors.append(("quality", UNPARSABLE))
    score = fields.get("quality_score")
    if quality is None and score is None:
        return None
    return QualityGrade(media, quality, score)


def _rssi(fields: Fields) -> float | None:
    unit = fields.text("rssi_unit")
    if unit is not None and unit.lower() != "dbm":
        fields.errors.append(("rssi_unit", UNPARSABLE))
        return None
    return fields.get("avg_rssi")


def _summary(
    event: str,
    product: Product,
    account_id: str,
    instance: str,
    participant_id: str,
    event_time: float | None,
    entries: list[Any],
    identity: ParticipantIdentity = NO_IDENTITY,
    meeting_number: str = "",
) -> SummaryRecord:
    errors: list[ParseError] = []
    streams: list[StreamSummary] = []
    grades: list[QualityGrade] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if index == EVENT_ENTRIES_MAX:
            errors.extend([QOS_TOO_MANY] * (len(entries) - index))
            break
        if entry.__class__ is not dict or entry.get("details").__class__ is not dict:
            errors.append(QOS_MALFORMED)
            continue
        kind = entry.get("type")
        if kind.__class__ is not str:
            errors.append(_TYPE_MALFORMED)
            continue
        if kind in seen:
            errors.append(QOS_TOO_MANY)
            continue
        seen.add(kind)
        details = entry["details"]
        fields = Fields(details, errors)
        stream = _STREAM_TYPES.get(kind)
        if stream is not None:
            summary = StreamSummary(
                stream[0],
                stream[1],
                stream[2],
                fields.get("avg_bitrate"),
                fields.get("max_bitrate"),
                fields.get("avg_latency"),
                fields.get("max_latency"),
                fields.get("avg_jitter"),
                fields.get("max_jitter"),
                fields.get("avg_loss"),
                fields.get("max_loss"),
            )
            if _summary_active(summary):
                streams.append(summary)
        if "quality" in details or "quality_score" in details:
            grade = _grade(kind, fields)
            if grade is not None:
                grades.append(grade)
    # A participant session has one summary, whichever way it arrives (webhook, WebSocket, REST).
    key = ("qos_summary", account_id, product, instance, participant_id)
    return SummaryRecord(
        event,
        account_id,
        product,
        instance,
        participant_id,
        event_time,
        key,
        tuple(streams),
        tuple(grades),
        tuple(errors),
        identity,
        meeting_number,
    )


_SUMMARY_EVENTS: dict[Product, str] = {
    "meeting": "meeting.participant_qos_summary",
    "webinar": "webinar.participant_qos_summary",
    "session": "session.user_qos_summary",
}


def decode_rest_summary(product: Product, account_id: str, instance: str, item: object) -> SummaryRecord | InvalidEvent:
    """One `participants[]` (meeting, webinar) or `users[]` (Video SDK) item of a REST `qos_summary` page.

    The record is the one the matching `*_qos_summary` event gives (same event name, same dedupe
    key), so a participant summarised by webhook and by poll is counted once. REST gives no time.
    """
    event = _SUMMARY_EVENTS[product]
    if not isinstance(item, dict):
        return InvalidEvent(event, "users" if product == "session" else "participants")
    # The per-instance id: `participant_id` in meeting and webinar lists, `id` in Video SDK lists.
    id_key = "id" if product == "session" else "participant_id"
    participant_id = _first_id(item, (id_key,))
    if participant_id is None:
        return InvalidEvent(event, id_key)
    entries = item.get("qos")
    if not isinstance(entries, list):
        return InvalidEvent(event, "qos")
    # The list items name people as the summary events do (`id`, `user_name`, `email`; Video SDK `name`,
    # `user_key`), so detail mode's allowlist matches polled sessions too.
    identity = _identity(item, product == "session")
    return _summary(
        event, product, account_id, sys.intern(instance), sys.intern(participant_id), None, entries, identity
    )


def _summary_active(summary: StreamSummary) -> bool:
    return any(
        (
            summary.avg_bitrate,
            summary.max_bitrate,
            summary.avg_latency,
            summary.max_latency,
            summary.avg_jitter,
            summary.max_jitter,
            summary.avg_loss,
            summary.max_loss,
        )
    )


_ADDRESS_KEYS = (
    "signaling_ip_address",
    "signaling_internal_ip_address",
    "audio_internal_ip_address",
    "video_internal_ip_address",
    "as_internal_ip_address",
)
_ADDRESS_MAX = 64  # an IPv6 address with a zone index fits


def _participant_info(
    event: str,
    product: Product,
    account_id: str,
    instance: str,
    participant_id: str,
    person: dict[str, Any],
    event_ts: int | None,
    identity: ParticipantIdentity = NO_IDENTITY,
    meeting_number: str = "",
) -> ParticipantInfo | InvalidEvent:
    entries = person.get("data")
    if not isinstance(entries, list):
        return InvalidEvent(event, "data")
    errors: list[ParseError] = []
    if len(entries) > _DATA_ENTRIES_MAX:
        errors.extend([("data", TOO_MANY_ENTRIES)] * (len(entries) - _DATA_ENTRIES_MAX))
    # Zoom's examples carry one element; if there are several, the last one is the latest state.
    data: dict[str, Any] = {}
    for entry in entries[:_DATA_ENTRIES_MAX]:
        if entry.__class__ is dict:
            data.update(entry)
        else:
            errors.append(("data", MALFORMED))
    addresses = tuple(
        dict.fromkeys(
            value.strip()
            for key in _ADDRESS_KEYS
            if isinstance(value := data.get(key), str) and 0 < len(value) <= _ADDRESS_MAX and value.strip()
        )
    )
    return ParticipantInfo(
        event,
        account_id,
        product,
        instance,
        participant_id,
        event_ts / 1000.0 if event_ts is not None else None,
        (event, account_id, instance, participant_id, event_ts or 0),
        vocab.network_type(data.get("network_type")),
        vocab.client_os(data.get("device")),
        vocab.client_version(data.get("version")),
        vocab.data_center(data.get("data_center")),
        addresses,
        event.endswith("_summary"),
        identity,
        meeting_number,
        tuple(errors),
    )


_CONTEXT_KINDS = {
    "started": "started",
    "ended": "ended",
    "participant_joined": "joined",
    "participant_left": "left",
    "user_joined": "joined",
    "user_left": "left",
}


def _context_event(event: str, kind: str, account_id: str, obj: dict[str, Any], event_ts: int | None) -> Decoded:
    product = _PRODUCTS[event.partition(".")[0]]
    session = product == "session"
    instance = obj.get("session_id" if session else "uuid")
    if not isinstance(instance, str) or not instance or len(instance) > ID_MAX:
        return InvalidEvent(event, "session_id" if session else "uuid")
    what = _CONTEXT_KINDS[kind]
    participant_id, identity = "", NO_IDENTITY
    if what in ("joined", "left"):
        person = obj.get("user" if session else "participant")
        if not isinstance(person, dict):
            return InvalidEvent(event, "user" if session else "participant")
        # Meeting events call the per-instance participant id `user_id` (and the account user `id`).
        key = "id" if session else "user_id"
        found = _first_id(person, (key,))
        if found is None:
            return InvalidEvent(event, key)
        participant_id = sys.intern(found)
        if session:
            identity = _identity(person, True)
        else:
            account_user = person.get("id") or person.get("participant_user_id")
            identity = _identity(
                {"id": account_user, "email": person.get("email"), "user_name": person.get("user_name")}, False
            )
    return MeetingEvent(
        event,
        account_id,
        product,
        sys.intern(instance),
        what,  # type: ignore[arg-type]  # one of the four kinds by construction
        participant_id,
        event_ts / 1000.0 if event_ts is not None else None,
        (event, account_id, instance, participant_id, event_ts or 0),
        "" if session else _meeting_number(obj),
        free_text(obj.get("session_name" if session else "topic"), _TOPIC_MAX),
        identity,
    )
