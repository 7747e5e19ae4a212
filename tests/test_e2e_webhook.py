"""End to end: the real agent on loopback, signed webhooks over HTTP, values read back from /metrics."""

from __future__ import annotations

import asyncio
import copy
import re
import time
from typing import Any

import orjson
import pytest

from tests.conftest import OTHER_SECRET, ROTATED_SECRET, SECRET, AgentFactory, RunningAgent, Series, total
from tests.samples import SAMPLES, load_sample, sample_bytes

AUDIO_IN = {
    "account": "acme",
    "product": "meeting",
    "media": "audio",
    "direction": "input",
    "path": "client",
}


def qos_body(latency: str = "134 ms", participant: str = "16782336", event_ts: int | None = None) -> dict[str, Any]:
    """The shared sample, happening now (activity is judged by event time)."""
    body: dict[str, Any] = copy.deepcopy(load_sample("meeting.participant_qos"))
    body["event_ts"] = event_ts if event_ts is not None else int(time.time() * 1000)
    person = body["payload"]["object"]["participant"]
    person["user_id"] = participant
    person["qos"][0]["details"]["latency"] = latency
    return body


def qos_families(samples: Series) -> Series:
    """Every QoS-derived sample (what a rejected request must leave untouched); not the process's own families."""
    return {
        key: value
        for key, value in samples.items()
        if key[0].startswith("zoom_qss_")
        and not re.match(r"zoom_qss_(webhook|events|event_lag|parse|series|dedupe)", key[0])
    }


async def test_signed_event_changes_exactly_the_expected_series(start_agent: AgentFactory) -> None:
    running = await start_agent()
    before = await running.scrape()
    response = await running.post(qos_body("134 ms"))
    assert response.status_code == 200
    after = await running.scrape()
    labels = {**AUDIO_IN, "network_type": "unknown", "site": "unknown"}
    assert (
        total(after, "zoom_qss_media_latency_seconds_count", **labels)
        - total(before, "zoom_qss_media_latency_seconds_count", **labels)
        == 1
    )
    assert total(after, "zoom_qss_media_latency_seconds_sum", **labels) == pytest.approx(0.134)
    assert total(after, "zoom_qss_media_latency_seconds_bucket", **labels, le="0.15") == 1
    assert total(after, "zoom_qss_media_latency_seconds_bucket", **labels, le="0.08") == 0
    assert total(after, "zoom_qss_media_bitrate_bytes_per_second_sum", **labels) == 41 * 125
    assert total(after, "zoom_qss_media_packet_loss_ratio_sum", **labels) == pytest.approx(0.002)
    assert total(after, "zoom_qss_media_max_packet_loss_ratio_sum", **labels) == pytest.approx(0.014)
    # Four active streams (as_input is empty), one participant-minute each.
    assert total(after, "zoom_qss_media_records_total") == 4
    assert total(after, "zoom_qss_media_frames_per_second_sum", media="video", direction="input") == 25
    assert total(after, "zoom_qss_media_frame_height_pixels_sum", media="video", direction="output") == 360
    assert total(after, "zoom_qss_quality_records_total", media="audio", quality="good") == 1
    assert total(after, "zoom_qss_quality_records_total", media="video", quality="fair") == 1
    assert total(after, "zoom_qss_quality_score_sum", media="audio") == pytest.approx(4.12)
    assert total(after, "zoom_qss_cpu_usage_ratio_sum", measure="system_max") == pytest.approx(0.46)
    assert total(after, "zoom_qss_wifi_rssi_dbm_sum") == -63
    assert total(after, "zoom_qss_network_notifications_total", notification="network_bandwidth_low") == 1
    assert total(after, "zoom_qss_active_participants", account="acme", product="meeting") == 1
    assert total(after, "zoom_qss_active_meetings", account="acme", product="meeting") == 1
    assert total(after, "zoom_qss_webhook_requests_total", outcome="accepted") == 1
    assert total(after, "zoom_qss_events_total", source="webhook", event="meeting.participant_qos") == 1
    assert total(after, "zoom_qss_parse_errors_total") == 0


