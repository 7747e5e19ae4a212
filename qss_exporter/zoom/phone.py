"""Zoom Phone events (`phone.call_qos`, `phone.call_qos_summary`) -> PhoneQosRecord.

Both shapes Zoom documents are accepted in both events: one leg as an object with one sample as an
object (`phone.call_qos`), or an array of legs, each with an array of samples (the summary). A call
has two legs (caller, callee); `phone.call_qos` carries one sample (two per leg are read), a summary
up to 17,280 per leg (12 hours sampled every 5 s in both directions). The rest is refused and counted.
"""

from __future__ import annotations

import sys
from typing import Any, Final

from qss_exporter.zoom import measured
from qss_exporter.zoom import vocabulary as vocab
from qss_exporter.zoom.records import InvalidEvent, ParseError, PhoneQosRecord, PhoneSample
from qss_exporter.zoom.values import (
    MALFORMED,
    QOS_MALFORMED,
    QOS_TOO_MANY,
    TOO_MANY_ENTRIES,
    Fields,
    identifier,
    timestamp_text,
)

__all__ = ["decode_phone"]

_LEGS_MAX: Final = 2  # caller and callee
_SAMPLES_MAX: Final = 2  # phone.call_qos: Zoom sends one sample; both directions of a leg are allowed
_SUMMARY_SAMPLES_MAX: Final = 17_280


def decode_phone(
    event: str, account_id: str, obj: dict[str, Any], event_ts: int | None
) -> PhoneQosRecord | InvalidEvent:
    """One Zoom Phone event whose envelope `decode` has read."""
    call_id = identifier(obj.get("call_id"))
    if call_id is None:
        return InvalidEvent(event, "call_id")
    call_id = sys.intern(call_id)
    legs = obj.get("call_qos")
    # phone.call_qos carries one leg as an object with one sample as an object; the summary an
    # array of legs, each with an array of samples. Both shapes are accepted in both events.
    if isinstance(legs, dict):
        legs = [legs]
    if not isinstance(legs, list):
        return InvalidEvent(event, "call_qos")
    summary = event.endswith("_summary")
    per_leg = _SUMMARY_SAMPLES_MAX if summary else _SAMPLES_MAX
    errors: list[ParseError] = []
    unmeasured: list[str] = []
    samples: list[PhoneSample] = []
    seen_legs: set[str] = set()
    for index, leg in enumerate(legs):
        if index == _LEGS_MAX:
            errors.extend([("call_qos", TOO_MANY_ENTRIES)] * (len(legs) - index))
            break
        leg_name = leg.get("type") if leg.__class__ is dict else None
        if leg_name.__class__ is not str or leg_name not in vocab.PHONE_LEGS:
            errors.append(("call_qos.type", MALFORMED))
            continue
        if leg_name in seen_legs:
            errors.append(("call_qos", TOO_MANY_ENTRIES))
            continue
        seen_legs.add(leg_name)
        entries = leg.get("qos")
        entries = [entries] if isinstance(entries, dict) else entries if isinstance(entries, list) else []
        seen: set[tuple[str, str]] = set()
        for number, entry in enumerate(entries):
            if number == per_leg:
                errors.extend([QOS_TOO_MANY] * (len(entries) - number))
                break
            sample = _phone_sample(leg_name, entry, errors)
            if sample is None:
                continue
            if 0.0 in (sample.mos, sample.latency, sample.jitter, sample.bitrate):
                sample = measured.phone(sample, unmeasured)
            if (sample.direction, sample.sample_time) in seen:
                errors.append(QOS_TOO_MANY)
                continue
            seen.add((sample.direction, sample.sample_time))
            samples.append(sample)
    end_time = obj.get("call_end_time")
    ended = (end_time.__class__ is str and bool(end_time)) or summary
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
        tuple(unmeasured),
    )


def _phone_sample(leg: str, entry: object, errors: list[ParseError]) -> PhoneSample | None:
    if entry.__class__ is not dict or entry.get("details").__class__ is not dict:
        errors.append(QOS_MALFORMED)
        return None
    direction = entry.get("type")
    if direction.__class__ is not str or direction not in vocab.PHONE_DIRECTIONS:
        errors.append(("qos.type", MALFORMED))
        return None
    fields = Fields(entry["details"], errors)
    # Zoom Phone sends bare numbers ("31", "0.4"); the parser also takes them with units.
    return PhoneSample(
        leg,
        direction,
        timestamp_text(entry.get("date_time")),
        fields.get("mos"),
        fields.get("network_delay"),
        fields.get("jitter"),
        fields.get("avg_loss"),
        fields.get("max_loss"),
        fields.get("bitrate"),
    )
