"""Zoom event envelopes (already JSON-decoded) -> typed records. No dict travels past this module.

`decode` never raises: an unusable body becomes InvalidEvent, an unknown event UnknownEvent, and a
single unparsable value drops only that value (its field is listed in the record's parse_errors).
"""

from __future__ import annotations

import sys
from typing import Any

from qss_exporter.zoom import vocabulary as vocab
from qss_exporter.zoom.records import (
    NO_IDENTITY,
    CpuUsage,
    InvalidEvent,
    MeetingEvent,
    ParticipantIdentity,
    ParticipantInfo,
    PhoneQosRecord,
    PhoneSample,
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
from qss_exporter.zoom.units import (
    DBM,
    FPS,
    KBPS,
    MILLISECONDS,
    PERCENT,
    PLAIN,
    Unit,
    UnitError,
    parse_quantity,
    parse_resolution_height,
)

__all__ = ["CONTEXT_EVENTS", "KNOWN_EVENTS", "decode", "decode_rest_summary"]

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


# Zoom's value strings repeat endlessly ("0 ms", "41 kbps", "0.0%"): remembering each string's parse
# per unit made decoding ~2x faster (bench/hotpath.py). Bounded: a cache is cleared when full.
_CACHE_LIMIT = 16_384  # per unit (~1.5 MiB at most): ~6k distinct bitrates were seen in 50k events
_UNPARSABLE = object()
_MISSING = object()
_PARSED: dict[Unit, dict[str, object]] = {unit: {} for unit in (KBPS, MILLISECONDS, PERCENT, FPS, DBM, PLAIN)}
_HEIGHTS: dict[str, object] = {}


def _parse_into(cache: dict[str, object], raw: str, unit: Unit) -> object:
    try:
        value: object = parse_quantity(raw, unit)
    except UnitError:
        value = _UNPARSABLE
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[raw] = value
    return value


def _quantity(details: dict[str, Any], key: str, unit: Unit, errors: list[str]) -> float | None:
    """details[key] in base units; None when absent, empty or unparsable (then `key` joins errors)."""
    raw = details.get(key)
    if raw is None:
        return None
    if raw.__class__ is str:
        cache = _PARSED[unit]
        value = cache.get(raw, _MISSING)
        if value is _MISSING:
            value = _parse_into(cache, raw, unit)
    else:
        try:
            value = parse_quantity(raw, unit)
        except UnitError:
            value = _UNPARSABLE
    if value is _UNPARSABLE:
        errors.append(key)
        return None
    return value  # type: ignore[return-value]  # float | None once _UNPARSABLE is ruled out


def _height(details: dict[str, Any], errors: list[str]) -> float | None:
    raw = details.get("resolution")
    if raw is None:
        return None
    value = _HEIGHTS.get(raw, _MISSING) if raw.__class__ is str else _MISSING
    if value is _MISSING:
        try:
            value = parse_resolution_height(raw)
        except UnitError:
            value = _UNPARSABLE
        if raw.__class__ is str:
            if len(_HEIGHTS) >= _CACHE_LIMIT:
                _HEIGHTS.clear()
            _HEIGHTS[raw] = value
    if value is _UNPARSABLE:
        errors.append("resolution")
        return None
    return value  # type: ignore[return-value]


class _Fields:
    """Reads one `details` object, scaling each value and remembering which fields failed."""

    __slots__ = ("details", "errors")

    def __init__(self, details: dict[str, Any], errors: list[str]) -> None:
        self.details = details
        self.errors = errors

    def get(self, key: str, unit: Unit) -> float | None:
        return _quantity(self.details, key, unit, self.errors)

    def text(self, key: str) -> str | None:
        raw = self.details.get(key)
        if isinstance(raw, str):
            return raw.strip() or None
        if isinstance(raw, dict):  # webinar schema quirk: a `quality` object nested in `quality`
            return self.__class__(raw, self.errors).text(key)
        if raw is not None:
            self.errors.append(key)
        return None


def decode(envelope: object) -> Decoded:
    """Turn one decoded webhook / WebSocket body into a typed record."""
    if not isinstance(envelope, dict):
        return InvalidEvent("", "envelope")
    event = envelope.get("event")
    if not isinstance(event, str) or not event:
        return InvalidEvent("", "event")
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        return InvalidEvent(event, "payload")
    if event == "endpoint.url_validation":
        token = payload.get("plainToken")
        if not isinstance(token, str) or not token:
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
    event_ts = raw_ts if isinstance(raw_ts, int) and not isinstance(raw_ts, bool) and raw_ts > 0 else None
    kind = event.partition(".")[2]
    if event in _CONTEXT:
        return _context_event(event, kind, account_id, obj, event_ts)
    if event.startswith("phone."):
        return _phone(event, account_id, obj, event_ts)
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
    if not isinstance(instance, str) or not instance:
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
            event, product, account_id, instance, participant_id, person, event_ts, identity, _text(obj, "id")
        )
    entries = person.get("qos")
    if not isinstance(entries, list):
        return InvalidEvent(event, "qos")
    if kind.endswith("_summary"):
        return _summary(
            event, product, account_id, instance, participant_id, event_time, entries, identity, _text(obj, "id")
        )
    return _realtime(event, product, account_id, instance, participant_id, event_ts, entries, identity)


