"""Overload: a quick 503 with Retry-After instead of a late 200, accepted equals counted, and
recovery as soon as the load drops (issue 11, point 6).

A burst of signed webhooks on 2,000 connections at once, more than the agent processes within
`webhook.shed_after_seconds` (lowered here to 100 ms so that a small burst saturates it): every request is
answered within a bounded time, each 200 is counted exactly once, each 503 changes nothing.
"""

from __future__ import annotations

import selectors
import socket
import time
from pathlib import Path

import httpx

from tests.adversarial.rawhttp import address, connect, held, qos_body, raise_open_files, request, signed_headers
from tests.conftest import SECRET, base_config, merge, parse_metrics, total
from tests.process import AgentProcess

BURST = 2_000
SHED_AFTER = 0.1
# Zoom's timeout: the last answer must come before it (measured: 0.3 s on a quiet machine, up to
# 1.7 s with the 2 cores overloaded by other work).
BOUND = 3.0


def _answers(sockets: list[socket.socket], sent: float, within: float) -> dict[socket.socket, tuple[bytes, float]]:
    """Read every socket until the agent closes it; the answer and when it was complete."""
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, list[bytes]] = {}
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        buffers[sock] = []
    done: dict[socket.socket, tuple[bytes, float]] = {}
    deadline = time.monotonic() + within
    while len(done) < len(sockets) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.1):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            try:
                chunk = ready.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                buffers[ready].append(chunk)
            else:
                selector.unregister(ready)
                done[ready] = (b"".join(buffers[ready]), time.monotonic() - sent)
    selector.close()
    return done


def test_a_burst_beyond_capacity_is_shed_quickly_and_counted_exactly(tmp_path: Path) -> None:
    raise_open_files(BURST + 200)
    config = merge(base_config(), {"webhook": {"shed_after_seconds": SHED_AFTER}})
    with AgentProcess(tmp_path, config) as agent:
        target = address(agent.webhook_url)
        payloads = []
        for n in range(BURST):
            body = qos_body(f"burst-{n}")
            payloads.append(request(agent.webhook_path, signed_headers(body, SECRET), body))
        sockets = [connect(target) for _ in range(BURST)]
        with held(sockets):
            time.sleep(0.2)  # every connection accepted and idle
            for sock, payload in zip(sockets, payloads, strict=True):
                sock.sendall(payload)
            sent = time.monotonic()
            answers = _answers(sockets, sent, within=30)
        assert len(answers) == BURST, f"{BURST - len(answers)} requests never answered"
        statuses = [int(answer.split(b" ", 2)[1]) for answer, _ in answers.values()]
        slowest = max(seconds for _, seconds in answers.values())
        ok = statuses.count(200)
        shed = [answer for answer, _ in answers.values() if answer.startswith(b"HTTP/1.1 503")]

        # Recovery: right after the burst, requests are served again.
        with httpx.Client(timeout=10) as client:
            for n in range(20):
                body = qos_body(f"after-{n}")
                response = client.post(agent.webhook_url, content=body, headers=signed_headers(body, SECRET))
                assert response.status_code == 200
        samples = parse_metrics(agent.scrape_text())

    assert set(statuses) <= {200, 503}, (ok, len(shed), slowest)
    assert shed, f"the burst was not beyond capacity: nothing was shed ({slowest:.2f} s)"
    assert ok > 0, f"nothing was served during the burst ({slowest:.2f} s)"
    assert all(b"\r\nretry-after: 60\r\n" in answer for answer in shed)
    assert slowest <= BOUND, f"the last answer came {slowest:.2f} s after the burst ({ok} served, {len(shed)} shed)"
    # Accepted equals counted: each 200 once, each 503 nowhere.
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="accepted") == ok + 20
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="overloaded") == len(shed)
    assert total(samples, "zoom_qss_media_records_total") == 4 * (ok + 20)
    assert total(samples, "zoom_qss_events_total") == ok + 20
