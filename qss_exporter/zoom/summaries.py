"""Participant session summaries: the `*_qos_summary` events and the items of the REST `qos_summary` pages.

Meetings and webinars: both give the same SummaryRecord (same event name, same dedupe key: the
per-instance `participant_id` is on both sides), so a participant session that arrives both ways is
counted once.

Video SDK sessions: the two sides share no id. Zoom's QSS REST API describes `users[].id` as "the
same as the user's user ID if the user joins the session by logging into Zoom. If the user joins the
session without logging into Zoom, this returns an empty value", while the webhooks' `user.id` "is
assigned to the user upon joining a session and is only valid for that session". What both carry is
`user_key` (the Video SDK JWT's `user_identity`, optional) and the display name (which REST may leave
empty). So a REST user gets an id of the agent's own (a digest of what the item holds), never dropped
for an empty `id`, and every session summary carries `match`, a digest of `user_key` (else of the
name): the pipeline counts a session's users once across both sides with it (dedupe.SessionSummaries).
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import orjson

from qss_exporter.zoom import entries as parts
from qss_exporter.zoom import measured
from qss_exporter.zoom import vocabulary as vocab
from qss_exporter.zoom.records import (
    NO_IDENTITY,
    InvalidEvent,
    ParseError,
    ParticipantIdentity,
    Product,
    QualityGrade,
    StreamSummary,
    SummaryRecord,
)
from qss_exporter.zoom.values import QOS_MALFORMED, QOS_TOO_MANY, Fields, free_text

__all__ = ["REST_SESSION_PREFIX", "SUMMARY_EVENTS", "decode_rest_summary", "session_match", "summary"]

REST_SESSION_PREFIX = "rest:"  # the agent's own id of a Video SDK REST user (Zoom's `id` is no per-session id)

_STREAM_TYPES = vocab.STREAM_TYPES

SUMMARY_EVENTS: dict[Product, str] = {
    "meeting": "meeting.participant_qos_summary",
    "webinar": "webinar.participant_qos_summary",
    "session": "session.user_qos_summary",
}


def summary(
    event: str,
    product: Product,
    account_id: str,
    instance: str,
    participant_id: str,
    event_time: float | None,
    entries: list[Any],
    identity: ParticipantIdentity = NO_IDENTITY,
    meeting_number: str = "",
    match: str = "",
) -> SummaryRecord:
    """One participant's whole session from a summary's `qos[]`."""
    errors: list[ParseError] = []
    unmeasured: list[str] = []
    streams: list[StreamSummary] = []
    grades: list[QualityGrade] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if index == parts.EVENT_ENTRIES_MAX:
            errors.extend([QOS_TOO_MANY] * (len(entries) - index))
            break
        if entry.__class__ is not dict or entry.get("details").__class__ is not dict:
            errors.append(QOS_MALFORMED)
            continue
        kind = entry.get("type")
        if kind.__class__ is not str:
            errors.append(parts.TYPE_MALFORMED)
            continue
        if kind in seen:
            errors.append(QOS_TOO_MANY)
            continue
        seen.add(kind)
        details = entry["details"]
        fields = Fields(details, errors)
        stream = _STREAM_TYPES.get(kind)
        if stream is not None:
            stats = StreamSummary(
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
            if _active(stats):
                if 0.0 in stats[3:9]:  # some zero of bitrate, latency or jitter: which are measurements?
                    values = measured.summary_stream(*stats[3:9], unmeasured)
                    stats = StreamSummary(*stats[:3], *values, stats.avg_loss, stats.max_loss)
                streams.append(stats)
        if "quality" in details or "quality_score" in details:
            grade = parts.grade(kind, fields, unmeasured)
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
        tuple(unmeasured),
        match,
    )


def decode_rest_summary(product: Product, account_id: str, instance: str, item: object) -> SummaryRecord | InvalidEvent:
    """One `participants[]` (meeting, webinar) or `users[]` (Video SDK) item of a REST `qos_summary` page.

    The record is the one the matching `*_qos_summary` event gives (same event name, same dedupe
    key), so a participant summarised by webhook and by poll is counted once. REST gives no time.
    """
    event = SUMMARY_EVENTS[product]
    if not isinstance(item, dict):
        return InvalidEvent(event, "users" if product == "session" else "participants")
    entries = item.get("qos")
    if product == "session":
        if not isinstance(entries, list):
            return InvalidEvent(event, "qos")
        # Zoom's `id` here is the Zoom login (empty for guests), not the webhooks' per-session id.
        participant_id = _rest_session_id(item)
        match = session_match(item)
    else:
        # The per-instance id, the same as in the summary events.
        found = parts.first_id(item, ("participant_id",))
        if found is None:
            return InvalidEvent(event, "participant_id")
        if not isinstance(entries, list):
            return InvalidEvent(event, "qos")
        participant_id, match = found, ""
    # The list items name people as the summary events do (`id`, `user_name`, `email`; Video SDK `name`,
    # `user_key`), so detail mode's allowlist matches polled sessions too.
    identity = parts.identity(item, product == "session")
    instance, participant_id = sys.intern(instance), sys.intern(participant_id)
    return summary(event, product, account_id, instance, participant_id, None, entries, identity, match=match)


def session_match(person: dict[str, Any]) -> str:
    """What a Video SDK summary's user is known by on both sides: `user_key`, else the name, as a digest."""
    user_key = free_text(person.get("user_key"))
    if user_key:
        return "k:" + _digest(user_key.encode())
    name = free_text(person.get("name"))
    return "n:" + _digest(name.encode()) if name else ""


def _rest_session_id(item: dict[str, Any]) -> str:
    """A REST user's id of the agent's own: a digest of everything the item holds, stable across listings.

    Two joins of one user are two items with different statistics, so they get two ids; a restarted
    listing repeats an item with the same id. No personal data is kept (the digest, not the values).
    """
    return REST_SESSION_PREFIX + _digest(orjson.dumps(item, option=orjson.OPT_SORT_KEYS))


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _active(stats: StreamSummary) -> bool:
    return any(
        (
            stats.avg_bitrate,
            stats.max_bitrate,
            stats.avg_latency,
            stats.max_latency,
            stats.avg_jitter,
            stats.max_jitter,
            stats.avg_loss,
            stats.max_loss,
        )
    )