async def test_redelivery_with_new_timestamp_and_signature_counts_once(start_agent: AgentFactory) -> None:
    running = await start_agent()
    body = orjson.dumps(qos_body())
    first = await running.post(body)
    assert total(await running.scrape(), "zoom_qss_media_latency_seconds_count", **AUDIO_IN) == 1
    running.clock.advance(300)  # Zoom's first retry comes 5 minutes later, signed anew
    second = await running.post(body, secret=ROTATED_SECRET)
    assert (first.status_code, second.status_code) == (200, 200)
    after = await running.scrape()
    assert total(after, "zoom_qss_media_latency_seconds_count", **AUDIO_IN) == 1
    assert total(after, "zoom_qss_webhook_requests_total", outcome="duplicate") == 1
    assert total(after, "zoom_qss_events_total") == 1


def _rejections(running: RunningAgent) -> list[tuple[str, bytes, dict[str, str], int]]:
    body = orjson.dumps(qos_body())
    now = int(running.clock())
    not_json = b'{"event": "meeting.participant_qos", '
    no_envelope = orjson.dumps([1, 2, 3])
    no_participant = orjson.dumps({**qos_body(), "payload": {"account_id": "x", "object": {"uuid": "u"}}})
    return [
        ("missing_signature", body, {"content-type": "application/json"}, 401),
        ("missing_signature", body, {"x-zm-request-timestamp": str(now)}, 401),
        ("bad_signature", body, running.headers(body, secret="wrong-secret"), 401),
        ("bad_signature", body, {**running.headers(body), "x-zm-signature": "v0=" + "a" * 64}, 401),
        ("bad_signature", body + b" ", running.headers(body), 401),  # body altered after signing
        ("stale_timestamp", body, running.headers(body, timestamp=now - 301), 401),
        ("stale_timestamp", body, running.headers(body, timestamp=now + 3600), 401),
        ("malformed", not_json, running.headers(not_json), 400),
        ("malformed", no_envelope, running.headers(no_envelope), 400),
        ("malformed", no_participant, running.headers(no_participant), 400),
    ]


async def test_every_rejection_class_gets_its_status_and_changes_no_qos_series(start_agent: AgentFactory) -> None:
    running = await start_agent()
    await running.post(qos_body(participant="1"))  # some QoS state to protect
    before = await running.scrape()
    for outcome, body, headers, status in _rejections(running):
        response = await running.client.post(running.webhook_url, content=body, headers=headers)
        assert response.status_code == status, (outcome, response.text)
        assert response.json()["error"]
    after = await running.scrape()
    assert qos_families(after) == qos_families(before)
    for outcome, count in {"missing_signature": 2, "bad_signature": 3, "stale_timestamp": 2, "malformed": 3}.items():
        assert total(after, "zoom_qss_webhook_requests_total", outcome=outcome) == count
    assert total(after, "zoom_qss_parse_errors_total", field="participant") == 1
    # A rejected body was not remembered as seen: the genuine event still counts when it comes.
    assert (await running.post(qos_body())).status_code == 200
    final = await running.scrape()
    assert total(final, "zoom_qss_media_latency_seconds_count", **AUDIO_IN) == 2


async def test_too_large_body_is_413_whether_declared_or_streamed(start_agent: AgentFactory) -> None:
    running = await start_agent(webhook={"max_body_bytes": 4096})
    big = orjson.dumps({**qos_body(), "padding": "x" * 5000})
    declared = await running.post(big)

    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 1000

    streamed = await running.client.post(running.webhook_url, content=chunks(), headers=running.headers(b"x" * 10_000))
    assert (declared.status_code, streamed.status_code) == (413, 413)
    after = await running.scrape()
    assert total(after, "zoom_qss_webhook_requests_total", outcome="too_large") == 2
    assert total(after, "zoom_qss_media_records_total") == 0


