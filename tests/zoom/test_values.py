"""Plausible ranges per field: a value outside its range is counted `out_of_range` and never observed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from qss_exporter.zoom.events import decode
from qss_exporter.zoom.records import PhoneQosRecord, QosRecord, SummaryRecord
from qss_exporter.zoom.values import CACHE_MAX_CHARS, FIELDS, Fields, cached_strings
from tests.samples import load_sample

KILO = 125.0  # 1 kbps in bytes per second

# (field, what Zoom might send, the base-unit value kept, or the reason it is refused)
CASES: list[tuple[str, object, float | str]] = [
    ("latency", "0 ms", 0.0),
    ("latency", "60000 ms", 60.0),
    ("latency", "60001 ms", "out_of_range"),
    ("latency", "-5 ms", "out_of_range"),
    ("latency", "9" * 300 + " ms", "out_of_range"),
    ("latency", "1" + "0" * 400, "out_of_range"),  # a float would overflow to inf
    ("jitter", "1000000000000000000000 ms", "out_of_range"),
    ("jitter", 1e21, "out_of_range"),
    ("jitter", 10**5000, "out_of_range"),  # more digits than int -> str allows
    ("avg_loss", "100%", 1.0),
    ("avg_loss", "100.1%", "out_of_range"),
    ("max_loss", "-50%", "out_of_range"),
    ("bitrate", "-64 kbps", "out_of_range"),
    ("bitrate", "10000000 kbps", 10_000_000 * KILO),  # 10 Gbit/s
    ("bitrate", "10000001 kbps", "out_of_range"),
    ("frame_rate", "240 fps", 240.0),
    ("frame_rate", "241 fps", "out_of_range"),
    ("frame_rate", "lots", "unparsable"),
    ("avg_rssi", "-120", -120.0),
    ("avg_rssi", -121, "out_of_range"),
    ("avg_rssi", "3", "out_of_range"),
    ("quality_score", "5", 5.0),
    ("quality_score", "5.5", "out_of_range"),
    ("quality_score", "-1", "out_of_range"),
    ("mos", "1", 1.0),
    ("mos", "0", 0.0),  # passes: the decoder counts it as not measured (zoom/measured.py)
    ("mos", "0.5", "out_of_range"),
    ("mos", "5.01", "out_of_range"),
    ("zoom_avg_cpu_usage", "100%", 1.0),
    ("system_max_cpu_usage", "101%", "out_of_range"),
    ("network_delay", "-1", "out_of_range"),
    ("avg_latency", "61 s", "unparsable"),
]


@pytest.mark.parametrize(("field", "raw", "expected"), CASES, ids=[f"{case[0]}-{n}" for n, case in enumerate(CASES)])
def test_each_field_keeps_plausible_values_and_names_the_reason_for_others(
    field: str, raw: object, expected: float | str
) -> None:
    errors: list[tuple[str, str]] = []
    value = Fields({field: raw}, errors).get(field)
    if isinstance(expected, str):
        assert value is None
        assert errors == [(field, expected)]
    else:
        assert value == expected
        assert errors == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1280*8640", 8640.0), ("1*8641", "out_of_range"), ("1*" + "9" * 5000, "out_of_range"), ("1*-5", "unparsable")],
    ids=["16K", "taller", "5000 digits", "negative"],
)
def test_resolution_height_is_bounded(raw: str, expected: float | str) -> None:
    errors: list[tuple[str, str]] = []
    value = Fields({"resolution": raw}, errors).height()
    assert (value, errors) == ((expected, []) if isinstance(expected, float) else (None, [("resolution", expected)]))


def test_every_value_field_has_a_range_that_admits_zoom_s_documented_examples() -> None:
    for name in ("meeting.participant_qos", "meeting.participant_qos_summary", "phone.call_qos_summary"):
        record = decode(load_sample(name))
        assert isinstance(record, QosRecord | SummaryRecord | PhoneQosRecord)
        assert record.parse_errors == ()
    assert set(FIELDS) >= {"latency", "jitter", "bitrate", "avg_loss", "max_loss", "frame_rate", "mos"}


def test_negative_and_absurd_values_in_a_real_time_event_are_never_observed() -> None:
    body: dict[str, Any] = copy.deepcopy(load_sample("meeting.participant_qos"))
    entries = body["payload"]["object"]["participant"]["qos"]
    entries[0]["details"].update(latency="-5 ms", avg_loss="-50%", bitrate="-64 kbps", jitter="9" * 300 + " ms")
    record = decode(body)
    assert isinstance(record, QosRecord)
    audio_in = next(s for s in record.streams if (s.media, s.direction) == ("audio", "input"))
    assert (audio_in.latency, audio_in.avg_loss, audio_in.bitrate, audio_in.jitter) == (None, None, None, None)
    assert audio_in.max_loss == 0.014  # the plausible values of the same entry are kept
    assert sorted(record.parse_errors) == [
        ("avg_loss", "out_of_range"),
        ("bitrate", "out_of_range"),
        ("jitter", "out_of_range"),
        ("latency", "out_of_range"),
    ]


def test_long_strings_are_parsed_but_never_cached() -> None:
    long_value = " " * CACHE_MAX_CHARS + "5 ms"
    errors: list[tuple[str, str]] = []
    assert Fields({"latency": long_value}, errors).get("latency") == 0.005
    assert long_value not in cached_strings()
    assert Fields({"latency": "5 ms"}, errors).get("latency") == 0.005
    assert "5 ms" in cached_strings()
