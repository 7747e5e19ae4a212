"""The Zoom WebSocket source against a real fake Zoom (token endpoint + WebSocket server on loopback).

Heartbeats, timeouts, token expiry and backoff run on virtual time (tests/virtual_time.py): the
tests move the clock, and wait in real time only for real I/O, with bounded waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from qss_exporter.app import Agent
from qss_exporter.catalogue import WEBSOCKET_CONNECT_FAILURES
from qss_exporter.config import config_from_mapping
from qss_exporter.outputs.prometheus import render
from qss_exporter.sources.websocket import WebSocketSettings, WebSocketSource
from qss_exporter.zoom.oauth import TokenProvider
from tests.conftest import (
    ACCOUNT_ID,
    OTHER_SECRET,
    SECRET,
    SESSION_ACCOUNT_ID,
    AgentFactory,
    RunningAgent,
    Series,
    base_config,
    parse_metrics,
    total,
)
from tests.fake_zoom import FakeZoom, serve_fake_zoom
from tests.fake_zoom_websocket import (
    BUILD_CONNECTION_OK,
    Connection,
    FakeZoomWebSocket,
    message_frame,
    serve_fake_zoom_websocket,
)
from tests.process import AgentProcess
from tests.samples import SAMPLES, load_sample
from tests.virtual_time import VirtualTime

HEARTBEAT = '{"module":"heartbeat"}'
INVALID_TOKEN = '{"module":"heartbeat","success":false,"content":"Invalid Token"}'
WS_MESSAGE = json.dumps(load_sample("ws.message"))  # a meeting.participant_qos_summary
EMAIL = "dana.okafor@example.com"  # in the samples; must never reach a log line
METRICS_DOC = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()


POLL_SECONDS = 0.002


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a condition that real I/O will make true (bounded; no virtual time passes meanwhile)."""
    for _ in range(int(within / POLL_SECONDS)):
        if predicate():
            return
        await asyncio.sleep(POLL_SECONDS)
    assert predicate(), f"not true within {within} s"


@dataclass
class Rig:
    source: WebSocketSource
    time: VirtualTime
    zoom: FakeZoom
    server: FakeZoomWebSocket
    agent: Agent
    task: asyncio.Task[None] | None = None

    def metrics(self) -> Series:
        return parse_metrics(render(self.agent.store).decode())

    def value(self, name: str, **labels: str) -> float:
        return total(self.metrics(), name, **labels)

    def reason(self, family: str, reason: str) -> float:
        return self.value(f"zoom_qss_websocket_{family}_total", account="acme", reason=reason)

    async def connected(self, count: int = 1, established: int | None = None) -> Connection:
        """The server's `count`-th connection, once the source has established `established` (count) in all."""
        connection = await self.server.until_connections(count)
        wanted = count if established is None else established
        await eventually(lambda: self.value("zoom_qss_websocket_connects_total", account="acme") >= wanted)
        assert self.source.connected
        return connection

    async def received(self, module: str, count: int) -> None:
        """Wait until the source has counted `count` frames of `module` in all."""
        await eventually(
            lambda: self.value("zoom_qss_websocket_messages_total", account="acme", module=module) == count
        )

    async def heartbeat(self, connection: Connection, answered: int) -> None:
        """Let one heartbeat interval pass; wait until the server saw the heartbeat and the client its answer."""
        beats = connection.heartbeats
        await self.time.advance(self.source.settings.heartbeat_interval)
        await self.server.until(lambda: connection.heartbeats == beats + 1)
        await self.received("heartbeat", answered)


RigFactory = Callable[..., Awaitable[Rig]]


def fixed(*values: float) -> Callable[[], float]:
    """A `random` that returns these values in turn, then the last one forever."""
    numbers: Iterator[float] = iter(values)
    last = values[-1]

    def draw() -> float:
        return next(numbers, last)

    return draw


@pytest.fixture
async def rig() -> AsyncIterator[RigFactory]:
    async with contextlib.AsyncExitStack() as stack:
        rigs: list[Rig] = []

        async def make(
            zoom: FakeZoom | None = None,
            server: FakeZoomWebSocket | None = None,
            random: Callable[[], float] | None = None,
            start: bool = True,
            url_suffix: str = "",
            **settings: Any,
        ) -> Rig:
            fake_zoom = await stack.enter_async_context(serve_fake_zoom(zoom or FakeZoom()))
            fake_ws = server or FakeZoomWebSocket()
            fake_ws.zoom = fake_ws.zoom or fake_zoom
            await stack.enter_async_context(serve_fake_zoom_websocket(fake_ws))
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=5))
            time = VirtualTime()
            agent = Agent(config_from_mapping(base_config()), clock=time)
            providers: dict[str, TokenProvider] = {}

            def tokens(grant: str) -> TokenProvider:
                if grant not in providers:
                    providers[grant] = TokenProvider(
                        client,
                        fake_zoom.url + "/oauth/token",
                        fake_zoom.account_id,
                        fake_zoom.client_id,
                        fake_zoom.client_secret,
                        clock=time,
                        grant_type=grant,
                    )
                return providers[grant]

            settings.setdefault("url", fake_ws.url + url_suffix)
            source = WebSocketSource(
                WebSocketSettings("acme", "sub-1", **settings),
                tokens,
                agent.pipeline,
                agent.catalogue.websocket,
                clock=time,
                sleep=time.sleep,
                random=random or fixed(1.0),
            )
            made = Rig(source, time, fake_zoom, fake_ws, agent)
            if start:
                made.task = asyncio.create_task(source.run())
            rigs.append(made)
            return made

        yield make
        for made in rigs:
            if made.task is not None:
                made.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await made.task
            # Never more than one live connection per subscription, whatever the test did.
            assert all(count <= 1 for count in made.server.max_live.values()), made.server.max_live


