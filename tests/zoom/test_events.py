from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qss_exporter.zoom.events import EVENT_ENTRIES_MAX, KNOWN_EVENTS, decode
from qss_exporter.zoom.records import (
    CpuUsage,
    InvalidEvent,
    ParticipantInfo,
    PhoneQosRecord,
    QosRecord,
    QualityGrade,
    StreamSample,
    SummaryRecord,
    UnknownEvent,
    UrlValidation,
)
from qss_exporter.zoom.values import FREE_TEXT_MAX
from tests.samples import load_sample


def test_meeting_participant_qos_sample_decodes_to_exact_values() -> None:
    record = decode(load_sample("meeting.participant_qos"))
    assert isinstance(record, QosRecord)
    assert (record.product, record.instance, record.participant_id) == (
        "meeting",
        "kT9w2Qx+Rj6pLm0sVbN4hA==",
        "16782336",
    )
    assert record.event_time == 1761317463.512
    assert record.streams[0] == StreamSample("audio", "input", "client", 5125.0, 0.038, 0.004, 0.002, 0.014, None, None)
    assert record.streams[2] == StreamSample(
        "video", "input", "client", 101500.0, 0.039, 0.006, 0.001, 0.009, 25.0, 720.0
    )
    # as_input is all "": an inactive stream, not an observation of zero.
    assert [s.media for s in record.streams] == ["audio", "audio", "video", "video"]
    assert record.grades == (QualityGrade("audio", "good", 4.12), QualityGrade("video", "fair", 3.05))
    assert record.cpu == CpuUsage(0.09, 0.17, 0.46)
    assert record.rssi_dbm == -63.0
    assert record.notifications == ("network_bandwidth_low",)
    assert record.parse_errors == ()


def test_webinar_rwg_and_session_samples() -> None:
    webinar = decode(load_sample("webinar.participant_qos"))
    assert isinstance(webinar, QosRecord)
    assert webinar.product == "webinar"
    assert ("audio", "to", "rwg") in [(s.media, s.direction, s.path) for s in webinar.streams]
    assert webinar.notifications == ("internet_connection_unstable",)
    session = decode(load_sample("session.user_qos"))
    assert isinstance(session, QosRecord)
    assert (session.product, session.instance, session.participant_id) == (
        "session",
        "Vb8n/Qk3RrWx2LmPc7dT5w==",
        "16778241",
    )


@pytest.mark.parametrize(
    "name", ["meeting.participant_qos_summary", "webinar.participant_qos_summary", "session.user_qos_summary"]
)
def test_summaries(name: str) -> None:
    record = decode(load_sample(name))
    assert isinstance(record, SummaryRecord)
    assert record.dedupe_key == (
        "qos_summary",
        record.account_id,
        record.product,
        record.instance,
        record.participant_id,
    )
    assert record.streams
    assert record.parse_errors == ()


def test_meeting_summary_values() -> None:
    record = decode(load_sample("meeting.participant_qos_summary"))
    assert isinstance(record, SummaryRecord)
    audio_in = record.streams[0]
    assert (audio_in.avg_latency, audio_in.max_latency, audio_in.avg_loss, audio_in.max_loss) == (
        0.04,
        0.097,
        0.003,
        0.038,
    )
    assert audio_in.avg_bitrate == 39 * 125
    # video_output is all zeros: inactive, left out.
    assert [(s.media, s.direction) for s in record.streams] == [
        ("audio", "input"),
        ("audio", "output"),
        ("video", "input"),
    ]


@pytest.mark.parametrize(
    ("name", "final"),
    [
        ("meeting.participant_data", False),
        ("meeting.participant_data_summary", True),
        ("webinar.participant_data", False),
        ("webinar.participant_data_summary", True),
        ("session.user_data", False),
        ("session.user_data_summary", True),
    ],
)
def test_participant_data(name: str, final: bool) -> None:
    record = decode(load_sample(name))
    assert isinstance(record, ParticipantInfo)
    assert record.final is final
    assert record.network_type in {"wired", "wifi"}
    assert record.client_version is not None
    assert record.client_version.count(".") == 1
    assert record.addresses  # for site mapping


def test_meeting_participant_data_normalised() -> None:
    record = decode(load_sample("meeting.participant_data"))
    assert isinstance(record, ParticipantInfo)
    assert (record.network_type, record.client_os, record.client_version, record.data_center) == (
        "wifi",
        "windows",
        "6.2",
        "FR",
    )
    assert record.addresses == ("198.51.100.23", "10.20.4.117")


