"""Sending serialised requests: retries, Retry-After and RetryInfo, no retry where the SDK does none,
shutdown during a backoff, TLS and mutual TLS, against the real receivers on loopback; and the whole
path through the running agent process while the collector first refuses."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]  # grpcio ships no type hints
import pytest
import trustme
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]  # generated, no stubs

from qss_exporter import __version__
from qss_exporter.config import OtlpConfig
from qss_exporter.outputs.otlp_settings import resolve_settings
from qss_exporter.outputs.otlp_transport import MAX_ATTEMPTS, Transport, build_metric_transport, retry_after
from qss_exporter.store import Store
from tests.conftest import SECRET, base_config, parse_metrics, total
from tests.otlp_receivers import GrpcReceiver, HttpReceiver, Received, as_prometheus, metrics_of
from tests.process import AgentProcess
from tests.samples import load_sample

Receiver = GrpcReceiver | HttpReceiver
RETRYING = "qss_exporter.outputs.otlp_transport"


def request_bytes() -> bytes:
    """A real request: one counter point."""
    from qss_exporter.outputs.otlp import SCOPE
    from qss_exporter.outputs.otlp_encode import Encoder
    from tests.outputs.test_otlp_encode import RESOURCE

    store = Store(10, lambda: 0.0)
    store.counter("zoom_qss_events_total", "Events.", ("source",)).inc(("webhook",), 3)
    (request,) = [item for item in Encoder(store, RESOURCE, SCOPE, "cumulative", 1).encode() if item is not None]
    return request.data


def transport(receiver: Receiver, **keys: Any) -> Transport:
    protocol = "grpc" if isinstance(receiver, GrpcReceiver) else "http/protobuf"
    config = OtlpConfig.model_validate(
        {"enabled": True, "protocol": protocol, "endpoint": receiver.endpoint, "timeout_seconds": 5} | keys
    )
    return build_metric_transport(resolve_settings(config, {}))


@pytest.fixture
def received() -> Iterator[Received]:
    loop = asyncio.new_event_loop()  # only for Received's wake-ups, which these synchronous tests do not await
    yield Received(loop)
    loop.close()


@pytest.fixture
def http(received: Received) -> Iterator[HttpReceiver]:
    server = HttpReceiver(received)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def grpc_receiver(received: Received) -> Iterator[GrpcReceiver]:
    server = GrpcReceiver(received)
    server.start()
    yield server
    server.stop()


def waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The backoff waits the transport chose, from its debug log (no clock is read)."""
    return [
        float(r.getMessage().rsplit(" ", 1)[1].removesuffix("s")) for r in caplog.records if "retrying" in r.message
    ]


# ------------------------------------------------------------------------------------------- HTTP


def test_http_retries_a_503_after_its_retry_after_and_sends_the_sdk_headers(
    http: HttpReceiver, received: Received, caplog: pytest.LogCaptureFixture
) -> None:
    received.fail_next(503, {"Retry-After": "0.2"})
    sender = transport(http, compression="gzip", headers={"Authorization": "Bearer t"})
    with caplog.at_level(logging.DEBUG, RETRYING):
        sent = sender.send(request_bytes())
    assert sent.ok
    assert received.attempts == 2
    assert waits(caplog) == [0.2]  # the server's Retry-After, not the 1 s backoff
    headers = received.headers[-1]
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["content-encoding"] == "gzip"
    assert headers["authorization"] == "Bearer t"
    assert headers["user-agent"] == f"qss-exporter/{__version__}"
    assert total(as_prometheus(received.metrics[-1]), "zoom_qss_events_total") == 3
    sender.shutdown()


def test_http_fails_at_once_when_the_retry_after_passes_the_deadline_or_the_status_is_final(
    http: HttpReceiver, received: Received
) -> None:
    sender = transport(http, timeout_seconds=1)
    received.fail_next(429, {"Retry-After": "60"})
    sent = sender.send(request_bytes())
    assert (sent.ok, sent.reason, received.attempts) == (False, "HTTP 429 Too Many Requests", 1)
    received.fail_next(400)  # not retryable: the SDK does not retry it either
    sent = sender.send(request_bytes())
    assert (sent.ok, sent.reason, received.attempts) == (False, "HTTP 400 Bad Request", 2)
    assert received.metrics == []
    sender.shutdown()


def test_http_retries_transient_statuses_at_most_six_times(
    http: HttpReceiver, received: Received, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("qss_exporter.outputs.otlp_transport._backoff", lambda attempt: 0.01)
    received.fail_next(502, times=10)
    sent = transport(http).send(request_bytes())
    assert (sent.ok, received.attempts) == (False, MAX_ATTEMPTS)


def test_a_dead_collector_is_a_connection_error_retried_within_the_timeout(received: Received) -> None:
    server = HttpReceiver(received)
    server.start()
    server.stop()  # nothing listens on its port now
    sent = transport(server, timeout_seconds=0.5).send(request_bytes())
    assert not sent.ok
    assert sent.reason.startswith("ConnectError")


def test_shutdown_ends_a_backoff_wait_at_once(http: HttpReceiver, received: Received) -> None:
    received.fail_next(503, {"Retry-After": "30"})
    sender = transport(http, timeout_seconds=60)
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(sender.send(request_bytes())))
    thread.start()
    deadline = time.monotonic() + 10
    while received.attempts == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    sender.shutdown()
    thread.join(timeout=10)
    assert not thread.is_alive()  # it did not wait out the 30 s
    assert [(r.ok, r.reason) for r in results] == [(False, "HTTP 503 Service Unavailable")]
    assert received.attempts == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("-2", 0.0), ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0), ("soon", None), (None, None)],
)
def test_retry_after_is_seconds_or_a_date(header: str | None, expected: float | None) -> None:
    assert retry_after(header, now=lambda: 1445412480.0) == expected


