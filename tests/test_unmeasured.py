"""Issue 12 point 4: zeros that mean "not measured" are counted, never observed.

Zoom's own summary examples report `"0 ms"` latency on every output stream while the bitrate is
non-zero (REFERENCE.md 1.7 lists `"0 ms"` among the literal forms of `latency`, `min_/avg_/max_latency`
and `"0ms"` for the REST jitter). A one-way network delay of exactly zero is no measurement; recording
it drags every output-direction latency percentile to zero. The rule, field by field (docs/metrics.md
"Zeros that are not measurements"):

* latency (`latency`, `avg_latency`, `max_latency`, phone `network_delay`): 0 is not measured;
* jitter: 0 is a measurement (a smooth path, at Zoom's 1 ms resolution), unless the same entry's
  latency was not measured either (then the entry's path was not measured);
* bitrate, frame rate, resolution `0*0`: 0 means no media flowed (camera off, muted): not measured;
* packet loss: 0 % is real (the healthy value, counted from sequence numbers): always observed;
* MOS and `quality_score`: 0 is outside the 1-5 scale; Zoom's Video SDK scores use 0 for "unknown";
* RSSI: 0 dBm is not a Wi-Fi signal a client can receive;
* CPU: a running client's maximum CPU over a record is never 0 %; Video SDK web clients cannot read
  CPU at all (Zoom added CPU pressure levels for them); an average of 0 % is kept when the maximum
  is above 0 (integer percentages: below 0.5 %).

Zeros inside an inactive entry (every value empty or zero: camera off, nobody sharing) are not counted:
that entry is no stream at all (docs/metrics.md).
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from qss_exporter.zoom.events import decode
from qss_exporter.zoom.measured import UNMEASURED_FIELDS
from qss_exporter.zoom.records import CpuUsage, PhoneQosRecord, QosRecord, QualityGrade, SummaryRecord
from qss_exporter.zoom.summaries import decode_rest_summary
from tests.conftest import SECRET, AgentFactory, base_config, parse_metrics, total
from tests.process import AgentProcess
from tests.samples import load_sample


def realtime(*entries: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(load_sample("meeting.participant_qos"))
    body["payload"]["object"]["participant"]["qos"] = [
        {"date_time": "2025-10-24T14:51:00Z", "type": kind, "details": details} for kind, details in entries
    ]
    return body


def summary_with_zero_output_latency() -> dict[str, Any]:
    """The shape of Zoom's summary examples: output streams at 0 ms while their bitrate is not 0."""
    body: dict[str, Any] = copy.deepcopy(load_sample("meeting.participant_qos_summary"))
    qos = body["payload"]["object"]["participant"]["qos"]
    for entry in qos:
        if entry["type"] in ("audio_output", "video_output"):
            entry["details"].update(
                {
                    "min_bitrate": "12 kbps",
                    "avg_bitrate": "48 kbps",
                    "max_bitrate": "96 kbps",
                    "min_latency": "0 ms",
                    "avg_latency": "0 ms",
                    "max_latency": "0 ms",
                    "min_jitter": "0 ms",
                    "avg_jitter": "0 ms",
                    "max_jitter": "0 ms",
                    "min_loss": "0.0%",
                    "avg_loss": "0.0%",
                    "max_loss": "0.0%",
                }
            )
    return body


AUDIO = {"bitrate": "40 kbps", "latency": "38 ms", "jitter": "4 ms", "avg_loss": "0.0%", "max_loss": "0.0%"}


def test_zero_output_latency_in_a_summary_is_counted_not_observed() -> None:
    record = decode(summary_with_zero_output_latency())
    assert isinstance(record, SummaryRecord)
    outputs = [s for s in record.streams if s.direction == "output"]
    assert [s.media for s in outputs] == ["audio", "video"]
    for stream in outputs:
        assert (stream.avg_latency, stream.max_latency, stream.avg_jitter, stream.max_jitter) == (None,) * 4
        assert (stream.avg_bitrate, stream.avg_loss, stream.max_loss) == (48 * 125, 0.0, 0.0)  # 0 % loss is real
    assert sorted(record.unmeasured) == sorted(["avg_latency", "max_latency", "avg_jitter", "max_jitter"] * 2)
    inputs = [s for s in record.streams if s.direction == "input"]
    assert all(s.avg_latency for s in inputs)