def test_phone_call_qos_and_summary() -> None:
    call = decode(load_sample("phone.call_qos"))
    assert isinstance(call, PhoneQosRecord)
    assert not call.ended
    (sample,) = call.samples
    assert (
        sample.leg,
        sample.direction,
        sample.mos,
        sample.latency,
        sample.jitter,
        sample.avg_loss,
        sample.bitrate,
    ) == (
        "callee",
        "receiving",
        4.1,
        0.048,
        0.012,
        0.004,
        31 * 125,
    )
    summary = decode(load_sample("phone.call_qos_summary"))
    assert isinstance(summary, PhoneQosRecord)
    assert summary.ended
    assert [(s.leg, s.direction) for s in summary.samples] == [
        ("caller", "sending"),
        ("caller", "receiving"),
        ("callee", "sending"),
        ("callee", "receiving"),
    ]


def test_url_validation() -> None:
    assert decode(load_sample("endpoint.url_validation.request")) == UrlValidation("Vw3nQ8rT1kLmZx0pYs5bEa")


def _qos_with(details: dict[str, Any], kind: str = "audio_input") -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(load_sample("meeting.participant_qos"))
    body["payload"]["object"]["participant"]["qos"] = [
        {"date_time": "2025-10-24T14:51:00Z", "type": kind, "details": details}
    ]
    return body


@pytest.mark.parametrize(
    "details",
    [
        {"bitrate": "", "latency": "", "jitter": "", "avg_loss": "", "max_loss": ""},  # emptied
        {"bitrate": "0 kbps", "latency": "0 ms", "jitter": "0 ms", "avg_loss": "0.0%", "max_loss": "0.0%"},  # zeroed
        {},  # omitted
    ],
)
def test_inactive_stream_variants_record_nothing(details: dict[str, Any]) -> None:
    record = decode(_qos_with(details))
    assert isinstance(record, QosRecord)
    assert record.streams == ()
    assert record.parse_errors == ()


def test_unparsable_value_drops_only_that_value_and_names_the_field() -> None:
    record = decode(
        _qos_with({"bitrate": "lots", "latency": "134 ms", "jitter": "4 ms", "avg_loss": "7 parsecs", "max_loss": "1%"})
    )
    assert isinstance(record, QosRecord)
    (stream,) = record.streams
    assert (stream.bitrate, stream.latency, stream.avg_loss, stream.max_loss) == (None, 0.134, None, 0.01)
    assert record.parse_errors == (("bitrate", "unparsable"), ("avg_loss", "unparsable"))


def test_webinar_nested_quality_quirk() -> None:
    record = decode(_qos_with({"quality": {"quality": "poor"}, "quality_score": "2.41"}, kind="audio_quality"))
    assert isinstance(record, QosRecord)
    assert record.grades == (QualityGrade("audio", "poor", 2.41),)


def test_quality_and_rssi_inside_a_media_entry_are_read() -> None:
    record = decode(
        _qos_with(
            {"bitrate": "63 kbps", "quality": "Bad", "quality_score": "1.5", "avg_rssi": "-70", "rssi_unit": "dBm"}
        )
    )
    assert isinstance(record, QosRecord)
    assert record.grades == (QualityGrade("audio", "bad", 1.5),)
    assert record.rssi_dbm == -70.0


def test_unknown_quality_and_rssi_unit_are_parse_errors() -> None:
    record = decode(_qos_with({"quality": "superb", "avg_rssi": "-70", "rssi_unit": "mW"}, kind="video_quality"))
    assert isinstance(record, QosRecord)
    assert record.grades == ()
    assert record.rssi_dbm is None
    assert record.parse_errors == (("quality", "unparsable"), ("rssi_unit", "unparsable"))


def test_unknown_types_and_keys_are_ignored() -> None:
    record = decode(_qos_with({"teleport_latency": "3 ms", "bitrate": "10 kbps"}, kind="hologram_input"))
    assert isinstance(record, QosRecord)
    assert (record.streams, record.parse_errors) == ((), ())


