"""Header floods cost the agent a bounded amount of memory and end in 431, 408 or a close (issue 11, point 1).

Megabyte headers, 100,000 headers and headers that never end, on hundreds of connections at once,
against the real agent process: its resident memory grows by at most 64 MiB, every flooding
connection is answered and closed, and signed webhooks are still served meanwhile.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx

from tests.adversarial.rawhttp import (
    address,
    connect,
    held,
    qos_body,
    raise_open_files,
    read_all,
    rss_bytes,
    signed_headers,
    statuses,
)
from tests.conftest import SECRET, base_config, merge, parse_metrics, total
from tests.process import AgentProcess

HUGE = 300  # connections sending one 4 MiB header value
MANY = 300  # connections sending 100,000 header fields
UNENDING = 400  # connections whose headers never end
MIB = 1 << 20


def _flood(target: tuple[str, int], head: bytes, chunk: bytes, total_bytes: int) -> bytes:
    """Send `head`, then `chunk` until `total_bytes` or until the agent stops reading; return its answer."""
    with connect(target) as sock:
        sock.settimeout(10)
        sent = 0
        try:
            sock.sendall(head)
            while sent < total_bytes:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        return read_all(sock, 10)


def test_header_floods_cost_bounded_memory_and_get_431_408_or_closed(tmp_path: Path) -> None:
    raise_open_files(UNENDING + HUGE + MANY + 200)
    config = merge(base_config(), {"webhook": {"header_timeout_seconds": 3}})
    with AgentProcess(tmp_path, config) as agent:
        target = address(agent.webhook_url)
        path = agent.webhook_path.encode()
        pid = agent.process.pid
        httpx.get(agent.metrics_url + "/metrics", timeout=10)  # warm: the first scrape allocates
        rss_before, _ = rss_bytes(pid)

        unending: list[socket.socket] = []
        with held(unending):
            for _ in range(UNENDING):
                sock = connect(target)
                sock.sendall(b"POST " + path + b" HTTP/1.1\r\nhost: a\r\nx-never-ends: " + b"z" * 8000)
                unending.append(sock)

            answers: dict[str, list[bytes]] = {"huge": [], "many": []}

            def huge() -> None:
                head = b"POST " + path + b" HTTP/1.1\r\nhost: a\r\nx-huge: "
                answers["huge"].append(_flood(target, head, b"h" * 65536, 4 * MIB))

            def many() -> None:
                head = b"POST " + path + b" HTTP/1.1\r\nhost: a\r\n"
                answers["many"].append(_flood(target, head, b"x-f: 1\r\n" * 8192, 100_000 * 8))

            workers = [threading.Thread(target=huge) for _ in range(HUGE)]
            workers += [threading.Thread(target=many) for _ in range(MANY)]
            for index, worker in enumerate(workers):
                worker.start()
                if index % 50 == 49:
                    time.sleep(0.05)  # a few dozen floods at a time, then the next wave
            # Signed traffic still flows during the flood.
            body = qos_body("during-flood")
            response = httpx.post(agent.webhook_url, content=body, headers={**signed_headers(body, SECRET)}, timeout=10)
            assert response.status_code == 200
            for worker in workers:
                worker.join(30)
            _, peak = rss_bytes(pid)
            answered_unending = [statuses(read_all(sock, 6)) for sock in unending]

        samples = parse_metrics(agent.scrape_text())
    growth = peak - rss_before
    assert growth <= 64 * MIB, f"RSS grew by {growth / MIB:.1f} MiB"
    # A client still sending when the agent closes may see a reset instead of the 431 (TCP discards
    # what it had not read yet); the counters show every one was refused.
    for kind in ("huge", "many"):
        assert len(answers[kind]) == (HUGE if kind == "huge" else MANY)
        assert all(statuses(answer) in ([431], []) for answer in answers[kind]), answers[kind][:3]
    assert all(codes == [408] for codes in answered_unending), answered_unending[:3]
    rejected = {
        reason: total(samples, "zoom_qss_listener_rejections_total", listener="webhook", reason=reason)
        for reason in ("headers_too_large", "too_many_headers", "header_timeout")
    }
    assert rejected == {"headers_too_large": HUGE, "too_many_headers": MANY, "header_timeout": UNENDING}
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="accepted") == 1