def _text(obj: dict[str, Any], key: str) -> str:
    """A string or integer field as text ("" when absent or of another type); meeting numbers come as both."""
    value = obj.get(key)
    if value.__class__ is str:
        return str(value).strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


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
    return _new_tuple(
        ParticipantIdentity,
        (
            user_id if user_id.__class__ is str else "",
            email if email.__class__ is str else "",
            name if name.__class__ is str else "",
        ),
    )


_new_tuple = tuple.__new__


def _first_id(person: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = person.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
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
    errors: list[str] = []
    streams: list[StreamSample] = []
    grades: list[QualityGrade] = []
    notifications: list[str] = []
    cpu: CpuUsage | None = None
    rssi: float | None = None
    latest = ""
    for entry in entries:
        if not isinstance(entry, dict):
            errors.append("qos")
            continue
        details = entry.get("details")
        if not isinstance(details, dict):
            errors.append("details")
            continue
        stamp = entry.get("date_time")
        if isinstance(stamp, str) and stamp > latest:
            latest = stamp
        kind = entry.get("type")
        stream = _STREAM_TYPES.get(kind) if kind.__class__ is str else None
        if stream is not None:
            bitrate = _quantity(details, "bitrate", KBPS, errors)
            latency = _quantity(details, "latency", MILLISECONDS, errors)
            jitter = _quantity(details, "jitter", MILLISECONDS, errors)
            avg_loss = _quantity(details, "avg_loss", PERCENT, errors)
            max_loss = _quantity(details, "max_loss", PERCENT, errors)
            frame_rate = _quantity(details, "frame_rate", FPS, errors)
            height = _height(details, errors)
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
        fields = _Fields(details, errors)
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
    key = (event, account_id, instance, participant_id, event_ts or 0, latest)
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


def _cpu(fields: _Fields) -> CpuUsage | None:
    usage = CpuUsage(
        fields.get("zoom_avg_cpu_usage", PERCENT),
        fields.get("zoom_max_cpu_usage", PERCENT),
        fields.get("system_max_cpu_usage", PERCENT),
    )
    return usage if usage != _NO_CPU else None


_NO_CPU = CpuUsage(None, None, None)


def _grade(kind: object, fields: _Fields) -> QualityGrade | None:
    media = vocab.media_of_type(kind)
    if media is None:
        return None
    raw_quality = fields.text("quality")
    quality = vocab.QUALITIES.get(raw_quality.lower()) if raw_quality is not None else None
    if raw_quality is not None and quality is None:
        fields.errors.append("quality")
    score = fields.get("quality_score", PLAIN)
    if quality is None and score is None:
        return None
    return QualityGrade(media, quality, score)


def _rssi(fields: _Fields) -> float | None:
    unit = fields.text("rssi_unit")
    if unit is not None and unit.lower() != "dbm":
        fields.errors.append("rssi_unit")
        return None
    return fields.get("avg_rssi", DBM)


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
    errors: list[str] = []
    streams: list[StreamSummary] = []
    grades: list[QualityGrade] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("details"), dict):
            errors.append("qos")
            continue
        kind = entry.get("type")
        fields = _Fields(entry["details"], errors)
        stream = vocab.STREAM_TYPES.get(kind) if isinstance(kind, str) else None
        if stream is not None:
            summary = StreamSummary(
                stream[0],
                stream[1],
                stream[2],
                fields.get("avg_bitrate", KBPS),
                fields.get("max_bitrate", KBPS),
                fields.get("avg_latency", MILLISECONDS),
                fields.get("max_latency", MILLISECONDS),
                fields.get("avg_jitter", MILLISECONDS),
                fields.get("max_jitter", MILLISECONDS),
                fields.get("avg_loss", PERCENT),
                fields.get("max_loss", PERCENT),
            )
            if _summary_active(summary):
                streams.append(summary)
        if "quality" in entry["details"] or "quality_score" in entry["details"]:
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
    # Zoom's examples carry one element; if there are several, the last one is the latest state.
    data: dict[str, Any] = {}
    for entry in entries:
        if isinstance(entry, dict):
            data.update(entry)
    addresses = tuple(
        dict.fromkeys(
            value.strip() for key in _ADDRESS_KEYS if isinstance(value := data.get(key), str) and value.strip()
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
    if not isinstance(instance, str) or not instance:
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
        "" if session else _text(obj, "id"),
        _text(obj, "session_name" if session else "topic"),
        identity,
    )


def _phone(event: str, account_id: str, obj: dict[str, Any], event_ts: int | None) -> Decoded:
    call_id = obj.get("call_id")
    if isinstance(call_id, int) and not isinstance(call_id, bool):
        call_id = str(call_id)
    if not isinstance(call_id, str) or not call_id:
        return InvalidEvent(event, "call_id")
    call_id = sys.intern(call_id)
    legs = obj.get("call_qos")
    # phone.call_qos carries one leg as an object with one sample as an object; the summary an
    # array of legs, each with an array of samples. Both shapes are accepted in both events.
    if isinstance(legs, dict):
        legs = [legs]
    if not isinstance(legs, list):
        return InvalidEvent(event, "call_qos")
    errors: list[str] = []
    samples: list[PhoneSample] = []
    for leg in legs:
        leg_name = leg.get("type") if isinstance(leg, dict) else None
        if leg_name not in vocab.PHONE_LEGS:
            errors.append("call_qos.type")
            continue
        entries = leg.get("qos")
        for entry in [entries] if isinstance(entries, dict) else entries if isinstance(entries, list) else []:
            sample = _phone_sample(leg_name, entry, errors)
            if sample is not None:
                samples.append(sample)
    ended = (isinstance(obj.get("call_end_time"), str) and bool(obj["call_end_time"])) or event.endswith("_summary")
    if event == "phone.call_qos" and len(samples) == 1:
        first = samples[0]
        key: tuple[str | int, ...] = (event, account_id, call_id, first.leg, first.direction, first.sample_time)
    else:
        key = (event, account_id, call_id, event_ts or 0)
    return PhoneQosRecord(
        event,
        account_id,
        call_id,
        event_ts / 1000.0 if event_ts is not None else None,
        key,
        ended,
        tuple(samples),
        tuple(errors),
    )


def _phone_sample(leg: str, entry: object, errors: list[str]) -> PhoneSample | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("details"), dict):
        errors.append("qos")
        return None
    direction = entry.get("type")
    if direction not in vocab.PHONE_DIRECTIONS:
        errors.append("qos.type")
        return None
    stamp = entry.get("date_time")
    fields = _Fields(entry["details"], errors)
    # Zoom Phone sends bare numbers ("31", "0.4"); the parser also takes them with units.
    return PhoneSample(
        leg,
        direction,
        stamp if isinstance(stamp, str) else "",
        fields.get("mos", PLAIN),
        fields.get("network_delay", MILLISECONDS),
        fields.get("jitter", MILLISECONDS),
        fields.get("avg_loss", PERCENT),
        fields.get("max_loss", PERCENT),
        fields.get("bitrate", KBPS),
    )
