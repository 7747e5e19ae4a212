"""Issue 12 point 1: an account that sends one real-time event per QoS type is not a stream of duplicates.

Zoom's "Quality of Service Subscription Explainer" (library.zoom.com, current version) gives the
frequency as "Approx. 1 event per minute, per participant (per QoS metric or aggregated set depending
on account settings)". In the per-metric mode the events of one minute share `event_ts` and
`date_time`; the dedupe key used to be (event, account, instance, participant, event_ts, latest
date_time), so the second and later types of each minute were dropped as duplicates. The key is now
built from what the event carries (its entry types, times and values), so:

* split deliveries of one minute all count (each type once);
* a true redelivery (same body, new `x-zm-request-timestamp` and signature) counts once;
* two events with different content count twice, even with the same `event_ts` and `date_time`
  (content: the entry types, the latest `date_time` and the values read, in the order Zoom sent them);
* the same body by webhook and by WebSocket counts once.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from qss_exporter.zoom.events import decode
from qss_exporter.zoom.records import QosRecord
from tests.conftest import SECRET, AgentFactory, Series, base_config, parse_metrics, total
from tests.fake_zoom import FakeZoom, serve_fake_zoom
from tests.fake_zoom_websocket import FakeZoomWebSocket, message_frame, serve_fake_zoom_websocket
from tests.process import AgentProcess
from tests.samples import load_sample
from tests.sources.test_websocket import scraped, websocket_config

# The types of the sample minute that are counted somewhere: four active media streams, two grades,
# CPU, Wi-Fi RSSI and a network notification (as_input is all "": an inactive stream).
STREAM_TYPES = ("audio_input", "audio_output", "video_input", "video_output")


def split_by_type(event: dict[str, Any]) -> list[dict[str, Any]]:
    """One event per QoS entry, all with the original `event_ts` and `date_time` (per-metric delivery)."""
    entries = event["payload"]["object"]["participant"]["qos"]
    out = []
    for entry in entries:
        part = copy.deepcopy(event)
        part["payload"]["object"]["participant"]["qos"] = [copy.deepcopy(entry)]
        out.append(part)
    return out


def expected_once(samples: Series) -> None:
    """What the sample minute gives when every type counted exactly once."""
    for kind in STREAM_TYPES:
        media, direction = kind.split("_")
        assert total(samples, "zoom_qss_media_records_total", media=media, direction=direction) == 1, kind
        assert total(samples, "zoom_qss_media_latency_seconds_count", media=media, direction=direction) == 1, kind
    assert total(samples, "zoom_qss_quality_records_total", media="audio", quality="good") == 1
    assert total(samples, "zoom_qss_quality_records_total", media="video", quality="fair") == 1
    assert total(samples, "zoom_qss_cpu_usage_ratio_count") == 3  # zoom_avg, zoom_max, system_max
    assert total(samples, "zoom_qss_wifi_rssi_dbm_bucket", le="+Inf") == 1
    assert total(samples, "zoom_qss_network_notifications_total", notification="network_bandwidth_low") == 1


def test_split_events_of_one_minute_have_distinct_keys_and_a_redelivery_the_same() -> None:
    minute = load_sample("meeting.participant_qos")
    parts = [decode(part) for part in split_by_type(minute)]
    assert all(isinstance(part, QosRecord) for part in parts)
    keys = [part.dedupe_key for part in parts if isinstance(part, QosRecord)]
    assert len(set(keys)) == len(keys) == 10
    redelivered = decode(orjson.loads(orjson.dumps(split_by_type(minute)[3])))
    assert isinstance(redelivered, QosRecord)
    assert redelivered.dedupe_key == keys[3]
    # The aggregated event of the same minute is a different delivery again.
    whole = decode(minute)
    assert isinstance(whole, QosRecord)
    assert whole.dedupe_key not in keys


def test_key_follows_types_values_and_times() -> None:
    minute = load_sample("meeting.participant_qos")
    key = decode_key(minute)
    # Same types, same event_ts and date_time, another latency: another record.
    changed = copy.deepcopy(minute)
    changed["payload"]["object"]["participant"]["qos"][0]["details"]["latency"] = "39 ms"
    assert decode_key(changed) != key
    # The next minute of the same participant.
    later = copy.deepcopy(minute)
    for entry in later["payload"]["object"]["participant"]["qos"]:
        entry["date_time"] = "2025-10-24T14:52:00Z"
    assert decode_key(later) != key
    # Units written differently are the same content ("41 kbps" and "41kbps" both give 5125 bytes/s).
    spelled = copy.deepcopy(minute)
    spelled["payload"]["object"]["participant"]["qos"][0]["details"]["bitrate"] = "41kbps"
    assert decode_key(spelled) == key


def test_entries_without_time_fall_back_to_event_ts() -> None:
    """Without any `date_time`, the event's `event_ts` is what tells two minutes of equal values apart."""
    minute = load_sample("meeting.participant_qos")
    for entry in minute["payload"]["object"]["participant"]["qos"]:
        del entry["date_time"]
    next_minute = copy.deepcopy(minute)
    next_minute["event_ts"] += 60_000
    assert decode_key(minute) != decode_key(next_minute)
    # With times, event_ts is left out: a copy that another channel stamped differently is the same record.
    stamped = load_sample("meeting.participant_qos")
    restamped = copy.deepcopy(stamped)
    restamped["event_ts"] += 1234
    assert decode_key(stamped) == decode_key(restamped)


