"""Zoom event envelopes (already JSON-decoded) -> typed records. No dict travels past this module.

`decode` is total: any JSON value, at any depth and size, gives a record, an UnknownEvent or an
InvalidEvent, and never raises. A refused value drops only that value, a refused entry only that
entry; each is listed in the record's parse_errors as (field, reason), from the closed set
PARSE_ERRORS. An event carries at most one entry per QoS type (REFERENCE.md 1.6): further entries
are refused as `too_many_entries`, so one event cannot count as thousands.
"""

from __future__ import annotations

import sys
from typing import Any

from qss_exporter.zoom import entries as parts
from qss_exporter.zoom import measured
from qss_exporter.zoom import vocabulary as vocab
from qss_exporter.zoom.entries import EVENT_ENTRIES_MAX
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
    UnknownEvent,
    UrlValidation,
)
from qss_exporter.zoom.summaries import decode_rest_summary, session_match, summary
from qss_exporter.zoom.values import (
    ID_MAX,
    INT_ID_LIMIT,
    MALFORMED,
    PARSE_ERRORS,
    QOS_MALFORMED,
    QOS_TOO_MANY,
    TOO_MANY_ENTRIES,
    Fields,
    free_text,
    quantity,
    resolution_height,
    timestamp_seconds,
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

_DATA_ENTRIES_MAX = 8  # `data[]`: one element in all of Zoom's examples
_TOPIC_MAX = 200  # Zoom limits a meeting topic to 200 characters


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
    # Interned like the instance and participant ids: the per-participant tables (dedupe, enrichment) key
    # on it, and would otherwise each hold the first event's copy of it, ~70 bytes per participant.
    account_id = sys.intern(account_id)
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
    participant_id = parts.first_id(person, id_keys)
    if participant_id is None:
        return InvalidEvent(event, id_keys[0])
    # Interned, so that every table keyed by them shares one copy per participant, not one per event.
    instance, participant_id = sys.intern(instance), sys.intern(participant_id)
    event_time = event_ts / 1000.0 if event_ts is not None else None
    identity = parts.identity(person, product == "session")
    if kind.endswith(("_data", "_data_summary")):
        return _participant_info(
            event, product, account_id, instance, participant_id, person, event_ts, identity, parts.meeting_number(obj)
        )
    entries = person.get("qos")
    if not isinstance(entries, list):
        return InvalidEvent(event, "qos")
    if kind.endswith("_summary"):
        return summary(
            event,
            product,
            account_id,
            instance,
            participant_id,
            event_time,
            entries,
            identity,
            parts.meeting_number(obj),
            session_match(person) if product == "session" else "",
        )
    return _realtime(event, product, account_id, instance, participant_id, event_ts, entries, identity)


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
    unmeasured: list[str] = []
    streams: list[StreamSample] = []
    grades: list[QualityGrade] = []
    notifications: list[str] = []
    cpu: CpuUsage | None = None
    rssi: float | None = None
    latest = ""
    seen: dict[str, None] = {}  # the entry types, in Zoom's order
    for index, entry in enumerate(entries):
        if index == parts.EVENT_ENTRIES_MAX:
            errors.extend([QOS_TOO_MANY] * (len(entries) - index))
            break
        if entry.__class__ is not dict:
            errors.append(QOS_MALFORMED)
            continue
        details = entry.get("details")
        kind = entry.get("type")
        if details.__class__ is not dict:
            errors.append(parts.DETAILS_MALFORMED)
            continue
        if kind.__class__ is not str:
            errors.append(parts.TYPE_MALFORMED)
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
                if 0.0 in (bitrate, latency, jitter, frame_rate, height):  # some zero: which are measurements?
                    bitrate, latency, jitter, frame_rate, height = measured.stream(
                        bitrate, latency, jitter, frame_rate, height, unmeasured
                    )
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
            cpu = parts.cpu(fields, unmeasured)
        elif kind == "notification":
            note = fields.text("network_notification")
            if note is not None:
                notifications.append(vocab.notification(note))
        # Zoom's own example puts quality and RSSI keys inside an audio_input entry, so these are
        # read from whatever entry carries them, attributed by the entry's type.
        if "quality" in details or "quality_score" in details:
            grade = parts.grade(kind, fields, unmeasured)
            if grade is not None:
                grades.append(grade)
        if "avg_rssi" in details:
            rssi = parts.rssi(fields, unmeasured)
    return realtime_record(
        event, product, account_id, instance, participant_id, event_ts, identity,
        seen, latest, streams, grades, cpu, rssi, notifications, errors, unmeasured,
    )  # fmt: skip


def realtime_record(
    event: str,
    product: Product,
    account_id: str,
    instance: str,
    participant_id: str,
    event_ts: int | None,
    identity: ParticipantIdentity,
    seen: dict[str, None],
    latest: str,
    streams: list[StreamSample],
    grades: list[QualityGrade],
    cpu: CpuUsage | None,
    rssi: float | None,
    notifications: list[str],
    errors: list[ParseError],
    unmeasured: list[str],
) -> QosRecord:
    """A real-time QoS record from what an event's entries gave: the one builder of both decoders
    (here and zoom/typed.py), so that their records and dedupe keys cannot drift apart."""
    # The record's identity is its content (issue 12): Zoom may send a participant's minute as one event
    # per QoS type, all with the same event_ts and date_time. The entry types, the latest time and the
    # values read from the entries (normalised: "41 kbps" and "41kbps" are one value), in Zoom's order,
    # tell such events apart, while a redelivery or the same body over the WebSocket gives the same
    # key. event_ts only counts when no entry has a time: then it is all that tells two minutes of equal
    # values apart. The content itself, not Python's `hash` of it: that is salted per process, and the
    # dedupe history digests the whole key the same way in every process (dedupe.digest), so that it
    # survives a restart (issue 13).
    stream_values, grade_values, note_values = tuple(streams), tuple(grades), tuple(notifications)
    content = (tuple(seen), latest, stream_values, grade_values, cpu, rssi, note_values)
    key = (event, account_id, instance, participant_id, content, 0 if latest else event_ts or 0)
    event_time = event_ts / 1000.0 if event_ts is not None else None
    return QosRecord(
        event,
        account_id,
        product,
        instance,
        participant_id,
        event_time,
        key,
        stream_values,
        grade_values,
        cpu,
        rssi,
        note_values,
        tuple(errors),
        identity,
        tuple(unmeasured),
        event_time if event_time is not None else timestamp_seconds(latest) if latest else None,
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
        found = parts.first_id(person, (key,))
        if found is None:
            return InvalidEvent(event, key)
        participant_id = sys.intern(found)
        if session:
            identity = parts.identity(person, True)
        else:
            account_user = person.get("id") or person.get("participant_user_id")
            identity = parts.identity(
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
        "" if session else parts.meeting_number(obj),
        free_text(obj.get("session_name" if session else "topic"), _TOPIC_MAX),
        identity,
    )