def test_phone_call_qos_array_shape_is_accepted_too() -> None:
    body = copy.deepcopy(load_sample("phone.call_qos"))
    leg = body["payload"]["object"]["call_qos"]
    leg["qos"] = [leg["qos"]]
    body["payload"]["object"]["call_qos"] = [leg]
    record = decode(body)
    assert isinstance(record, PhoneQosRecord)
    assert len(record.samples) == 1


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.pop("event"), "event"),
        (lambda b: b.update(payload=[]), "payload"),
        (lambda b: b["payload"].pop("account_id"), "account_id"),
        (lambda b: b["payload"].update(object="x"), "object"),
        (lambda b: b["payload"]["object"].pop("uuid"), "uuid"),
        (lambda b: b["payload"]["object"]["participant"].pop("user_id"), "user_id"),
        (lambda b: b["payload"]["object"]["participant"].update(qos={}), "qos"),
        (lambda b: b["payload"]["object"].pop("participant"), "participant"),
    ],
)
def test_invalid_envelopes_name_the_field(mutate: Any, field: str) -> None:
    body = copy.deepcopy(load_sample("meeting.participant_qos"))
    mutate(body)
    decoded = decode(body)
    assert isinstance(decoded, InvalidEvent)
    assert decoded.field == field


def test_unknown_event() -> None:
    assert decode({"event": "meeting.registration_created", "payload": {}}) == UnknownEvent(
        "meeting.registration_created"
    )


def test_all_fourteen_events_are_known() -> None:
    assert len(KNOWN_EVENTS) == 14


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30,
)


@given(json_values)
def test_decoder_never_raises_on_arbitrary_json(value: object) -> None:
    decode(value)


_detail_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10), st.lists(st.integers(), max_size=2)
)


@settings(max_examples=300)
@given(
    event=st.sampled_from(KNOWN_EVENTS),
    kind=st.sampled_from(
        [
            "audio_input",
            "video_output",
            "as_device_to_crc",
            "cpu_usage",
            "audio_quality",
            "wifi_rssi",
            "notification",
            "x",
        ]
    ),
    details=st.dictionaries(
        st.sampled_from(
            [
                "bitrate",
                "latency",
                "jitter",
                "avg_loss",
                "max_loss",
                "resolution",
                "frame_rate",
                "quality",
                "quality_score",
                "avg_rssi",
                "rssi_unit",
                "zoom_avg_cpu_usage",
                "network_notification",
                "mos",
                "network_delay",
                "avg_latency",
            ]
        ),
        _detail_values,
    ),
)
def test_decoder_never_raises_on_well_shaped_events_with_arbitrary_values(
    event: str, kind: str, details: dict[str, Any]
) -> None:
    entry = {"date_time": "2025-10-24T14:51:00Z", "type": kind, "details": details}
    person = {"user_id": "1", "participant_id": "1", "id": "1", "qos": [entry], "data": [details]}
    body = {
        "event": event,
        "event_ts": 1,
        "payload": {
            "account_id": "a",
            "object": {
                "uuid": "u",
                "session_id": "s",
                "call_id": "c",
                "participant": person,
                "user": person,
                "call_qos": {"type": "caller", "qos": {**entry, "type": "sending"}},
            },
        },
    }
    decoded = decode(body)
    assert not isinstance(decoded, UnknownEvent)
    for stream in getattr(decoded, "streams", ()):
        for value in (getattr(stream, "latency", None), getattr(stream, "bitrate", None)):
            assert value is None or value == value  # never NaN


def test_rest_summary_items_carry_the_participants_identity_for_detail_mode() -> None:
    from qss_exporter.zoom.events import decode_rest_summary

    page = load_sample("qos_summary.meetings")
    item = page["participants"][0]
    record = decode_rest_summary("meeting", "acct", "uuid==", item)
    assert isinstance(record, SummaryRecord)
    assert record.identity.email == item["email"]
    assert record.identity.name == item["user_name"]
    assert record.identity.user_id == item["id"]


def _nested(depth: int, leaf: object) -> object:
    value = leaf
    for _ in range(depth):
        value = {"quality": value}
    return value


def test_quality_nested_at_any_depth_is_read_one_level_deep_and_never_recursed() -> None:
    quirk = decode(_qos_with({"quality": _nested(1, "poor")}, kind="audio_quality"))
    assert isinstance(quirk, QosRecord)
    assert quirk.grades == (QualityGrade("audio", "poor", None),)
    deep = decode(_qos_with({"quality": _nested(5000, "poor"), "quality_score": "3"}, kind="audio_quality"))
    assert isinstance(deep, QosRecord)
    assert deep.grades == (QualityGrade("audio", None, 3.0),)
    assert deep.parse_errors == (("quality", "unparsable"),)