# ------------------------------------------------------------------------------------------- gRPC


def test_grpc_retries_unavailable_on_a_new_channel_and_honours_retry_info(
    grpc_receiver: GrpcReceiver, received: Received, caplog: pytest.LogCaptureFixture
) -> None:
    info = RetryInfo()
    info.retry_delay.nanos = 150_000_000
    received.fail_next(grpc.StatusCode.UNAVAILABLE)
    received.fail_next(grpc.StatusCode.RESOURCE_EXHAUSTED, {"google.rpc.retryinfo-bin": info.SerializeToString()})
    sender = transport(grpc_receiver, headers={"X-Tenant": "acme"}, compression="gzip")
    with caplog.at_level(logging.DEBUG, RETRYING):
        sent = sender.send(request_bytes())
    assert sent.ok
    assert received.attempts == 3
    assert waits(caplog)[1] == 0.15  # RetryInfo's delay, not the 2 s backoff
    assert received.headers[-1]["x-tenant"] == "acme"
    assert received.headers[-1]["user-agent"].startswith(f"qss-exporter/{__version__}")
    (metric,) = metrics_of(received.metrics[-1])
    assert metric.name == "zoom.qss.events"
    sender.shutdown()


def test_grpc_does_not_retry_a_final_status(grpc_receiver: GrpcReceiver, received: Received) -> None:
    received.fail_next(grpc.StatusCode.INVALID_ARGUMENT)
    sent = transport(grpc_receiver).send(request_bytes())
    assert (sent.ok, received.attempts) == (False, 1)
    assert sent.reason.startswith("gRPC INVALID_ARGUMENT")


# -------------------------------------------------------------------------------------------- TLS


@pytest.fixture
def pki(tmp_path: Path) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    client = ca.issue_cert("qss-exporter")
    client.cert_chain_pems[0].write_to_path(tmp_path / "client.pem")
    client.private_key_pem.write_to_path(tmp_path / "client.key")
    return ca, tmp_path


def _tls_receiver(protocol: str, received: Received, ca: trustme.CA, mutual: bool) -> Receiver:
    server_cert = ca.issue_cert("localhost")
    if protocol == "grpc":
        credentials = grpc.ssl_server_credentials(
            [(server_cert.private_key_pem.bytes(), b"".join(p.bytes() for p in server_cert.cert_chain_pems))],
            root_certificates=ca.cert_pem.bytes() if mutual else None,
            require_client_auth=mutual,
        )
        return GrpcReceiver(received, credentials)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(context)
    if mutual:
        context.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(context)
    return HttpReceiver(received, context)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_tls_verifies_the_collector_with_the_configured_ca_and_presents_a_client_certificate(
    protocol: str, received: Received, pki: tuple[trustme.CA, Path]
) -> None:
    ca, files = pki
    server = _tls_receiver(protocol, received, ca, mutual=True)
    server.start()
    try:
        unknown_ca = transport(server, timeout_seconds=0.5).send(request_bytes())
        no_client_certificate = transport(server, timeout_seconds=0.5, certificate_file=str(files / "ca.pem")).send(
            request_bytes()
        )
        mutual = transport(
            server,
            certificate_file=str(files / "ca.pem"),
            client_certificate_file=str(files / "client.pem"),
            client_key_file=str(files / "client.key"),
        ).send(request_bytes())
    finally:
        server.stop()
    assert not unknown_ca.ok  # the system's roots do not know this CA: verification is on
    assert not no_client_certificate.ok
    assert mutual.ok, mutual.reason
    assert len(received.metrics) == 1


# ------------------------------------------------------------------------------ the running agent


async def test_the_running_agent_pushes_through_a_refusing_collector_and_keeps_answering(tmp_path: Path) -> None:
    """The agent process retries a collector that refuses at first, while it keeps answering webhooks;
    what arrives equals its /metrics for the QoS families."""
    received = Received(asyncio.get_running_loop())
    server = GrpcReceiver(received)
    server.start()
    received.fail_next(grpc.StatusCode.UNAVAILABLE, times=2)
    config = base_config() | {
        "otlp": {"enabled": True, "protocol": "grpc", "endpoint": server.endpoint, "interval_seconds": 0.5}
    }
    agent = await asyncio.to_thread(AgentProcess, tmp_path, config)
    try:
        for index in range(5):
            body = load_sample("meeting.participant_qos")
            body["event_ts"] = int(time.time() * 1000)
            body["payload"]["object"]["participant"]["user_id"] = f"person-{index}"
            response = await asyncio.to_thread(agent.post_signed, json.dumps(body).encode(), SECRET)
            assert response.status_code == 200
        scraped = parse_metrics(await asyncio.to_thread(agent.scrape_text))
        records = total(scraped, "zoom_qss_media_records_total")
        assert records > 0
        await received.wait_until(
            lambda: (
                bool(received.metrics)
                and total(as_prometheus(received.metrics[-1]), "zoom_qss_media_records_total") == records
            ),
            within=15,
        )
        assert agent.process.poll() is None  # still running
        assert received.attempts >= 3  # two refusals, retried
        scraped = parse_metrics(await asyncio.to_thread(agent.scrape_text))
        assert total(scraped, "zoom_qss_otlp_exports_total", signal="metrics", outcome="ok") >= 1
    finally:
        await asyncio.to_thread(agent.kill)
        server.stop()
    assert "Traceback" not in agent.log_text()