def decode_key(event: dict[str, Any]) -> object:
    record = decode(event)
    assert isinstance(record, QosRecord)
    return record.dedupe_key


async def test_split_deliveries_by_webhook_all_count_and_redeliveries_do_not(start_agent: AgentFactory) -> None:
    running = await start_agent()
    parts = split_by_type(load_sample("meeting.participant_qos"))
    for part in parts:
        assert (await running.post(part)).status_code == 200
    samples = await running.scrape()
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="accepted") == len(parts)
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="duplicate") == 0
    assert total(samples, "zoom_qss_events_total", event="meeting.participant_qos") == len(parts)
    expected_once(samples)
    # Zoom retries each one later: new delivery timestamp, new signature, same body.
    running.clock.advance(300)
    for part in parts:
        assert (await running.post(part)).status_code == 200
    again = await running.scrape()
    assert total(again, "zoom_qss_webhook_requests_total", outcome="duplicate") == len(parts)
    expected_once(again)


async def test_different_content_with_the_same_stamps_counts_twice(start_agent: AgentFactory) -> None:
    running = await start_agent()
    first = load_sample("meeting.participant_qos")
    second = copy.deepcopy(first)
    for entry in second["payload"]["object"]["participant"]["qos"]:
        if entry["type"] == "audio_input":
            entry["details"]["latency"] = "240 ms"
    assert (await running.post(first)).status_code == 200
    assert (await running.post(second)).status_code == 200
    samples = await running.scrape()
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="duplicate") == 0
    assert total(samples, "zoom_qss_media_latency_seconds_count", media="audio", direction="input") == 2
    assert total(samples, "zoom_qss_media_latency_seconds_bucket", media="audio", direction="input", le="0.15") == 1


@pytest.fixture
async def zoom() -> AsyncIterator[FakeZoom]:
    async with serve_fake_zoom(FakeZoom()) as fake:
        yield fake


@pytest.fixture
async def zoom_ws(zoom: FakeZoom) -> AsyncIterator[FakeZoomWebSocket]:
    async with serve_fake_zoom_websocket(FakeZoomWebSocket(zoom=zoom)) as fake:
        yield fake


async def test_split_deliveries_over_websocket_and_webhook_count_each_type_once(
    zoom: FakeZoom, zoom_ws: FakeZoomWebSocket, start_agent: AgentFactory
) -> None:
    running = await start_agent(**websocket_config(zoom, zoom_ws.url))
    connection = await zoom_ws.until_connections(1)
    parts = split_by_type(load_sample("meeting.participant_qos"))
    # Half the types arrive over the WebSocket first, the others by webhook first; then every type
    # comes again the other way (an account subscribed both ways gets each event twice).
    for index, part in enumerate(parts):
        if index % 2 == 0:
            await zoom_ws.send(message_frame(part), connection)
        else:
            assert (await running.post(part)).status_code == 200
    await scraped(running, lambda s: total(s, "zoom_qss_websocket_events_total", outcome="accepted") == 5)
    for index, part in enumerate(parts):
        if index % 2 == 1:
            await zoom_ws.send(message_frame(part), connection)
        else:
            assert (await running.post(part)).status_code == 200
    samples = await scraped(running, lambda s: total(s, "zoom_qss_websocket_events_total", outcome="duplicate") == 5)
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="duplicate") == 5
    assert total(samples, "zoom_qss_events_total", event="meeting.participant_qos") == len(parts)
    expected_once(samples)


async def test_split_deliveries_through_the_agent_process(tmp_path: Path) -> None:
    config = base_config()
    agent = await asyncio.to_thread(AgentProcess, tmp_path, config)
    try:
        parts = [orjson.dumps(part) for part in split_by_type(load_sample("meeting.participant_qos"))]
        for body in parts:
            assert (await asyncio.to_thread(agent.post_signed, body, SECRET)).status_code == 200
        samples = parse_metrics(await asyncio.to_thread(agent.scrape_text))
        expected_once(samples)
        for body in parts:  # redelivered: new timestamp and signature
            assert (await asyncio.to_thread(agent.post_signed, body, SECRET)).status_code == 200
        samples = parse_metrics(await asyncio.to_thread(agent.scrape_text))
        assert total(samples, "zoom_qss_webhook_requests_total", outcome="duplicate") == len(parts)
        expected_once(samples)
        assert agent.process.poll() is None
    finally:
        await asyncio.to_thread(agent.kill)
