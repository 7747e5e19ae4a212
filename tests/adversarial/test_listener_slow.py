"""Unauthenticated slow and garbage connections cannot touch signed traffic (issue 11, point 1).

The real agent process; 1,000 connections held open by an attacker who never signs anything:
slowloris headers, signed-looking headers with a body that never completes, and garbage. While they
stay open, signed webhooks are all answered 200 within 100 ms (p99) and all counted.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from tests.adversarial.rawhttp import (
    FAKE_SIGNATURE,
    address,
    connect,
    held,
    is_open,
    qos_body,
    raise_open_files,
    signed_headers,
)
from tests.conftest import SECRET, base_config, merge, parse_metrics, total
from tests.process import AgentProcess

HELD = 1_000
SIGNED = 200


def test_signed_webhooks_are_served_promptly_while_1000_slow_connections_are_held(tmp_path: Path) -> None:
    raise_open_files(HELD + 200)
    # Deadlines far longer than the test: what protects the signed traffic here is admission (a
    # request counts only once it is complete), not the timeouts cutting the attackers off.
    config = merge(base_config(), {"webhook": {"header_timeout_seconds": 120, "body_timeout_seconds": 120}})
    with AgentProcess(tmp_path, config) as agent:
        target = address(agent.webhook_url)
        path = agent.webhook_path
        sockets: list[socket.socket] = []
        with held(sockets):
            for n in range(HELD):
                sock = connect(target)
                sockets.append(sock)
                if n % 3 == 0:  # slowloris: a request line and part of a header, then nothing
                    sock.sendall(f"POST {path} HTTP/1.1\r\nhost: agent\r\nx-padding: ".encode())
                elif n % 3 == 1:  # plausible signature headers, a body that never completes
                    head = f"x-zm-request-timestamp: {int(time.time())}\r\nx-zm-signature: {FAKE_SIGNATURE}\r\n"
                    sock.sendall(f"POST {path} HTTP/1.1\r\nhost: a\r\n{head}content-length: 4000\r\n\r\n{{".encode())
                else:  # garbage without a line end
                    sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 4)
            time.sleep(0.5)  # let the agent read all of it
            assert all(is_open(sock) for sock in sockets[1::3]), "a half-sent body was cut before its deadline"

            latencies = []
            with httpx.Client(timeout=10) as client:
                for n in range(SIGNED):
                    body = qos_body(f"signed-{n}")
                    headers = {"content-type": "application/json", **signed_headers(body, SECRET)}
                    started = time.perf_counter()
                    response = client.post(agent.webhook_url, content=body, headers=headers)
                    latencies.append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
            open_after = sum(is_open(sock) for sock in sockets)
        samples = parse_metrics(agent.scrape_text())
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    assert p99 <= 0.100, f"p99 {p99 * 1000:.1f} ms"
    assert open_after >= HELD * 2 // 3 - 5, "the held connections were dropped, so they were not held"
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="accepted") == SIGNED
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="overloaded") == 0
    assert total(samples, "zoom_qss_media_records_total") == 4 * SIGNED
    # The garbage connections were answered 400 and closed; the others are still waiting.
    assert total(samples, "zoom_qss_listener_rejections_total", listener="webhook", reason="bad_request") >= 300
