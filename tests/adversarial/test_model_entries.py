"""One event counts at most one entry per QoS type: the rest is refused and counted, never recorded."""

from __future__ import annotations

import copy

from tests.adversarial.conftest import delta, post, qos_event, scrape
from tests.process import AgentProcess


def test_ten_thousand_entries_count_as_one_participant_minute(shared_agent: AgentProcess) -> None:
    body = qos_event()
    audio = {"type": "audio_input", "details": {"latency": "38 ms"}}
    grade = {"type": "audio_quality", "details": {"quality": "good"}}
    body["payload"]["object"]["participant"]["qos"] = [audio, grade] * 5_000  # ~0.5 MB
    before = scrape(shared_agent)
    response = post(shared_agent, body)
    after = scrape(shared_agent)
    assert response.status_code == 200
    assert delta(before, after, "zoom_qss_media_records_total") == 1
    assert delta(before, after, "zoom_qss_quality_records_total") == 1
    assert delta(before, after, "zoom_qss_media_latency_seconds_count") == 1
    # The first entry of each type is taken, the next 62 are refused as repeats, the rest unread.
    assert delta(before, after, "zoom_qss_parse_errors_total", field="qos", reason="too_many_entries") == 9_998
    assert delta(before, after, "zoom_qss_webhook_requests_total", outcome="accepted") == 1


def test_a_real_event_split_by_type_is_still_counted_whole(shared_agent: AgentProcess) -> None:
    """The bound is per type, so an account that sends one event per QoS type loses nothing."""
    body = qos_event()
    entries = body["payload"]["object"]["participant"]["qos"]
    before = scrape(shared_agent)
    for n, entry in enumerate(entries):
        part = copy.deepcopy(body)
        part["event_ts"] += n  # each delivery is its own event
        part["payload"]["object"]["participant"]["qos"] = [entry]
        assert post(shared_agent, part).status_code == 200
    after = scrape(shared_agent)
    assert delta(before, after, "zoom_qss_media_records_total") == 4
    assert delta(before, after, "zoom_qss_parse_errors_total", reason="too_many_entries") == 0


def test_phone_legs_and_data_entries_are_bounded_too(shared_agent: AgentProcess) -> None:
    phone = qos_event("phone.call_qos_summary")
    legs = phone["payload"]["object"]["call_qos"]
    phone["payload"]["object"]["call_qos"] = legs * 1_000
    data = qos_event("meeting.participant_data")
    person = data["payload"]["object"]["participant"]
    person["data"] = person["data"] * 1_000
    before = scrape(shared_agent)
    assert post(shared_agent, phone).status_code == 200
    assert post(shared_agent, data).status_code == 200
    after = scrape(shared_agent)
    assert delta(before, after, "zoom_qss_phone_mos_count") == 4  # two legs, two directions
    assert delta(before, after, "zoom_qss_parse_errors_total", field="call_qos", reason="too_many_entries") == 1_998
    assert delta(before, after, "zoom_qss_parse_errors_total", field="data", reason="too_many_entries") == 992