def test_realtime_zero_latency_and_its_jitter_are_not_measured_but_loss_is() -> None:
    record = decode(realtime(("audio_output", {**AUDIO, "latency": "0 ms", "jitter": "0 ms"})))
    assert isinstance(record, QosRecord)
    (stream,) = record.streams
    assert (stream.latency, stream.jitter, stream.avg_loss, stream.bitrate) == (None, None, 0.0, 5000.0)
    assert record.unmeasured == ("latency", "jitter")


def test_zero_jitter_beside_a_measured_latency_is_real() -> None:
    record = decode(realtime(("audio_input", {**AUDIO, "jitter": "0 ms"})))
    assert isinstance(record, QosRecord)
    (stream,) = record.streams
    assert (stream.latency, stream.jitter) == (0.038, 0.0)
    assert record.unmeasured == ()


def test_no_media_flowing_is_not_a_bitrate_or_frame_rate_measurement() -> None:
    video = {**AUDIO, "bitrate": "0 kbps", "resolution": "0*0", "frame_rate": "0 fps"}
    record = decode(realtime(("video_input", video)))
    assert isinstance(record, QosRecord)
    (stream,) = record.streams
    assert (stream.bitrate, stream.frame_rate, stream.height, stream.latency) == (None, None, None, 0.038)
    assert record.unmeasured == ("bitrate", "frame_rate", "resolution")


def test_an_inactive_entry_counts_nothing() -> None:
    idle = {"bitrate": "0 kbps", "latency": "0 ms", "jitter": "0 ms", "avg_loss": "0.0%", "max_loss": "0.0%"}
    record = decode(realtime(("video_output", {**idle, "resolution": "0*0", "frame_rate": "0 fps"})))
    assert isinstance(record, QosRecord)
    assert (record.streams, record.unmeasured) == ((), ())


def test_grades_rssi_and_cpu_zeros() -> None:
    record = decode(
        realtime(
            ("audio_quality", {"quality": "good", "quality_score": "0"}),
            ("video_quality", {"quality_score": "0.00"}),
            ("wifi_rssi", {"min_rssi": "0", "avg_rssi": "0", "max_rssi": "0", "rssi_unit": "dBm"}),
            ("cpu_usage", {"zoom_avg_cpu_usage": "0%", "zoom_max_cpu_usage": "0%", "system_max_cpu_usage": "0%"}),
        )
    )
    assert isinstance(record, QosRecord)
    assert record.grades == (QualityGrade("audio", "good", None),)  # a score of 0 alone is no grade
    assert (record.rssi_dbm, record.cpu) == (None, None)
    assert record.unmeasured == (
        "quality_score",
        "quality_score",
        "avg_rssi",
        "zoom_avg_cpu_usage",
        "zoom_max_cpu_usage",
        "system_max_cpu_usage",
    )
    small = decode(realtime(("cpu_usage", {"zoom_avg_cpu_usage": "0%", "zoom_max_cpu_usage": "3%"})))
    assert isinstance(small, QosRecord)
    assert (small.cpu, small.unmeasured) == (CpuUsage(0.0, 0.03, None), ())


def test_phone_zeros() -> None:
    body = copy.deepcopy(load_sample("phone.call_qos"))
    body["payload"]["object"]["call_qos"]["qos"]["details"].update(
        {"network_delay": "0", "jitter": "0", "mos": "0", "bitrate": "0", "avg_loss": "0.0"}
    )
    record = decode(body)
    assert isinstance(record, PhoneQosRecord)
    (sample,) = record.samples
    assert (sample.latency, sample.jitter, sample.mos, sample.bitrate, sample.avg_loss) == (None, None, None, None, 0.0)
    assert record.unmeasured == ("mos", "network_delay", "jitter", "bitrate")
    assert record.parse_errors == ()  # a MOS of 0 used to be refused as out of range


def test_rest_summaries_follow_the_same_rule() -> None:
    page = load_sample("qos_summary.meetings")
    item = copy.deepcopy(next(p for p in page["participants"] if "audio_output" in [q["type"] for q in p["qos"]]))
    for entry in item["qos"]:
        if entry["type"] == "audio_output":
            entry["details"].update({"avg_latency": "0 ms", "max_latency": "0 ms", "avg_jitter": "0ms"})
    record = decode_rest_summary("meeting", "acct", "uuid==", item)
    assert isinstance(record, SummaryRecord)
    (output,) = [s for s in record.streams if s.direction == "output"]
    assert (output.avg_latency, output.max_latency, output.avg_jitter) == (None, None, None)
    assert output.max_jitter == 0.048  # "48ms": a measurement, kept
    assert record.unmeasured == ("avg_latency", "max_latency", "avg_jitter")