async def test_unknown_signed_event_is_200_and_counted(start_agent: AgentFactory) -> None:
    running = await start_agent()
    response = await running.post(
        {"event": "meeting.registration_created", "event_ts": 1, "payload": {"account_id": "a", "object": {}}}
    )
    assert response.status_code == 200
    after = await running.scrape()
    assert total(after, "zoom_qss_webhook_requests_total", outcome="unknown_event") == 1
    assert total(after, "zoom_qss_events_total") == 0


@pytest.mark.parametrize("secret", [SECRET, ROTATED_SECRET, OTHER_SECRET])
async def test_url_validation_is_answered_with_the_secret_that_verified(start_agent: AgentFactory, secret: str) -> None:
    running = await start_agent()
    request = load_sample("endpoint.url_validation.request")
    response = await running.post(request, secret=secret)
    assert response.status_code == 200
    from qss_exporter.zoom.signature import url_validation_token

    assert response.json() == {
        "plainToken": "Vw3nQ8rT1kLmZx0pYs5bEa",
        "encryptedToken": url_validation_token(secret, "Vw3nQ8rT1kLmZx0pYs5bEa"),
    }
    assert total(await running.scrape(), "zoom_qss_webhook_requests_total", outcome="url_validation") == 1


async def test_unsigned_url_validation_is_refused(start_agent: AgentFactory) -> None:
    running = await start_agent()
    response = await running.client.post(running.webhook_url, content=sample_bytes("endpoint.url_validation.request"))
    assert response.status_code == 401
    assert "encryptedToken" not in response.text


async def test_data_event_enriches_later_qos_records_with_site_and_network(start_agent: AgentFactory) -> None:
    running = await start_agent()
    assert (await running.post(load_sample("meeting.participant_data"))).status_code == 200  # 10.20.4.117, Wifi
    await running.post(qos_body())
    after = await running.scrape()
    assert total(after, "zoom_qss_media_latency_seconds_count", **AUDIO_IN, network_type="wifi", site="leeds") == 1
    assert total(after, "zoom_qss_active_participants", network_type="wifi", site="leeds") == 1
    assert total(after, "zoom_qss_enrichment_participants") == 1


async def test_summary_ends_activity_and_counts_the_session_once(start_agent: AgentFactory) -> None:
    running = await start_agent()
    await running.post(qos_body())
    assert total(await running.scrape(), "zoom_qss_active_participants", product="meeting") == 1
    summary = sample_bytes("meeting.participant_qos_summary")
    await running.post(summary)
    await running.post(summary)  # redelivered
    after = await running.scrape()
    assert total(after, "zoom_qss_active_participants", product="meeting") == 0
    assert total(after, "zoom_qss_active_meetings", product="meeting") == 0
    assert total(after, "zoom_qss_participant_sessions_total", account="acme", product="meeting", source="webhook") == 1
    assert total(
        after, "zoom_qss_participant_session_latency_seconds_sum", media="audio", direction="input", stat="max"
    ) == pytest.approx(0.097)
    assert total(after, "zoom_qss_participant_session_quality_total", media="audio", quality="good") == 1
    # A late retry of an earlier minute does not bring the participant back.
    await running.post(qos_body(event_ts=int(time.time() * 1000) - 60_000))
    assert total(await running.scrape(), "zoom_qss_active_participants", product="meeting") == 0


async def test_data_summary_also_ends_activity(start_agent: AgentFactory) -> None:
    running = await start_agent()
    await running.post(qos_body())
    await running.post(load_sample("meeting.participant_data_summary"))
    assert total(await running.scrape(), "zoom_qss_active_participants") == 0


async def test_activity_window_expires_silent_participants(start_agent: AgentFactory) -> None:
    running = await start_agent(pipeline={"activity_window_seconds": 120})
    body = qos_body(event_ts=int(running.clock() * 1000))
    await running.post(body)
    assert total(await running.scrape(), "zoom_qss_active_participants") == 1
    running.clock.advance(121)
    after = await running.scrape()
    assert total(after, "zoom_qss_active_participants") == 0
    assert total(after, "zoom_qss_active_meetings") == 0