# --------------------------------------------------------------------------------- configuration


def test_configuration_reaches_the_source_with_zoom_defaults() -> None:
    account = {"name": "acme", "account_id": "abc", "client_id": "cid", "client_secret": "s3cret"}
    config = config_from_mapping({"accounts": [account | {"websocket": {"subscription_id": "sub"}}]}, environ={})
    assert config.accounts[0].webhook_secret_token == ()  # a WebSocket-only account needs no webhook secret
    (source,) = Agent(config).websockets
    assert source.settings == WebSocketSettings(
        "acme",
        "sub",
        url="wss://ws.zoom.us/ws",
        grant_type="auto",
        heartbeat_interval=30.0,
        max_frame_bytes=1_048_576,
        connect_timeout=10.0,
        reconnect_min=1.0,
        reconnect_max=60.0,
        reconnect_on_token_expiry=True,
    )
    assert source.grant_type == "account_credentials"
    assert not source.connected
    assert not Agent(config_from_mapping(base_config())).websockets  # off unless configured


# ------------------------------------------------------------------------------------ connecting


async def test_connects_with_subscription_and_token_and_records_events(rig: RigFactory) -> None:
    r = await rig(url_suffix="?region=test")  # a URL with a query of its own
    connection = await r.connected()
    handshake = r.server.handshakes[0]
    assert (handshake.subscription_id, handshake.status) == ("sub-1", 101)
    assert handshake.token == r.zoom.tokens[0] == connection.token
    assert r.zoom.grants[handshake.token] == "account_credentials"
    assert r.value("zoom_qss_websocket_connected", account="acme") == 1
    assert r.value("zoom_qss_websocket_messages_total", account="acme", module="build_connection") == 1

    await r.server.send(WS_MESSAGE)
    await eventually(lambda: r.value("zoom_qss_websocket_events_total", account="acme", outcome="accepted") == 1)
    assert r.value("zoom_qss_events_total", source="websocket", event="meeting.participant_qos_summary") == 1
    assert r.value("zoom_qss_participant_sessions_total", account="acme", source="websocket") == 1
    assert r.value("zoom_qss_websocket_last_message_timestamp_seconds", account="acme") == r.time.now
    await r.server.send(WS_MESSAGE)  # Zoom delivering it twice counts once
    await eventually(lambda: r.value("zoom_qss_websocket_events_total", account="acme", outcome="duplicate") == 1)
    assert r.value("zoom_qss_participant_sessions_total", account="acme") == 1


async def test_every_label_value_is_present_from_start(rig: RigFactory) -> None:
    r = await rig(start=False)
    samples = r.metrics()
    assert total(samples, "zoom_qss_websocket_connected", account="acme") == 0
    for family, count in [("connect_failures", 9), ("reconnects", 7), ("messages", 5), ("events", 7)]:
        name = f"zoom_qss_websocket_{family}_total"
        assert sum(1 for sample, _ in samples if sample == name) == count, name
    assert all(value == 0 for (name, _), value in samples.items() if name.startswith("zoom_qss_websocket_"))


async def test_heartbeats_are_sent_on_schedule(rig: RigFactory) -> None:
    r = await rig()
    connection = await r.connected()
    start = r.time.now
    await r.time.advance(29)
    assert connection.heartbeats == 0
    assert start + 30 in r.time.pending()  # the heartbeat is due, not late and not early
    await r.time.advance(1)
    await r.server.until_heartbeats(connection, 1)
    await r.received("heartbeat", 1)
    for beat in (2, 3, 4):
        await r.heartbeat(connection, answered=beat)
    assert r.time.now == start + 120
    assert [frame for frame in connection.frames] == [HEARTBEAT] * 4
    assert len(r.server.connections) == 1
    assert r.source.connected


async def test_heartbeat_interval_is_configurable(rig: RigFactory) -> None:
    r = await rig(heartbeat_interval=55)
    connection = await r.connected()
    await r.time.advance(54)
    assert connection.heartbeats == 0
    await r.time.advance(1)
    await r.server.until_heartbeats(connection, 1)


# ------------------------------------------------------------------------------ reconnect causes