@pytest.mark.parametrize("where", ["leg", "direction"])
@pytest.mark.parametrize("value", [["caller"], {"type": "caller"}, 7, None])
def test_phone_leg_and_direction_of_any_type_never_raise(where: str, value: object) -> None:
    body = copy.deepcopy(load_sample("phone.call_qos"))
    leg = body["payload"]["object"]["call_qos"]
    if where == "leg":
        leg["type"] = value
    else:
        leg["qos"]["type"] = value
    record = decode(body)
    assert isinstance(record, PhoneQosRecord)
    assert record.samples == ()
    field = "call_qos.type" if where == "leg" else "qos.type"
    assert record.parse_errors == ((field, "malformed"),)


@pytest.mark.parametrize("huge", [10**5000, -(10**5000), 2**64], ids=["1e5000", "-1e5000", "2**64"])
def test_ids_that_are_huge_integers_are_invalid_not_a_crash(huge: int) -> None:
    body = copy.deepcopy(load_sample("meeting.participant_qos"))
    body["payload"]["object"]["participant"]["user_id"] = huge
    assert decode(body) == InvalidEvent("meeting.participant_qos", "user_id")


def test_ids_longer_than_any_zoom_id_are_invalid() -> None:
    body = copy.deepcopy(load_sample("meeting.participant_qos"))
    body["payload"]["object"]["uuid"] = "u" * 129
    assert decode(body) == InvalidEvent("meeting.participant_qos", "uuid")


def test_one_entry_per_type_is_taken_and_the_rest_counted() -> None:
    body = _qos_with({"bitrate": "63 kbps", "latency": "20 ms"})
    entry = body["payload"]["object"]["participant"]["qos"][0]
    body["payload"]["object"]["participant"]["qos"] = [copy.deepcopy(entry) for _ in range(10_000)]
    record = decode(body)
    assert isinstance(record, QosRecord)
    assert len(record.streams) == 1
    assert record.parse_errors == (("qos", "too_many_entries"),) * 9_999


def test_entries_beyond_the_bound_are_refused_without_being_read() -> None:
    body = _qos_with({})
    entries = [{"type": f"future_type_{n}", "details": {}} for n in range(EVENT_ENTRIES_MAX)]
    entries.append({"type": "audio_input", "details": {"bitrate": "63 kbps"}})
    body["payload"]["object"]["participant"]["qos"] = entries
    record = decode(body)
    assert isinstance(record, QosRecord)
    assert record.streams == ()
    assert record.parse_errors == (("qos", "too_many_entries"),)


def test_summary_entries_and_phone_legs_are_bounded_the_same_way() -> None:
    summary = copy.deepcopy(load_sample("meeting.participant_qos_summary"))
    entries = summary["payload"]["object"]["participant"]["qos"]
    entries.append(copy.deepcopy(entries[0]))
    record = decode(summary)
    assert isinstance(record, SummaryRecord)
    assert record.parse_errors == (("qos", "too_many_entries"),)
    phone = copy.deepcopy(load_sample("phone.call_qos_summary"))
    legs = phone["payload"]["object"]["call_qos"]
    legs.append(copy.deepcopy(legs[0]))
    call = decode(phone)
    assert isinstance(call, PhoneQosRecord)
    assert len(call.samples) == 4
    assert call.parse_errors == (("call_qos", "too_many_entries"),)


def test_free_text_kept_for_detail_mode_is_length_bounded_and_printable() -> None:
    body = copy.deepcopy(load_sample("meeting.participant_qos_summary"))
    body["payload"]["object"]["id"] = "9" * 5000
    person = body["payload"]["object"]["participant"]
    person["user_name"] = "Ann\r\n" + "x" * 5000
    person["email"] = "a" * 5000 + "@example.com"
    record = decode(body)
    assert isinstance(record, SummaryRecord)
    assert record.meeting_number == ""  # no meeting number is 5000 digits long
    assert record.identity.name.startswith("Ann  x")
    assert len(record.identity.name) == FREE_TEXT_MAX
    assert len(record.identity.email) <= FREE_TEXT_MAX
    assert record.identity.name.isprintable()