async def test_video_sdk_and_webinar_products(start_agent: AgentFactory) -> None:
    running = await start_agent()
    assert (await running.post(sample_bytes("session.user_qos"), secret=OTHER_SECRET)).status_code == 200
    assert (await running.post(sample_bytes("webinar.participant_qos"))).status_code == 200
    after = await running.scrape()
    assert total(after, "zoom_qss_media_latency_seconds_count", account="acme-health", product="session") == 2
    assert (
        total(
            after, "zoom_qss_media_latency_seconds_count", account="acme", product="webinar", path="rwg", direction="to"
        )
        == 1
    )
    assert total(after, "zoom_qss_quality_records_total", product="webinar", quality="poor") == 1


async def test_phone_call_lifecycle_and_no_double_counting(start_agent: AgentFactory) -> None:
    running = await start_agent()
    call = load_sample("phone.call_qos")
    call["event_ts"] = int(running.clock() * 1000)
    await running.post(call)
    during = await running.scrape()
    assert total(during, "zoom_qss_phone_active_calls", account="acme") == 1
    assert total(during, "zoom_qss_phone_mos_sum", leg="callee", direction="receiving") == pytest.approx(4.1)
    summary = load_sample("phone.call_qos_summary")
    # The summary repeats the sample already received during the call, plus four new ones.
    summary["payload"]["object"]["call_qos"][1]["qos"].append(call["payload"]["object"]["call_qos"]["qos"])
    await running.post(summary)
    after = await running.scrape()
    assert total(after, "zoom_qss_phone_active_calls") == 0
    assert total(after, "zoom_qss_phone_calls_total", account="acme") == 1
    assert total(after, "zoom_qss_phone_mos_count") == 5
    assert total(after, "zoom_qss_phone_latency_seconds_sum", leg="caller", direction="sending") == pytest.approx(0.035)
    assert total(after, "zoom_qss_phone_packet_loss_ratio_sum", leg="callee", direction="receiving") == pytest.approx(
        0.004 + 0.005
    )


async def test_unparsable_values_are_counted_by_field_and_not_recorded_as_zero(start_agent: AgentFactory) -> None:
    running = await start_agent()
    response = await running.post(qos_body(latency="fast"))
    assert response.status_code == 200
    after = await running.scrape()
    assert total(after, "zoom_qss_parse_errors_total", field="latency") == 1
    assert total(after, "zoom_qss_media_latency_seconds_count", **AUDIO_IN) == 0
    assert total(after, "zoom_qss_media_jitter_seconds_count", **AUDIO_IN) == 1


async def test_a_half_sent_body_does_not_take_capacity_from_signed_webhooks(start_agent: AgentFactory) -> None:
    running = await start_agent()
    host, port = running.webhook_url.split("//")[1].split("/")[0].split(":")
    # Requests whose headers look signed but whose body never completes (issue 11: they made every
    # signed webhook get 503 while they stayed open).
    body = orjson.dumps(qos_body(participant="held"))
    signed = running.headers(body)
    head = "".join(f"{name}: {value}\r\n" for name, value in signed.items())
    held = []
    for _ in range(300):
        _reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"POST {running.path} HTTP/1.1\r\nhost: x\r\n{head}content-length: {len(body)}\r\n\r\n{{".encode())
        held.append(writer)
    await asyncio.gather(*(writer.drain() for writer in held))
    responses = [await running.post(qos_body(participant=str(n))) for n in range(5)]
    assert [response.status_code for response in responses] == [200] * 5
    for writer in held:
        writer.close()
    after = await running.scrape()
    assert total(after, "zoom_qss_webhook_requests_total", outcome="accepted") == 5
    assert total(after, "zoom_qss_webhook_requests_total", outcome="overloaded") == 0


