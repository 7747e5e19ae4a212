"""`qss-exporter demo` as a newcomer runs it: within 60 s every media family fills, across sites,
network types and all four products, and the exposition passes `promtool check metrics`."""

from __future__ import annotations

import subprocess
import time

import httpx

from tests.conftest import Series, parse_metrics, total
from tests.process import ExporterProcess

MEDIA_FAMILIES = [
    "zoom_qss_media_latency_seconds_count",
    "zoom_qss_media_jitter_seconds_count",
    "zoom_qss_media_packet_loss_ratio_count",
    "zoom_qss_media_max_packet_loss_ratio_count",
    "zoom_qss_media_bitrate_bytes_per_second_count",
    "zoom_qss_media_frames_per_second_count",
    "zoom_qss_media_frame_height_pixels_count",
    "zoom_qss_media_records_total",
    "zoom_qss_quality_records_total",
    "zoom_qss_quality_score_count",
    "zoom_qss_cpu_usage_ratio_count",
    "zoom_qss_wifi_rssi_dbm_count",
    "zoom_qss_network_notifications_total",
    "zoom_qss_phone_mos_count",
    "zoom_qss_phone_latency_seconds_count",
    "zoom_qss_phone_jitter_seconds_count",
    "zoom_qss_phone_packet_loss_ratio_count",
    "zoom_qss_phone_bitrate_bytes_per_second_count",
    "zoom_qss_participant_sessions_total",
    "zoom_qss_participant_session_latency_seconds_count",
]


def _values(samples: Series, name: str, label: str) -> set[str]:
    return {
        dict(labels)[label]
        for (sample, labels), value in samples.items()
        if sample == name and value > 0 and label in dict(labels)
    }


def _missing(samples: Series) -> list[str]:
    missing = [name for name in MEDIA_FAMILIES if total(samples, name) <= 0]
    for media in ("audio", "video", "share"):
        if total(samples, "zoom_qss_media_latency_seconds_count", media=media) <= 0:
            missing.append(f"media={media}")
    sites = _values(samples, "zoom_qss_media_records_total", "site") - {"unknown"}
    networks = _values(samples, "zoom_qss_media_records_total", "network_type") - {"unknown"}
    products = _values(samples, "zoom_qss_media_records_total", "product")
    if len(sites) < 3:
        missing.append(f"sites {sorted(sites)}")
    if len(networks) < 2:
        missing.append(f"network types {sorted(networks)}")
    if products != {"meeting", "webinar", "session"}:
        missing.append(f"products {sorted(products)}")
    if total(samples, "zoom_qss_phone_active_calls") <= 0 and total(samples, "zoom_qss_phone_calls_total") <= 0:
        missing.append("phone calls")
    return missing


def test_demo_fills_every_family_within_60_seconds(promtool: str) -> None:
    process = ExporterProcess(["demo", "--webhook-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
    try:
        url = process.wait_for(r"metrics:\s+(http://\S+/metrics)").group(1)
        process.wait_for(r"incidents: .+")
        started = time.monotonic()
        missing: list[str] = ["nothing scraped yet"]
        text = ""
        while time.monotonic() - started < 60 and missing:
            time.sleep(2)
            text = httpx.get(url, timeout=10).text
            missing = _missing(parse_metrics(text))
        assert missing == [], f"after {time.monotonic() - started:.0f} s"
        samples = parse_metrics(text)
        assert total(samples, "zoom_qss_webhook_requests_total", outcome="accepted") > 100
        for outcome in ("bad_signature", "missing_signature", "stale_timestamp", "malformed", "error", "overloaded"):
            assert total(samples, "zoom_qss_webhook_requests_total", outcome=outcome) == 0, outcome
        assert total(samples, "zoom_qss_parse_errors_total") == 0
        # The demo's events are real signed webhooks to the agent's own listener: counted as source="webhook".
        assert _values(samples, "zoom_qss_events_total", "source") == {"webhook"}
        check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        assert process.terminate() == 0
    finally:
        process.kill()