@pytest.mark.parametrize("abrupt", [False, True], ids=["close-frame", "tcp-reset"])
async def test_server_dropping_the_connection_reconnects_with_backoff_and_a_fresh_token(
    rig: RigFactory, abrupt: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # websockets' own DEBUG lines would show the token and the event
    r = await rig()
    first = await r.connected()
    await r.server.send(WS_MESSAGE)
    await r.server.drop(abrupt=abrupt)
    await r.time.until_sleeping(1.0)  # the backoff, in virtual time
    assert r.reason("reconnects", "closed") == 1
    assert r.value("zoom_qss_websocket_connected", account="acme") == 0
    assert not r.source.connected
    assert len(r.server.connections) == 1  # nothing before the backoff has passed
    await r.time.advance(1)
    second = await r.connected(2)
    assert second.token != first.token
    assert r.zoom.tokens == [first.token, second.token]
    ours = "\n".join(
        record.getMessage() for record in caplog.records if not record.name.startswith("websockets.server")
    )
    assert "connected (grant_type=account_credentials)" in ours
    for token in r.zoom.tokens:
        assert token not in ours
    assert EMAIL not in ours


async def test_silent_server_is_a_missed_heartbeat_and_a_reconnect(rig: RigFactory) -> None:
    r = await rig(server=FakeZoomWebSocket(heartbeat_answer=None))
    first = await r.connected()
    await r.time.advance(30)
    await r.server.until_heartbeats(first, 1)
    await r.time.advance(30)  # no answer to the first heartbeat by the time the second is due
    await r.time.until_sleeping(1.0)
    assert r.reason("reconnects", "heartbeat_missed") == 1
    await r.server.until(lambda: first.closed)
    assert first.heartbeats == 1  # a missed answer is not followed by more heartbeats on that connection
    await r.time.advance(1)
    second = await r.connected(2)
    assert second.token != first.token


async def test_any_frame_answers_a_heartbeat(rig: RigFactory) -> None:
    """A connection busy with events is alive even if Zoom's heartbeat answer were delayed."""
    r = await rig(server=FakeZoomWebSocket(heartbeat_answer=None))
    connection = await r.connected()
    for beat in (1, 2, 3):
        await r.time.advance(30)
        await r.server.until_heartbeats(connection, beat)
        await r.server.send(WS_MESSAGE)  # no heartbeat answer, but an event
        await r.received("message", beat)
    assert r.reason("reconnects", "heartbeat_missed") == 0
    assert len(r.server.connections) == 1


async def test_token_refused_mid_connection_reconnects_with_a_fresh_token(rig: RigFactory) -> None:
    r = await rig()
    first = await r.connected()
    r.zoom.revoked.add(first.token)  # the server now holds the token stale
    await r.server.send(INVALID_TOKEN)
    await r.time.until_sleeping(1.0)
    assert r.reason("reconnects", "token_refused") == 1
    await r.time.advance(1)
    second = await r.connected(2)
    assert second.token not in r.zoom.revoked
    assert [handshake.status for handshake in r.server.handshakes] == [101, 101]  # the stale one never offered
    assert r.zoom.grants[second.token] == "account_credentials"  # a grant that worked is kept


async def test_stale_tokens_refused_at_the_handshake_each_retry_a_new_token(rig: RigFactory) -> None:
    r = await rig(server=FakeZoomWebSocket(refuse_handshakes=2), grant_type="account_credentials")
    await r.time.until_sleeping(1.0)
    await r.time.advance(1)
    await r.time.until_sleeping(2.0)
    await r.time.advance(2)
    await r.connected()
    assert [handshake.status for handshake in r.server.handshakes] == [401, 401, 101]
    assert len({handshake.token for handshake in r.server.handshakes}) == 3
    assert r.reason("connect_failures", "token_refused") == 2


async def test_build_connection_refusing_the_token_is_token_refused(rig: RigFactory) -> None:
    refused = '{"module":"build_connection","success":false,"content":"Invalid Token"}'
    r = await rig(server=FakeZoomWebSocket(first_frame=refused))
    await r.time.until_sleeping(1.0)
    assert r.reason("connect_failures", "token_refused") == 1
    r.server.first_frame = '{"module":"build_connection","success":"true"}'  # a variant Zoom may send
    await r.time.advance(1)
    second = await r.connected(2, established=1)
    # REFERENCE.md §5: the token was refused, so the other documented grant is tried.
    assert r.zoom.grants[second.token] == "client_credentials"


async def test_build_connection_failure(rig: RigFactory) -> None:
    failed = '{"module":"build_connection","success":false,"content":"subscription not found"}'
    r = await rig(server=FakeZoomWebSocket(first_frame=failed))
    await r.time.until_sleeping(1.0)
    assert r.reason("connect_failures", "build_connection") == 1
    assert r.value("zoom_qss_websocket_connects_total", account="acme") == 0


async def test_no_build_connection_answer_is_a_timeout(rig: RigFactory) -> None:
    r = await rig(server=FakeZoomWebSocket(first_frame=None))
    await r.time.until_sleeping(10.0)  # the client is connected and waiting for build_connection
    await r.time.advance(9)
    assert r.reason("connect_failures", "timeout") == 0
    await r.time.advance(1)
    await r.time.until_sleeping(1.0)
    assert r.reason("connect_failures", "timeout") == 1
    await r.server.until(lambda: r.server.connections[0].closed)
    r.server.first_frame = '{"module":"build_connection"}'  # no `success` at all: taken as success
    await r.time.advance(1)
    await r.connected(2, established=1)


async def test_a_message_before_build_connection_confirms_the_connection(rig: RigFactory) -> None:
    r = await rig(server=FakeZoomWebSocket(first_frame=None))
    await r.server.until_connections(1)
    await r.server.send(WS_MESSAGE)
    await r.connected()
    await r.time.advance(10)
    assert r.reason("connect_failures", "timeout") == 0


async def test_token_expiry_reconnects_at_once_with_a_fresh_token(rig: RigFactory) -> None:
    r = await rig(heartbeat_interval=100_000)
    first = await r.connected()
    await r.time.advance(3539)  # the token lives 3600 s; the source moves on 60 s before
    assert len(r.server.connections) == 1
    await r.time.advance(1)
    second = await r.connected(2)
    assert second.token != first.token
    assert r.reason("reconnects", "token_expired") == 1
    assert set(r.time.requested) <= {100_000, 10.0, 3540.0}  # no backoff for a planned reconnect


async def test_token_expiry_reconnect_can_be_turned_off(rig: RigFactory) -> None:
    r = await rig(heartbeat_interval=100_000, reconnect_on_token_expiry=False)
    await r.connected()
    await r.time.advance(7200)
    assert len(r.server.connections) == 1
    assert r.reason("reconnects", "token_expired") == 0


# ----------------------------------------------------------------------------------- bad frames


async def test_malformed_frames_are_counted_and_skipped(rig: RigFactory) -> None:
    r = await rig()
    connection = await r.connected()
    garbage: list[str | bytes] = [
        "not json",
        "[1, 2]",
        '{"module": 7}',
        '{"module":"message","content":"{broken"}',
        b"\x00\xff binary",
        '{"module":"surprise","content":"?"}',
        message_frame({"hello": "world"}),
        message_frame({"event": "qss_exporter.test_unknown", "event_ts": 1, "payload": {}}),
        WS_MESSAGE,
    ]
    for frame in garbage:
        await r.server.send(frame)
    await eventually(lambda: r.value("zoom_qss_websocket_events_total", account="acme", outcome="accepted") == 1)
    module = {
        name: r.value("zoom_qss_websocket_messages_total", account="acme", module=name)
        for name in ("malformed", "other", "message")
    }
    assert module == {"malformed": 5, "other": 1, "message": 3}
    assert r.value("zoom_qss_websocket_events_total", account="acme", outcome="malformed") == 1
    assert r.value("zoom_qss_websocket_events_total", account="acme", outcome="unknown_event") == 1
    assert r.value("zoom_qss_parse_errors_total", field="event") == 1
    assert r.server.connections == [connection]
    assert r.source.connected
    assert sum(r.reason("reconnects", reason) for reason in ("closed", "protocol_error", "error")) == 0


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"\x83\x00", "protocol_error"),  # a frame with a reserved opcode
        (b"\x81\x02\xff\xfe", "protocol_error"),  # a text frame that is not UTF-8
        (b"\x81\x7e\x08\x00" + b"x" * 2048, "too_large"),  # 2048 bytes, over max_frame_bytes
    ],
    ids=["reserved-opcode", "invalid-utf8", "too-large"],
)
async def test_garbage_on_the_wire_reconnects_with_backoff(rig: RigFactory, garbage: bytes, reason: str) -> None:
    r = await rig(max_frame_bytes=1024)
    first = await r.connected()
    r.server.write_raw(garbage)
    await r.time.until_sleeping(1.0)
    assert r.reason("reconnects", reason) == 1
    await r.time.advance(1)
    second = await r.connected(2)
    assert second.token != first.token