async def test_requests_that_waited_too_long_for_the_cpu_get_503_and_change_nothing(start_agent: AgentFactory) -> None:
    running = await start_agent(webhook={"shed_after_seconds": 0.02})
    host, port = running.webhook_url.split("//")[1].split("/")[0].split(":")
    # A burst on 600 connections arrives in one event-loop turn: the last ones wait behind the
    # first ones for well over 20 ms, and must be shed rather than answered late.
    streams = [await asyncio.open_connection(host, int(port)) for _ in range(600)]
    for n, (_reader, writer) in enumerate(streams):
        body = orjson.dumps(qos_body(participant=f"burst-{n}"))
        head = "".join(f"{name}: {value}\r\n" for name, value in running.headers(body).items())
        request = f"POST {running.path} HTTP/1.1\r\nhost: x\r\n{head}content-length: {len(body)}\r\n\r\n"
        writer.write(request.encode() + body)
    answers = [await reader.read(4096) for reader, _writer in streams]
    for _reader, writer in streams:
        writer.close()
    statuses = [int(answer.split(b" ", 2)[1]) for answer in answers]
    assert set(statuses) <= {200, 503}
    shed = [answer for answer in answers if answer.startswith(b"HTTP/1.1 503")]
    assert shed, "nothing was shed"
    assert all(b"\r\nretry-after: 60\r\n" in answer for answer in shed)
    after = await running.scrape()
    accepted = statuses.count(200)
    assert total(after, "zoom_qss_webhook_requests_total", outcome="accepted") == accepted
    assert total(after, "zoom_qss_webhook_requests_total", outcome="overloaded") == len(shed)
    assert total(after, "zoom_qss_media_records_total") == 4 * accepted
    # It recovers at once: the next request is served.
    assert (await running.post(qos_body(participant="after"))).status_code == 200


PERSONAL_KEYS = {
    "email",
    "user_email",
    "user_name",
    "name",
    "pc_name",
    "mac_addr",
    "harddisk_id",
    "domain",
    "signaling_ip_address",
    "signaling_internal_ip_address",
    "audio_internal_ip_address",
    "video_internal_ip_address",
    "as_internal_ip_address",
    "destination_ip_domain",
    "session_name",
    "session_key",
    "user_key",
    "microphone",
    "speaker",
    "camera",
    "location",
    "participant_user_id",
}


def _personal_values(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in PERSONAL_KEYS and isinstance(inner, str) and inner:
                found.add(inner)
            found |= _personal_values(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _personal_values(inner)
    return found


async def test_no_personal_data_reaches_metrics_by_default(start_agent: AgentFactory) -> None:
    running = await start_agent(labels={"data_center": True, "client_os": True, "client_version": True})
    personal: set[str] = set()
    for path in sorted(SAMPLES.glob("*.json")):
        if path.name.startswith(("meeting.", "webinar.", "session.", "phone.")):
            body = load_sample(path.stem)
            personal |= _personal_values(body)
            secret = OTHER_SECRET if path.name.startswith("session.") else SECRET
            assert (await running.post(body, secret=secret)).status_code == 200, path.name
    assert "dana.okafor@example.com" in personal  # the samples do carry personal data
    text = (await running.scrape_text()).text
    assert total(await running.scrape(), "zoom_qss_events_total") == 14
    leaked = sorted(value for value in personal if value in text)
    assert leaked == []
    assert not re.search(r"\d+\.\d+\.\d+\.\d+", text)  # no IPv4 address anywhere
    assert "@" not in text


async def test_openmetrics_on_request_and_operational_endpoints(start_agent: AgentFactory) -> None:
    running = await start_agent()
    await running.post(qos_body())
    om = await running.scrape_text(accept="application/openmetrics-text; version=1.0.0")
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    plain = await running.scrape_text()
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    base = running.metrics_url
    assert (await running.client.get(base + "/healthz")).status_code == 200
    assert (await running.client.get(base + "/readyz")).text == "ready\n"
    landing = await running.client.get(base + "/")
    assert 'href="metrics"' in landing.text
    # The webhook listener serves only the webhook path, and only POST.
    assert (await running.client.get(running.webhook_url)).status_code == 405
    assert (await running.client.get(running.agent.url("webhook") + "/metrics")).status_code == 404
