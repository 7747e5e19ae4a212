"""qss_exporter/redaction.py: user-info and query values of URLs never reach a log line or a message."""

from __future__ import annotations

import pytest

from qss_exporter.redaction import redact_url, redact_urls_in


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:PASS@otel.example:4318/v1/metrics", "https://<secret>@otel.example:4318/v1/metrics"),
        ("https://PASS@otel.example", "https://<secret>@otel.example"),
        ("http://otel:4318/v1/metrics?api-key=PASS&x=1", "http://otel:4318/v1/metrics?api-key=<secret>&x=<secret>"),
        ("http://localhost:4317", "http://localhost:4317"),
        ("wss://ws.zoom.us/ws", "wss://ws.zoom.us/ws"),
        ("http://[::1", "http://[::1"),  # not splittable: returned as it is, there is no user-info
    ],
)
def test_urls_keep_their_host_and_path_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "PASS" not in redact_url(url)


def test_urls_inside_free_text_lose_their_user_info() -> None:
    text = "expected an http(s) URL, got 'ftp://user:PASS@host/x' (see https://admin:PASS@y)"
    assert redact_urls_in(text) == "expected an http(s) URL, got 'ftp://<secret>@host/x' (see https://<secret>@y)"