_VALUE = st.sampled_from(["", "0", "0 ms", "0.0", "12", "12 ms", "0.5", "3.7"])


@settings(max_examples=300, deadline=None)
@given(
    latency=_VALUE,
    jitter=_VALUE,
    bitrate=_VALUE,
    loss=_VALUE,
    fps=_VALUE,
    kind=st.sampled_from(["audio_output", "video_output", "as_device_to_crc"]),
)
def test_every_value_of_an_active_entry_is_observed_or_counted_once(
    latency: str, jitter: str, bitrate: str, loss: str, fps: str, kind: str
) -> None:
    """Nothing lost, nothing double counted, and no zero latency, bitrate or frame rate observed."""
    details = {"latency": latency, "jitter": jitter, "bitrate": bitrate, "avg_loss": loss, "frame_rate": fps}
    record = decode(realtime((kind, details)))
    assert isinstance(record, QosRecord)
    present = {key for key, value in details.items() if value}
    refused = {field for field, _ in record.parse_errors}  # "12 ms" of packet loss, say
    if not record.streams:
        assert record.unmeasured == ()  # inactive: every present value is a zero (or refused)
        assert all(value.split()[0] in ("0", "0.0") or key in refused for key, value in details.items() if value)
        return
    (stream,) = record.streams
    observed = {
        key
        for key, value in {
            "latency": stream.latency,
            "jitter": stream.jitter,
            "bitrate": stream.bitrate,
            "avg_loss": stream.avg_loss,
            "frame_rate": stream.frame_rate,
        }.items()
        if value is not None
    }
    unmeasured = set(record.unmeasured)
    assert len(record.unmeasured) == len(unmeasured)
    assert len(observed) + len(unmeasured) + len(refused) == len(observed | unmeasured | refused)  # disjoint
    assert observed | unmeasured | refused == present
    assert 0.0 not in (stream.latency, stream.bitrate, stream.frame_rate)


async def test_agent_counts_unmeasured_zeros_by_field_from_start(start_agent: AgentFactory) -> None:
    running = await start_agent()
    before = await running.scrape()
    for field in UNMEASURED_FIELDS:
        assert ("zoom_qss_unmeasured_values_total", frozenset({("field", field)})) in before, field
    assert total(before, "zoom_qss_unmeasured_values_total") == 0
    assert (await running.post(summary_with_zero_output_latency())).status_code == 200
    samples = await running.scrape()
    assert total(samples, "zoom_qss_unmeasured_values_total", field="avg_latency") == 2
    assert total(samples, "zoom_qss_unmeasured_values_total", field="max_jitter") == 2
    assert total(samples, "zoom_qss_participant_session_latency_seconds_count", direction="output") == 0
    assert total(samples, "zoom_qss_participant_session_latency_seconds_count", direction="input") == 4  # avg, max
    assert total(samples, "zoom_qss_participant_session_packet_loss_ratio_count", direction="output") == 4
    assert total(samples, "zoom_qss_parse_errors_total") == 0


async def test_unmeasured_zeros_through_the_agent_process(tmp_path: Path) -> None:
    agent = await asyncio.to_thread(AgentProcess, tmp_path, base_config())
    try:
        body = realtime(("audio_output", {**AUDIO, "latency": "0 ms"}), ("audio_input", AUDIO))
        response = await asyncio.to_thread(agent.post_signed, orjson.dumps(body), SECRET)
        assert response.status_code == 200
        samples = parse_metrics(await asyncio.to_thread(agent.scrape_text))
        assert total(samples, "zoom_qss_unmeasured_values_total", field="latency") == 1
        assert total(samples, "zoom_qss_media_latency_seconds_count", direction="output") == 0
        assert total(samples, "zoom_qss_media_latency_seconds_count", direction="input") == 1
        assert total(samples, "zoom_qss_media_jitter_seconds_count", direction="output") == 1  # 4 ms: measured
        assert agent.process.poll() is None
    finally:
        await asyncio.to_thread(agent.kill)
