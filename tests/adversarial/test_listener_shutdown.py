"""Shutdown within the budget whatever the peers do (issue 11, point 7).

SIGTERM to the real agent process while its OTLP collector never answers (one endpoint accepts and
stays silent, the other is a full listen queue on loopback: the nearest thing to a blackhole that
stays on this machine) and while clients hold requests half-sent: exit 0 within the documented
8 seconds (docs/deploy.md), below Docker's 10-second stop timeout, and no traceback.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.adversarial.rawhttp import FAKE_SIGNATURE, address, connect, held, qos_body, signed_headers
from tests.conftest import SECRET, base_config, merge
from tests.process import AgentProcess

BUDGET = 8.0  # app.SHUTDOWN_BUDGET_SECONDS, as documented
SLACK = 0.8  # interpreter teardown and a busy machine; still below Docker's 10 s


@contextmanager
def silent_collector() -> Iterator[str]:
    """A TCP listener that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for sock in accepted:
            sock.close()
        server.close()


@contextmanager
def blackhole() -> Iterator[str]:
    """A listener whose accept queue is full and never drained: connects hang or go unanswered."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def _hold_slow_clients(agent: AgentProcess) -> list[socket.socket]:
    target = address(agent.webhook_url)
    path = agent.webhook_path
    sockets = []
    for n in range(20):
        sock = connect(target)
        if n % 2:  # a body that never completes: the drain waits for it, then cuts it
            head = f"x-zm-request-timestamp: {int(time.time())}\r\nx-zm-signature: {FAKE_SIGNATURE}\r\n"
            sock.sendall(f"POST {path} HTTP/1.1\r\nhost: a\r\n{head}content-length: 999\r\n\r\n{{".encode())
        else:  # headers that never end
            sock.sendall(f"POST {path} HTTP/1.1\r\nhost: a\r\nx-slow: ".encode())
        sockets.append(sock)
    return sockets


def _stop(agent: AgentProcess) -> tuple[int, float]:
    started = time.monotonic()
    code = agent.terminate(timeout=BUDGET + 5)
    return code, time.monotonic() - started


def test_exit_within_budget_with_a_dead_collector_and_slow_clients(tmp_path: Path) -> None:
    with silent_collector() as silent, blackhole() as hole:
        config = merge(
            base_config(),
            {
                "otlp": {"enabled": True, "protocol": "http/protobuf", "interval_seconds": 1},
                "log": {"format": "json"},
            },
        )
        config["otlp"]["logs"] = {"enabled": True, "participant_id": "omit"}
        env = {
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{silent}/v1/metrics",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"{hole}/v1/logs",
        }
        with AgentProcess(tmp_path, config, env=env) as agent:
            body = qos_body("before-stop")  # a QoS log record waiting for the dead logs endpoint
            response = httpx.post(agent.webhook_url, content=body, headers=signed_headers(body, SECRET), timeout=10)
            assert response.status_code == 200
            time.sleep(1.5)  # a metric export is now stuck on the silent collector
            with held(_hold_slow_clients(agent)):
                code, seconds = _stop(agent)
            output = agent.log_text()
    assert code == 0, output
    assert seconds <= BUDGET + SLACK, f"exited {seconds:.1f} s after SIGTERM"
    assert "Traceback" not in output
    assert "CancelledError" not in output


def test_slow_clients_alone_hold_the_exit_for_the_drain_only(tmp_path: Path) -> None:
    with AgentProcess(tmp_path, base_config()) as agent, held(_hold_slow_clients(agent)):
        code, seconds = _stop(agent)
        output = agent.log_text()
    assert code == 0, output
    assert seconds <= 2.0 + SLACK + 0.5, f"exited {seconds:.1f} s after SIGTERM"  # app.DRAIN_SECONDS
    assert "Traceback" not in output