async def test_network_failures_are_connect_failures(rig: RigFactory) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    r = await rig(url=f"ws://127.0.0.1:{port}/ws")
    await r.time.until_sleeping(1.0)
    assert r.reason("connect_failures", "connect") == 1
    assert r.zoom.tokens  # a token was fetched, and will not be reused


async def test_a_handshake_answered_with_another_status_is_a_connect_failure(rig: RigFactory) -> None:
    r = await rig(server=FakeZoomWebSocket(refuse_handshakes=1, refuse_status=503))
    await r.time.until_sleeping(1.0)
    assert r.reason("connect_failures", "connect") == 1
    assert r.reason("connect_failures", "token_refused") == 0
    await r.time.advance(1)
    connection = await r.connected()
    assert r.zoom.grants[connection.token] == "account_credentials"  # a 503 is no reason to switch grants


async def test_a_server_that_does_not_speak_websocket_is_a_connect_failure(rig: RigFactory) -> None:
    async def not_websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nContent-Length: 0\r\n\r\n")  # no Upgrade headers
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_websocket, "127.0.0.1", 0)
    async with server:
        r = await rig(url=f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws")
        await r.time.until_sleeping(1.0)
        assert r.reason("connect_failures", "connect") == 1


async def test_a_bug_is_logged_counted_and_survived(rig: RigFactory, caplog: pytest.LogCaptureFixture) -> None:
    r = await rig(start=False)
    real = r.source._tokens
    calls = 0

    def tokens(grant: str) -> TokenProvider:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return real(grant)

    r.source._tokens = tokens
    r.task = asyncio.create_task(r.source.run())
    await r.time.until_sleeping(1.0)
    assert r.reason("connect_failures", "error") == 1
    assert "unexpected error" in caplog.text
    assert "RuntimeError: a bug" in caplog.text  # with its traceback
    await r.time.advance(1)
    await r.connected()


async def test_an_event_that_fails_to_record_is_counted_and_the_connection_stays(
    rig: RigFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    r = await rig()
    connection = await r.connected()

    def broken(record: object, source: str) -> bool:
        raise RuntimeError("a bug in recording")

    monkeypatch.setattr(r.agent.pipeline, "ingest", broken)
    await r.server.send(WS_MESSAGE)
    await eventually(lambda: r.value("zoom_qss_websocket_events_total", account="acme", outcome="error") == 1)
    assert "failed to record meeting.participant_qos_summary" in caplog.text
    monkeypatch.undo()
    await r.server.send(WS_MESSAGE)
    await eventually(lambda: r.value("zoom_qss_websocket_events_total", account="acme", outcome="accepted") == 1)
    assert r.server.connections == [connection]


# -------------------------------------------------------------------------------- backoff, grants


async def test_backoff_is_exponential_with_equal_jitter_and_capped(rig: RigFactory) -> None:
    r = await rig(start=False, reconnect_min=1, reconnect_max=60)
    r.source._random = fixed(0.0, 1.0, 0.5, 1.0)
    assert [r.source.backoff(n) for n in range(4)] == [0.5, 2.0, 3.0, 8.0]
    r.source._random = fixed(1.0)
    assert [r.source.backoff(n) for n in (5, 6, 7, 100)] == [32.0, 60.0, 60.0, 60.0]


async def test_failures_back_off_and_a_healthy_connection_resets_the_backoff(rig: RigFactory) -> None:
    r = await rig(server=FakeZoomWebSocket(refuse_handshakes=3), grant_type="account_credentials")
    for delay in (1.0, 2.0, 4.0):
        await r.time.until_sleeping(delay)
        await r.time.advance(delay)
    await r.connected()
    await r.server.drop()  # never answered a heartbeat: not healthy, the backoff grows on
    await r.time.until_sleeping(8.0)
    await r.time.advance(8)
    connection = await r.connected(2)
    await r.heartbeat(connection, answered=1)
    await r.heartbeat(connection, answered=2)  # the first heartbeat was answered: healthy
    await r.server.drop()
    await r.time.until_sleeping(1.0, count=2)  # back to the first step
    assert r.reason("connect_failures", "token_refused") == 3
    assert r.reason("reconnects", "closed") == 2


async def test_backoff_reaches_its_cap(rig: RigFactory) -> None:
    r = await rig(server=FakeZoomWebSocket(refuse_handshakes=9), grant_type="account_credentials")
    delays = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    for index, delay in enumerate(delays):
        await r.time.until_sleeping(delay, count=delays[: index + 1].count(delay))
        await r.time.advance(delay)
    await r.connected()
    assert len(r.server.handshakes) == 10


async def test_token_endpoint_failure_is_counted_and_retried(rig: RigFactory) -> None:
    r = await rig(zoom=FakeZoom(fail_token_with=500))
    await r.time.until_sleeping(1.0)
    assert r.reason("connect_failures", "token_request") == 1
    assert r.server.handshakes == []
    r.zoom.fail_token_with = None
    await r.time.advance(1)
    connection = await r.connected()
    assert r.zoom.grants[connection.token] == "account_credentials"  # a 500 is no reason to switch grants


async def test_grant_falls_back_to_client_credentials_when_the_token_endpoint_refuses(rig: RigFactory) -> None:
    r = await rig(zoom=FakeZoom(accepted_grants=("client_credentials",)))
    await r.time.until_sleeping(1.0)
    assert r.reason("connect_failures", "token_request") == 1
    await r.time.advance(1)
    first = await r.connected()
    assert r.zoom.grants[first.token] == "client_credentials"
    assert [params["grant_type"] for _, _, params in r.zoom.requests] == ["account_credentials", "client_credentials"]
    await r.server.drop()  # the grant that worked is kept from now on
    await r.time.until_sleeping(2.0)
    await r.time.advance(2)
    second = await r.connected(2)
    assert r.zoom.grants[second.token] == "client_credentials"


async def test_grant_falls_back_when_the_websocket_refuses_the_account_token(rig: RigFactory) -> None:
    zoom = FakeZoom()
    server = FakeZoomWebSocket(accept_token=lambda token: zoom.grants[token] == "client_credentials")
    r = await rig(zoom=zoom, server=server)
    await r.time.until_sleeping(1.0)
    await r.time.advance(1)
    connection = await r.connected()
    assert [r.zoom.grants[handshake.token] for handshake in server.handshakes] == [
        "account_credentials",
        "client_credentials",
    ]
    assert r.zoom.grants[connection.token] == "client_credentials"


async def test_a_pinned_grant_is_never_switched(rig: RigFactory) -> None:
    r = await rig(zoom=FakeZoom(accepted_grants=("client_credentials",)), grant_type="account_credentials")
    for delay in (1.0, 2.0):
        await r.time.until_sleeping(delay)
        await r.time.advance(delay)
    await r.time.until_sleeping(4.0)
    assert {params["grant_type"] for _, _, params in r.zoom.requests} == {"account_credentials"}


async def test_cancelling_closes_the_connection(rig: RigFactory) -> None:
    r = await rig()
    connection = await r.connected()
    assert r.task is not None
    r.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await r.task
    await r.server.until(lambda: connection.closed)
    assert r.value("zoom_qss_websocket_connected", account="acme") == 0
    assert sum(r.reason("reconnects", reason) for reason in ("closed", "error")) == 0


# ------------------------------------------------------------------------- the real agent, end to end


@pytest.fixture
async def zoom() -> AsyncIterator[FakeZoom]:
    async with serve_fake_zoom(FakeZoom()) as fake:
        yield fake


@pytest.fixture
async def zoom_ws(zoom: FakeZoom) -> AsyncIterator[FakeZoomWebSocket]:
    async with serve_fake_zoom_websocket(FakeZoomWebSocket(zoom=zoom)) as fake:
        yield fake


def websocket_config(zoom: FakeZoom, url: str, **websocket: Any) -> dict[str, Any]:
    """start_agent overrides: account acme also subscribed over the WebSocket at `url`."""
    acme = {
        "name": "acme",
        "account_id": ACCOUNT_ID,
        "webhook_secret_token": SECRET,
        "client_id": zoom.client_id,
        "client_secret": zoom.client_secret,
        "websocket": {"subscription_id": "sub-acme", "url": url},
    }
    return {
        "accounts": [
            acme,
            {"name": "acme-health", "account_id": SESSION_ACCOUNT_ID, "webhook_secret_token": OTHER_SECRET},
        ],
        "zoom": {"oauth_token_url": zoom.url + "/oauth/token"},
        # Real time here: keep the reconnects quick.
        "websocket": {"reconnect_min_seconds": 0.01, "reconnect_max_seconds": 0.05, **websocket},
    }


async def scraped(running: RunningAgent, predicate: Callable[[Series], bool], within: float = 5.0) -> Series:
    """Scrape /metrics until `predicate` holds (bounded)."""
    for _ in range(int(within / POLL_SECONDS / 5)):
        samples = await running.scrape()
        if predicate(samples):
            return samples
        await asyncio.sleep(POLL_SECONDS * 5)
    samples = await running.scrape()
    assert predicate(samples), f"/metrics did not get there within {within} s"
    return samples


def event_samples() -> list[str]:
    names = sorted(path.stem for path in SAMPLES.glob("*.json"))
    return [name for name in names if re.match(r"(meeting|webinar|session|phone)\.", name)]


def comparable(samples: Series) -> Series:
    """Everything but the delivery channel's own metrics, with `source` made channel-neutral."""
    out: Series = {}
    for (name, labels), value in samples.items():
        # The two agents' own: delivery channels, leases, and when each started (process, configuration load).
        if re.match(
            r"zoom_qss_(webhook|websocket|event_lag|series|leader|config_last_reload_success_timestamp)|process_|python_",
            name,
        ):
            continue
        neutral = frozenset((key, "any" if key == "source" else item) for key, item in labels)
        out[(name, neutral)] = value
    return out


async def test_events_arrive_in_metrics_exactly_as_by_webhook(
    zoom: FakeZoom, zoom_ws: FakeZoomWebSocket, start_agent: AgentFactory
) -> None:
    # The samples name two accounts; a subscription speaks for its own account and its sub-accounts
    # only, so here acme declares the Video SDK samples' account as its sub-account, on both agents.
    config = websocket_config(zoom, zoom_ws.url)
    acme = config["accounts"][0] | {"sub_accounts": [SESSION_ACCOUNT_ID]}
    config["accounts"] = [acme]
    webhook_only = {key: value for key, value in acme.items() if key not in ("websocket", "client_id", "client_secret")}
    by_webhook = await start_agent(accounts=[webhook_only])
    by_websocket = await start_agent(**config)
    connection = await zoom_ws.until_connections(1)
    names = event_samples()
    assert len(names) == 14
    for name in names:
        response = await by_webhook.post(load_sample(name))
        assert response.status_code == 200, name
        await zoom_ws.send(message_frame(load_sample(name)), connection)
    samples = await scraped(
        by_websocket,
        lambda s: total(s, "zoom_qss_websocket_events_total", outcome="accepted") == len(names),
    )
    assert total(samples, "zoom_qss_events_total", source="websocket") == len(names)
    assert total(samples, "zoom_qss_events_total", source="webhook") == 0
    assert comparable(samples) == comparable(await by_webhook.scrape())
    assert total(samples, "zoom_qss_media_latency_seconds_count") > 0  # the comparison compared something


async def test_same_event_by_webhook_and_websocket_counts_once(
    zoom: FakeZoom, zoom_ws: FakeZoomWebSocket, start_agent: AgentFactory
) -> None:
    running = await start_agent(**websocket_config(zoom, zoom_ws.url))
    await zoom_ws.until_connections(1)
    # Webhook first, then the same summary over the WebSocket.
    assert (await running.post(load_sample("meeting.participant_qos_summary"))).status_code == 200
    await zoom_ws.send(WS_MESSAGE)
    samples = await scraped(running, lambda s: total(s, "zoom_qss_websocket_events_total", outcome="duplicate") == 1)
    assert total(samples, "zoom_qss_participant_sessions_total") == 1
    assert total(samples, "zoom_qss_participant_sessions_total", source="webhook") == 1
    # WebSocket first, then the same real-time record by webhook.
    await zoom_ws.send(message_frame(load_sample("meeting.participant_qos")))
    await scraped(running, lambda s: total(s, "zoom_qss_websocket_events_total", outcome="accepted") == 1)
    assert (await running.post(load_sample("meeting.participant_qos"))).status_code == 200
    samples = await running.scrape()
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="duplicate") == 1
    assert total(samples, "zoom_qss_media_records_total", media="audio", direction="input") == 1
    assert total(samples, "zoom_qss_events_total") == 2


async def test_a_subscription_speaks_for_its_own_account_and_sub_accounts_only(
    zoom: FakeZoom, zoom_ws: FakeZoomWebSocket, start_agent: AgentFactory
) -> None:
    config = websocket_config(zoom, zoom_ws.url)
    config["accounts"][0]["sub_accounts"] = ["SubOfAcme000000000001"]
    running = await start_agent(**config)
    connection = await zoom_ws.until_connections(1)
    other_tenant = load_sample("session.user_qos")  # acme-health's account: not acme's to deliver
    stranger = load_sample("meeting.participant_qos")
    stranger["payload"]["account_id"] = "StrangerAccount0000001"
    sub = load_sample("meeting.participant_qos")
    sub["payload"]["account_id"] = "SubOfAcme000000000001"
    for body in (other_tenant, stranger, sub):
        await zoom_ws.send(message_frame(body), connection)
    samples = await scraped(running, lambda s: total(s, "zoom_qss_websocket_events_total", account="acme") == 3)
    outcomes = {
        outcome: total(samples, "zoom_qss_websocket_events_total", outcome=outcome)
        for outcome in ("account_mismatch", "unknown_account", "accepted")
    }
    assert outcomes == {"account_mismatch": 1, "unknown_account": 1, "accepted": 1}
    assert total(samples, "zoom_qss_media_records_total", account="SubOfAcme000000000001") == 4
    assert total(samples, "zoom_qss_media_records_total", account="acme-health") == 0
    assert total(samples, "zoom_qss_events_total") == 1


async def test_readyz_can_require_the_websocket(
    zoom: FakeZoom, zoom_ws: FakeZoomWebSocket, start_agent: AgentFactory
) -> None:
    zoom_ws.refuse_handshakes = 10**6
    running = await start_agent(**websocket_config(zoom, zoom_ws.url, readyz_requires_connection=True))
    readyz = running.metrics_url + "/readyz"
    await scraped(running, lambda s: total(s, "zoom_qss_websocket_connect_failures_total", reason="token_refused") > 1)
    assert (await running.client.get(readyz)).status_code == 503
    zoom_ws.refuse_handshakes = 0
    await scraped(running, lambda s: total(s, "zoom_qss_websocket_connected", account="acme") == 1)
    assert (await running.client.get(readyz)).status_code == 200
    zoom_ws.refuse_handshakes = 10**6
    await zoom_ws.drop()
    await scraped(running, lambda s: total(s, "zoom_qss_websocket_reconnects_total", reason="closed") == 1)
    assert (await running.client.get(readyz)).status_code == 503


async def test_readyz_ignores_the_websocket_by_default(
    zoom: FakeZoom, zoom_ws: FakeZoomWebSocket, start_agent: AgentFactory
) -> None:
    zoom_ws.refuse_handshakes = 10**6
    running = await start_agent(**websocket_config(zoom, zoom_ws.url))
    await scraped(running, lambda s: total(s, "zoom_qss_websocket_connect_failures_total") > 0)
    assert (await running.client.get(running.metrics_url + "/readyz")).status_code == 200


async def test_websocket_is_off_unless_configured(start_agent: AgentFactory) -> None:
    running = await start_agent()
    assert running.agent.websockets == []
    samples = await running.scrape()
    assert not [name for name, _ in samples if name.startswith("zoom_qss_websocket_")]


async def test_a_hanging_websocket_never_blocks_webhooks(zoom: FakeZoom, start_agent: AgentFactory) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accept the TCP connection, never answer the WebSocket handshake

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        running = await start_agent(**websocket_config(zoom, f"ws://127.0.0.1:{port}/ws"))
        await eventually(lambda: bool(accepted))
        async with asyncio.timeout(2):
            response = await running.post(load_sample("meeting.participant_qos"))
        assert response.status_code == 200
        assert total(await running.scrape(), "zoom_qss_events_total", source="webhook") == 1
        assert (await running.client.get(running.metrics_url + "/readyz")).status_code == 200
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_websocket_only_account_needs_no_webhook_secret(
    zoom: FakeZoom, zoom_ws: FakeZoomWebSocket, start_agent: AgentFactory
) -> None:
    overrides = websocket_config(zoom, zoom_ws.url)
    del overrides["accounts"][0]["webhook_secret_token"]
    running = await start_agent(**overrides)
    await zoom_ws.until_connections(1)
    await zoom_ws.send(WS_MESSAGE)
    await scraped(running, lambda s: total(s, "zoom_qss_participant_sessions_total", source="websocket") == 1)
    assert zoom_ws.current.heartbeats == 0  # real time: the first heartbeat is 30 s away


# ---------------------------------------------------------------------- the agent as a real process


def _process_config(zoom: FakeZoom, subscriptions: dict[str, str], **websocket: Any) -> dict[str, Any]:
    """`qss-exporter run` with one WebSocket-only account per (name -> fake server URL)."""
    accounts = [
        {
            "name": name,
            "account_id": f"{name}-account-id",
            "client_id": zoom.client_id,
            "client_secret": zoom.client_secret,
            "websocket": {"subscription_id": f"sub-{name}", "url": url},
        }
        for name, url in subscriptions.items()
    ]
    return {
        "listen": {"webhook": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
        "accounts": accounts,
        "zoom": {"oauth_token_url": zoom.url + "/oauth/token"},
        "websocket": {"reconnect_min_seconds": 0.05, "reconnect_max_seconds": 0.1, **websocket},
    }


async def _scraped_process(agent: AgentProcess, predicate: Callable[[Series], bool], within: float = 10.0) -> Series:
    async with asyncio.timeout(within):
        while not predicate(samples := parse_metrics(await asyncio.to_thread(agent.scrape_text))):  # noqa: ASYNC110 - polls another process's /metrics
            await asyncio.sleep(0.05)
    return samples


async def test_connect_failures_before_confirmation_keep_to_the_documented_reasons(
    zoom: FakeZoom, tmp_path: Path
) -> None:
    """Issue 12: a connection that failed before Zoom confirmed it was counted under reasons documented only
    for established connections (`heartbeat_missed`, `too_large`); the label set is closed, present from start."""
    silent = FakeZoomWebSocket(zoom=zoom, first_frame=None, heartbeat_answer=None)
    oversized = FakeZoomWebSocket(zoom=zoom, first_frame=BUILD_CONNECTION_OK[:-1] + ',"x":"' + "x" * 2000 + '"}')
    async with serve_fake_zoom_websocket(silent), serve_fake_zoom_websocket(oversized):
        config = _process_config(
            zoom,
            {"quiet": silent.url, "chatty": oversized.url},
            heartbeat_interval_seconds=0.1,  # a heartbeat goes unanswered long before connect_timeout
            connect_timeout_seconds=30,
            max_frame_bytes=1024,
        )
        agent = await asyncio.to_thread(AgentProcess, tmp_path, config)
        try:

            def failed(samples: Series, account: str, reason: str) -> float:
                return total(samples, "zoom_qss_websocket_connect_failures_total", account=account, reason=reason)

            # No answer to a heartbeat before confirmation: Zoom did not confirm in time.
            samples = await _scraped_process(
                agent, lambda s: failed(s, "quiet", "timeout") >= 2 and failed(s, "chatty", "too_large") >= 2
            )
            assert agent.process.poll() is None
        finally:
            await asyncio.to_thread(agent.kill)
    for account in ("quiet", "chatty"):
        reasons = {
            dict(labels)["reason"]
            for (name, labels), _ in samples.items()
            if name == "zoom_qss_websocket_connect_failures_total" and dict(labels)["account"] == account
        }
        assert reasons == set(WEBSOCKET_CONNECT_FAILURES), account
    assert total(samples, "zoom_qss_websocket_reconnects_total") == 0
    row = next(line for line in METRICS_DOC.splitlines() if "`zoom_qss_websocket_connect_failures_total`" in line)
    assert all(f"`{reason}`" in row for reason in WEBSOCKET_CONNECT_FAILURES)


async def test_sigterm_closes_the_websocket_normally(
    zoom: FakeZoom, zoom_ws: FakeZoomWebSocket, tmp_path: Path
) -> None:
    """Issue 12: on SIGTERM the connection was closed with 1011 (internal error); a shutdown is 1001 (going away)."""
    agent = await asyncio.to_thread(AgentProcess, tmp_path, _process_config(zoom, {"acme": zoom_ws.url}))
    try:
        connection = await zoom_ws.until_connections(1, within=20)
        await _scraped_process(agent, lambda s: total(s, "zoom_qss_websocket_connected", account="acme") == 1)
        assert await asyncio.to_thread(agent.terminate) == 0
        await zoom_ws.until(lambda: connection.closed)
    finally:
        await asyncio.to_thread(agent.kill)
    assert connection.close_code == 1001
    assert "unexpected error" not in agent.log_text()


async def test_a_stopped_source_closes_with_going_away_and_can_run_again(rig: RigFactory) -> None:
    """Shutdown, or another replica taking the source over (leadership.py), cancels `run`: Zoom gets 1001."""
    r = await rig()
    first = await r.connected()
    assert r.task is not None
    r.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await r.task
    await r.server.until(lambda: first.closed)
    assert first.close_code == 1001
    assert not r.source.connected
    assert r.value("zoom_qss_websocket_connected", account="acme") == 0
    r.task = asyncio.create_task(r.source.run())  # leadership comes back: the same source runs again
    await r.connected(2, established=2)
