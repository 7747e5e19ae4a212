"""Implausible values are never observed: each is counted by its field and reason, and `_sum` stays true."""

from __future__ import annotations

from tests.adversarial.conftest import delta, post, qos_event, scrape
from tests.process import AgentProcess


def test_implausible_values_are_counted_by_reason_and_never_observed(shared_agent: AgentProcess) -> None:
    body = qos_event()
    entries = body["payload"]["object"]["participant"]["qos"]
    audio_in, audio_out, video_in = entries[0]["details"], entries[1]["details"], entries[2]["details"]
    audio_in.update(latency="-5 ms", jitter="9" * 300 + " ms", avg_loss="-50%", bitrate="-64 kbps")
    audio_out.update(jitter="1000000000000000000000 ms", max_loss="250%", latency="lots")
    video_in.update(frame_rate="1000 fps", resolution="99999*99999")
    cpu = next(e["details"] for e in entries if e["type"] == "cpu_usage")
    cpu.update(zoom_avg_cpu_usage="-1%", system_max_cpu_usage="400%")
    before = scrape(shared_agent)
    assert post(shared_agent, body).status_code == 200
    after = scrape(shared_agent)
    counted = {
        (field, reason): delta(before, after, "zoom_qss_parse_errors_total", field=field, reason=reason)
        for field in ("latency", "jitter", "avg_loss", "max_loss", "bitrate", "frame_rate", "resolution")
        for reason in ("out_of_range", "unparsable")
    }
    counted |= {
        (field, "out_of_range"): delta(before, after, "zoom_qss_parse_errors_total", field=field, reason="out_of_range")
        for field in ("zoom_avg_cpu_usage", "system_max_cpu_usage")
    }
    assert {key: n for key, n in counted.items() if n} == {
        ("latency", "out_of_range"): 1,
        ("latency", "unparsable"): 1,
        ("jitter", "out_of_range"): 2,
        ("avg_loss", "out_of_range"): 1,
        ("max_loss", "out_of_range"): 1,
        ("bitrate", "out_of_range"): 1,
        ("frame_rate", "out_of_range"): 1,
        ("resolution", "out_of_range"): 1,
        ("zoom_avg_cpu_usage", "out_of_range"): 1,
        ("system_max_cpu_usage", "out_of_range"): 1,
    }
    # Only the plausible values were observed: the audio input stream kept max_loss alone, and the
    # sums grew by exactly the sample's remaining values (video_output 44 ms, video_input 39 ms).
    assert delta(before, after, "zoom_qss_media_latency_seconds_count") == 2
    assert abs(delta(before, after, "zoom_qss_media_latency_seconds_sum") - (0.039 + 0.044)) < 1e-9
    assert delta(before, after, "zoom_qss_media_jitter_seconds_count") == 2  # video in and out
    assert delta(before, after, "zoom_qss_media_packet_loss_ratio_count") == 3
    assert delta(before, after, "zoom_qss_media_bitrate_bytes_per_second_count") == 3
    assert delta(before, after, "zoom_qss_media_frames_per_second_count") == 1  # video_output's 14 fps
    assert delta(before, after, "zoom_qss_cpu_usage_ratio_count", measure="zoom_avg") == 0
    assert delta(before, after, "zoom_qss_cpu_usage_ratio_count", measure="zoom_max") == 1
    assert delta(before, after, "zoom_qss_media_records_total") == 4  # every stream still counts its minute
    for (name, _), value in after.items():
        if name.endswith("_sum") and not name.startswith("zoom_qss_wifi_rssi"):
            assert value >= 0, name  # nothing negative was ever observed


def test_phone_values_outside_their_ranges_are_refused(shared_agent: AgentProcess) -> None:
    body = qos_event("phone.call_qos")
    details = body["payload"]["object"]["call_qos"]["qos"]["details"]
    # (A MOS of exactly 0 is "not measured", counted in zoom_qss_unmeasured_values_total: tests/test_unmeasured.py.)
    details.update(mos="0.5", network_delay="-3", bitrate="99999999999")
    before = scrape(shared_agent)
    assert post(shared_agent, body).status_code == 200
    after = scrape(shared_agent)
    for field in ("mos", "network_delay", "bitrate"):
        assert delta(before, after, "zoom_qss_parse_errors_total", field=field, reason="out_of_range") == 1
    assert delta(before, after, "zoom_qss_phone_mos_count") == 0
    assert delta(before, after, "zoom_qss_phone_jitter_seconds_count") == 1  # the plausible one is kept
