"""Participant session summaries: the `*_qos_summary` events and the items of the REST `qos_summary` pages.

Both give the same SummaryRecord (same event name, same dedupe key where Zoom gives both sides the
same id), so a participant session that arrives both ways is counted once.
"""

from __future__ import annotations

import sys
from typing import Any

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
from qss_exporter.zoom.values import QOS_MALFORMED, QOS_TOO_MANY, Fields

__all__ = ["SUMMARY_EVENTS", "decode_rest_summary", "summary"]

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
    )


def decode_rest_summary(product: Product, account_id: str, instance: str, item: object) -> SummaryRecord | InvalidEvent:
    """One `participants[]` (meeting, webinar) or `users[]` (Video SDK) item of a REST `qos_summary` page.

    The record is the one the matching `*_qos_summary` event gives (same event name, same dedupe
    key), so a participant summarised by webhook and by poll is counted once. REST gives no time.
    """
    event = SUMMARY_EVENTS[product]
    if not isinstance(item, dict):
        return InvalidEvent(event, "users" if product == "session" else "participants")
    # The per-instance id: `participant_id` in meeting and webinar lists, `id` in Video SDK lists.
    id_key = "id" if product == "session" else "participant_id"
    participant_id = parts.first_id(item, (id_key,))
    if participant_id is None:
        return InvalidEvent(event, id_key)
    entries = item.get("qos")
    if not isinstance(entries, list):
        return InvalidEvent(event, "qos")
    # The list items name people as the summary events do (`id`, `user_name`, `email`; Video SDK `name`,
    # `user_key`), so detail mode's allowlist matches polled sessions too.
    identity = parts.identity(item, product == "session")
    return summary(
        event, product, account_id, sys.intern(instance), sys.intern(participant_id), None, entries, identity
    )


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
