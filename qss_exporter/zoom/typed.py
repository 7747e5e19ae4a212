"""The fast path from a webhook body to a record: real-time QoS events decoded into typed structs in C.

`decode_body` is what the webhook calls. Zoom's common case (a `*.participant_qos` / `user_qos`
event whose values are strings, numbers or null) is decoded by msgspec straight into the structs
below, with its shape validated in C, and read into a QosRecord by `_record`, which mirrors
zoom/events.py `_realtime` step for step over attributes instead of dict lookups. Anything else
(another event, a value of another type, a nested `quality`, a missing id, more entries than Zoom
sends, an integer past 64 bits, a duplicated `event` key) is left to the tolerant decoder for the
whole event: `decode(orjson.loads(body))`, so that the two paths never disagree
(tests/test_typed_decoder.py checks them record for record). Both read every value through the same
functions of zoom/values.py, so unit strings are still parsed once each.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any, Final

import msgspec
import orjson
from msgspec import UNSET, Meta, Struct, UnsetType

from qss_exporter.zoom import entries as parts
from qss_exporter.zoom import measured
from qss_exporter.zoom import vocabulary as vocab
from qss_exporter.zoom.events import Decoded, decode, realtime_record
from qss_exporter.zoom.records import (
    NO_IDENTITY,
    CpuUsage,
    ParseError,
    ParticipantIdentity,
    Product,
    QosRecord,
    QualityGrade,
    StreamSample,
)
from qss_exporter.zoom.values import (
    ID_MAX,
    INT_ID_LIMIT,
    QOS_TOO_MANY,
    UNPARSABLE,
    free_text,
    height_of,
    identifier,
    parse_cache,
    text_of,
    value_of,
)

__all__ = ["decode_body", "decode_typed"]

# orjson reads an integer past 64 bits as a float, msgspec as an int: such a body takes the fallback.
_Int = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
_Value = str | _Int | float | None
_Present = str | _Int | float | None | UnsetType  # a key whose presence, not only its value, matters


class _Details(Struct):
    """The `details` keys a real-time entry is read for; other keys are skipped in C."""

    bitrate: _Value = None
    latency: _Value = None
    jitter: _Value = None
    avg_loss: _Value = None
    max_loss: _Value = None
    frame_rate: _Value = None
    resolution: _Value = None
    zoom_avg_cpu_usage: _Value = None
    zoom_max_cpu_usage: _Value = None
    system_max_cpu_usage: _Value = None
    network_notification: _Value = None
    rssi_unit: _Value = None
    quality: _Present = UNSET
    quality_score: _Present = UNSET
    avg_rssi: _Present = UNSET


class _Entry(Struct):
    type: str
    details: _Details
    date_time: _Value = None


class _Person(Struct):
    qos: list[_Entry]
    user_id: _Value = None
    participant_id: _Value = None
    id: _Value = None
    participant_user_id: _Value = None
    email: _Value = None
    user_name: _Value = None
    user_key: _Value = None
    name: _Value = None


class _MeetingObject(Struct):
    uuid: str
    participant: _Person


class _SessionObject(Struct):
    session_id: str
    user: _Person


class _MeetingPayload(Struct):
    account_id: str
    object: _MeetingObject


class _SessionPayload(Struct):
    account_id: str
    object: _SessionObject


class _MeetingQos(Struct, tag_field="event", tag="meeting.participant_qos"):
    payload: _MeetingPayload
    event_ts: _Value = None


class _WebinarQos(Struct, tag_field="event", tag="webinar.participant_qos"):
    payload: _MeetingPayload
    event_ts: _Value = None


class _SessionQos(Struct, tag_field="event", tag="session.user_qos"):
    payload: _SessionPayload
    event_ts: _Value = None


_DECODER: Final = msgspec.json.Decoder(_MeetingQos | _WebinarQos | _SessionQos)
_STREAM_TYPES = vocab.STREAM_TYPES
_EVENT_ENTRIES_MAX = parts.EVENT_ENTRIES_MAX
_STAMP_MAX = 40  # as zoom/values.py timestamp_text
_new_tuple = tuple.__new__
_Lookup = Callable[[Any], Any]  # a parse cache's `get`: raw value -> float, None, a reason, or None when absent
_bitrate: _Lookup = parse_cache("bitrate").get
_latency: _Lookup = parse_cache("latency").get
_jitter: _Lookup = parse_cache("jitter").get
_avg_loss: _Lookup = parse_cache("avg_loss").get
_max_loss: _Lookup = parse_cache("max_loss").get
_frame_rate: _Lookup = parse_cache("frame_rate").get
_height: _Lookup = parse_cache("resolution").get
_ratio: _Lookup = parse_cache("zoom_avg_cpu_usage").get  # the three CPU fields share one (unit, range)
_score: _Lookup = parse_cache("quality_score").get
_dbm: _Lookup = parse_cache("avg_rssi").get
_QUALITIES = vocab.QUALITIES
_MEDIA_OF_TYPE = vocab.MEDIA_OF_TYPE
_NO_CPU = CpuUsage(None, None, None)


def decode_body(body: bytes) -> Decoded:
    """A webhook body as a record; raises orjson.JSONDecodeError when it is not JSON at all."""
    record = decode_typed(body)
    return record if record is not None else decode(orjson.loads(body))


def decode_typed(body: bytes) -> QosRecord | None:
    """The fast path alone: the record, or None when the tolerant decoder must decide."""
    # msgspec skips the values of keys it is not asked for without checking their UTF-8, where orjson
    # refuses the whole body: the check is ours (found by tests/zoom/test_typed.py). ASCII, the common
    # case, is told in one pass in C.
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError:
            return None
    try:
        event = _DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):  # not JSON, another event, a shape only the fallback reads
        return None  # (msgspec refuses nesting past a few hundred levels as RecursionError, orjson past 1024)
    payload = event.payload
    if event.__class__ is _SessionQos:
        return _session(event.event_ts, payload.account_id, payload.object)
    product: Product = "meeting" if event.__class__ is _MeetingQos else "webinar"
    return _meeting(product, event.event_ts, payload.account_id, payload.object)


def _meeting(product: Product, event_ts: _Value, account_id: str, obj: _MeetingObject) -> QosRecord | None:
    person = obj.participant
    # As events.py: real-time meeting events call the per-instance id `user_id`.
    participant_id = identifier(person.user_id)
    if participant_id is None:
        participant_id = identifier(person.participant_id)
    user_id = person.participant_user_id or person.id
    email, name = person.email, person.user_name
    identity = (
        _new_tuple(ParticipantIdentity, (free_text(user_id), free_text(email), free_text(name)))
        if user_id or email or name
        else NO_IDENTITY
    )
    event = "meeting.participant_qos" if product == "meeting" else "webinar.participant_qos"
    return _record(event, product, account_id, obj.uuid, participant_id, event_ts, person.qos, identity)


def _session(event_ts: _Value, account_id: str, obj: _SessionObject) -> QosRecord | None:
    person = obj.user
    user_id, name = person.user_key, person.name
    identity = (
        _new_tuple(ParticipantIdentity, (free_text(user_id), "", free_text(name))) if user_id or name else NO_IDENTITY
    )
    participant_id = identifier(person.id)
    return _record(
        "session.user_qos", "session", account_id, obj.session_id, participant_id, event_ts, person.qos, identity
    )


# zoom/entries.py cpu, grade and rssi over a `_Details` struct, with the parse caches read inline.


def _cpu(details: _Details, errors: list[ParseError], unmeasured: list[str]) -> CpuUsage | None:
    raw = details.zoom_avg_cpu_usage
    zoom_avg = _ratio(raw)
    if zoom_avg.__class__ is not float and raw is not None:
        zoom_avg = value_of(raw, "zoom_avg_cpu_usage", errors)
    raw = details.zoom_max_cpu_usage
    zoom_max = _ratio(raw)
    if zoom_max.__class__ is not float and raw is not None:
        zoom_max = value_of(raw, "zoom_max_cpu_usage", errors)
    raw = details.system_max_cpu_usage
    system_max = _ratio(raw)
    if system_max.__class__ is not float and raw is not None:
        system_max = value_of(raw, "system_max_cpu_usage", errors)
    usage = CpuUsage(zoom_avg, zoom_max, system_max)
    if 0.0 in usage:
        usage = measured.cpu(usage, unmeasured)
    return usage if usage != _NO_CPU else None


def _grade(kind: str, details: _Details, errors: list[ParseError], unmeasured: list[str]) -> QualityGrade | None:
    media = _MEDIA_OF_TYPE.get(kind)
    if media is None:
        return None
    raw = details.quality
    raw_quality = text_of(raw, "quality", errors) if raw is not UNSET else None
    quality = _QUALITIES.get(raw_quality.lower()) if raw_quality is not None else None
    if raw_quality is not None and quality is None:
        errors.append(("quality", UNPARSABLE))
    raw = details.quality_score
    score = _score(raw) if raw is not UNSET else None
    if score.__class__ is not float and raw is not None and raw is not UNSET:
        score = value_of(raw, "quality_score", errors)
    if score == 0.0:
        score = measured.score(score, unmeasured)
    if quality is None and score is None:
        return None
    return QualityGrade(media, quality, score)


def _rssi(details: _Details, errors: list[ParseError], unmeasured: list[str]) -> float | None:
    unit = text_of(details.rssi_unit, "rssi_unit", errors)
    if unit is not None and unit.lower() != "dbm":
        errors.append(("rssi_unit", UNPARSABLE))
        return None
    raw = details.avg_rssi
    value = _dbm(raw) if raw is not None else None
    if value.__class__ is not float and raw is not None:
        value = value_of(raw, "avg_rssi", errors)
    return measured.rssi(value, unmeasured)


def _record(
    event: str,
    product: Product,
    account_id: str,
    instance: str,
    participant_id: str | None,
    raw_ts: _Value,
    entries: list[_Entry],
    identity: ParticipantIdentity,
) -> QosRecord | None:
    # The refusals of a whole event (and an event past the entry bound) are the fallback's to report.
    if (
        not account_id
        or participant_id is None
        or not instance
        or len(instance) > ID_MAX
        or len(entries) > _EVENT_ENTRIES_MAX
    ):
        return None
    account_id, instance, participant_id = sys.intern(account_id), sys.intern(instance), sys.intern(participant_id)
    event_ts = raw_ts if raw_ts.__class__ is int and 0 < raw_ts < INT_ID_LIMIT else None
    errors: list[ParseError] = []
    unmeasured: list[str] = []
    streams: list[StreamSample] = []
    grades: list[QualityGrade] = []
    notifications: list[str] = []
    cpu: CpuUsage | None = None
    rssi: float | None = None
    latest = ""
    seen: dict[str, None] = {}
    for entry in entries:
        kind = entry.type
        if kind in seen:
            errors.append(QOS_TOO_MANY)
            continue
        seen[kind] = None
        stamp = entry.date_time
        if stamp.__class__ is str and len(stamp) <= _STAMP_MAX and stamp > latest:
            latest = stamp
        details = entry.details
        stream = _STREAM_TYPES.get(kind)
        if stream is not None:
            # The parse caches are read inline (a float is a hit); anything else goes through
            # value_of, which parses, remembers and reports exactly as the tolerant decoder does.
            raw = details.bitrate
            bitrate = _bitrate(raw)
            if bitrate.__class__ is not float and raw is not None:
                bitrate = value_of(raw, "bitrate", errors)
            raw = details.latency
            latency = _latency(raw)
            if latency.__class__ is not float and raw is not None:
                latency = value_of(raw, "latency", errors)
            raw = details.jitter
            jitter = _jitter(raw)
            if jitter.__class__ is not float and raw is not None:
                jitter = value_of(raw, "jitter", errors)
            raw = details.avg_loss
            avg_loss = _avg_loss(raw)
            if avg_loss.__class__ is not float and raw is not None:
                avg_loss = value_of(raw, "avg_loss", errors)
            raw = details.max_loss
            max_loss = _max_loss(raw)
            if max_loss.__class__ is not float and raw is not None:
                max_loss = value_of(raw, "max_loss", errors)
            raw = details.frame_rate
            frame_rate = _frame_rate(raw) if raw is not None else None
            if frame_rate.__class__ is not float and raw is not None:
                frame_rate = value_of(raw, "frame_rate", errors)
            raw = details.resolution
            height = _height(raw) if raw is not None else None
            if height.__class__ is not float and raw is not None:
                height = height_of(raw, errors)
            if bitrate or latency or jitter or avg_loss or max_loss or frame_rate or height:
                if 0.0 in (bitrate, latency, jitter, frame_rate, height):
                    bitrate, latency, jitter, frame_rate, height = measured.stream(
                        bitrate, latency, jitter, frame_rate, height, unmeasured
                    )
                streams.append(
                    _new_tuple(
                        StreamSample,
                        (
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
                        ),
                    )
                )
            if details.quality is UNSET and details.quality_score is UNSET and details.avg_rssi is UNSET:
                continue
        if kind == "cpu_usage":
            cpu = _cpu(details, errors, unmeasured)
        elif kind == "notification":
            note = text_of(details.network_notification, "network_notification", errors)
            if note is not None:
                notifications.append(vocab.notification(note))
        if details.quality is not UNSET or details.quality_score is not UNSET:
            grade = _grade(kind, details, errors, unmeasured)
            if grade is not None:
                grades.append(grade)
        if details.avg_rssi is not UNSET:
            rssi = _rssi(details, errors, unmeasured)
    return realtime_record(
        event, product, account_id, instance, participant_id, event_ts, identity,
        seen, latest, streams, grades, cpu, rssi, notifications, errors, unmeasured,
    )  # fmt: skip
