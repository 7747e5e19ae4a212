"""qss_exporter/leadership.py: pulled sources run on one replica at a time, over a real redis-server.

Two (or three) `Leadership` objects stand for replicas; their sources are probes that record where
they run, so a test sees at every moment how many replicas run each source (never more than one).
Process-level tests with real agents are in test_replicas.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from qss_exporter.config import config_from_mapping
from qss_exporter.leadership import LEADER_CHANGES, STOP_SECONDS, LeaderFamilies, Leadership, PulledSource
from qss_exporter.lease import RedisLease
from qss_exporter.outputs.prometheus import render
from qss_exporter.redis_client import build_redis
from qss_exporter.store import Store
from tests.conftest import ACCOUNT_ID, AgentFactory, Series, parse_metrics, total
from tests.fake_zoom import FakeZoom, serve_fake_zoom
from tests.fake_zoom_api import Call, FakeInstance, FakeZoomApi, participants
from tests.fake_zoom_websocket import FakeZoomWebSocket, serve_fake_zoom_websocket
from tests.redis_server import RedisServer, cancel_when_sent
from tests.sources.test_poller import poller_config
from tests.sources.test_websocket import websocket_config

LEASE, RENEW = 1.5, 0.5
SOURCES = ("poller", "websocket:acme")
ACME = {"name": "acme", "account_id": "abc123", "webhook_secret_token": "s3cret-token"}


@dataclass
class Probe:
    """Where each source runs now, the most replicas that ran one at once, and every start and stop."""

    running: dict[str, set[str]] = field(default_factory=lambda: {name: set() for name in SOURCES})
    most: int = 0
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (replica, source, started|stopped|told ...)

    def source(self, replica: str, name: str) -> PulledSource:
        async def run() -> None:
            self.running[name].add(replica)
            self.most = max(self.most, len(self.running[name]))
            self.events.append((replica, name, "started"))
            try:
                await asyncio.Event().wait()
            finally:
                self.running[name].discard(replica)
                self.events.append((replica, name, "stopped"))

        async def leading(now: bool) -> None:
            self.events.append((replica, name, f"told {now}"))

        return PulledSource(name, run, leading)

    def where(self, name: str) -> set[str]:
        return set(self.running[name])


@dataclass
class Replica:
    name: str
    store: Store
    leadership: Leadership
    client: Redis | None
    task: asyncio.Task[None] | None = None

    def metrics(self) -> Series:
        return parse_metrics(render(self.store, False).decode())

    def leader(self, source: str) -> float:
        return total(self.metrics(), "zoom_qss_leader", source=source)

    def changes(self, source: str, change: str) -> float:
        return total(self.metrics(), "zoom_qss_leader_changes_total", source=source, change=change)


async def until(predicate: Callable[[], bool], within: float = 10.0) -> float:
    """Wait until `predicate()` holds (checked every 10 ms); returns how long it took."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - the probes are plain state, with no event to wait on
            await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[Callable[[str, Probe], Replica]]:
    made: list[Replica] = []
    config = config_from_mapping(
        {
            "accounts": [ACME],
            "state": {
                "backend": "redis",
                "redis": {"url": redis_server.url, "connect_timeout_seconds": 0.1, "command_timeout_seconds": 0.1},
                "leader": {"lease_seconds": LEASE, "renew_seconds": RENEW},
            },
        },
        environ={},
    )
    settle = build_redis(config.state.redis)
    uptime = int((await settle.info("server"))["uptime_in_seconds"])
    await settle.aclose()
    await asyncio.sleep(max(0.0, 2 - uptime))  # a fresh Redis grants no lease for one lease (whole seconds)

    def make(name: str, probe: Probe) -> Replica:
        store = Store(1000, time.time)
        client = build_redis(config.state.redis)
        leadership = Leadership(
            [probe.source(name, source) for source in SOURCES],
            LeaderFamilies.register(store),
            lambda source: RedisLease(client, source, key_prefix="qss:", lease_seconds=LEASE, identity=name),
            lease_seconds=LEASE,
            renew_seconds=RENEW,
        )
        replica = Replica(name, store, leadership, client)
        replica.task = asyncio.create_task(leadership.run())
        made.append(replica)
        return replica

    yield make
    for replica in made:
        if replica.task is not None:
            replica.task.cancel()
            # Bounded: a supervisor that swallowed its cancellation fails the test instead of stalling the run.
            done, _ = await asyncio.wait({replica.task}, timeout=STOP_SECONDS + 2)
            assert done, f"replica {replica.name}'s Leadership.run() did not end after cancel()"
        if replica.client is not None:
            await replica.client.aclose()


async def test_with_the_local_backend_every_source_runs_here_and_says_so() -> None:
    probe, store = Probe(), Store(1000, time.time)
    leadership = Leadership([probe.source("only", name) for name in SOURCES], LeaderFamilies.register(store))
    replica = Replica("only", store, leadership, None)
    assert {source: replica.leader(source) for source in SOURCES} == dict.fromkeys(SOURCES, 0.0)
    task = asyncio.create_task(leadership.run())
    await until(lambda: all(probe.where(name) == {"only"} for name in SOURCES))
    assert {source: replica.leader(source) for source in SOURCES} == dict.fromkeys(SOURCES, 1.0)
    assert all(leadership.leading(name) for name in SOURCES)
    # The local backend never tells a source it leads: nothing changes for a single replica.
    assert [event for event in probe.events if event[2].startswith("told")] == []
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert {source: replica.leader(source) for source in SOURCES} == dict.fromkeys(SOURCES, 0.0)


async def test_each_source_runs_on_one_replica_and_moves_when_its_holder_shuts_down(
    replicas: Callable[[str, Probe], Replica],
) -> None:
    probe = Probe()
    a = replicas("a", probe)
    for source in SOURCES:
        assert (a.leader(source), a.changes(source, "acquired")) == (0.0, 0.0)
    await until(lambda: all(probe.where(name) == {"a"} for name in SOURCES))
    b, c = replicas("b", probe), replicas("c", probe)
    await asyncio.sleep(3 * RENEW)  # b and c try, and fail, a few times
    assert all(probe.where(name) == {"a"} for name in SOURCES)
    assert [(r.leader(s), r.changes(s, "acquired")) for r in (a, b, c) for s in SOURCES] == [
        (1.0, 1.0),
        (1.0, 1.0),
        *[(0.0, 0.0)] * 4,
    ]
    assert a.task is not None
    a.task.cancel()  # SIGTERM: a stops its sources and gives the leases back
    await asyncio.gather(a.task, return_exceptions=True)
    took = await until(lambda: all(len(probe.where(name)) == 1 and "a" not in probe.where(name) for name in SOURCES))
    assert took < RENEW + 1.0  # released, not expired: the next try of a follower wins
    assert [a.changes(source, "released") for source in SOURCES] == [1.0, 1.0]
    assert probe.most == 1
    # Each source was told it leads before it started, and that it stopped after it stopped.
    mine = [event[2] for event in probe.events if event[:2] == ("a", "poller")]
    assert mine == ["told True", "started", "stopped", "told False"]


async def test_a_holder_whose_lease_was_taken_stops_at_its_next_renewal(
    replicas: Callable[[str, Probe], Replica],
) -> None:
    probe = Probe()
    a = replicas("a", probe)
    await until(lambda: probe.where("poller") == {"a"})
    assert a.client is not None
    # Another holder in Redis (as after a network partition healed): a must stop, not argue.
    await a.client.set("qss:{leader:poller}", "intruder/0123", px=60_000)
    await until(lambda: probe.where("poller") == set(), within=2 * RENEW + 1)
    assert a.leader("poller") == 0.0
    assert a.changes("poller", "lost") == 1.0
    assert probe.where("websocket:acme") == {"a"}  # the other source's lease is another lease
    await asyncio.sleep(2 * RENEW)
    assert probe.where("poller") == set()  # and it does not take it back while the intruder holds it


async def test_redis_gone_the_holder_stops_before_its_lease_expires_and_redis_back_a_leader_is_elected(
    redis_server: RedisServer, replicas: Callable[[str, Probe], Replica]
) -> None:
    probe = Probe()
    a = replicas("a", probe)
    await until(lambda: all(probe.where(name) == {"a"} for name in SOURCES))
    b = replicas("b", probe)
    await asyncio.sleep(RENEW)
    await asyncio.to_thread(redis_server.kill)
    killed = time.monotonic()
    took = await until(lambda: all(probe.where(name) == set() for name in SOURCES), within=2 * LEASE)
    # The holder's last renewal was at most RENEW before the kill; it stops RENEW / 2 before the expiry.
    assert took <= LEASE - RENEW / 2 + 0.3
    assert [a.changes(source, "expired") for source in SOURCES] == [1.0, 1.0]
    assert [a.leader(source) for source in SOURCES] == [0.0, 0.0]
    await asyncio.sleep(LEASE)
    assert all(probe.where(name) == set() for name in SOURCES)  # without Redis nobody runs them
    await asyncio.to_thread(redis_server.start)
    await until(lambda: all(len(probe.where(name)) == 1 for name in SOURCES), within=LEASE + 2 * RENEW + 2)
    again = time.monotonic() - killed
    print(f"stepped down {took:.2f} s after Redis died; leaders again {again:.2f} s after")  # noqa: T201 - the figure
    assert probe.most == 1
    assert {r.name for r in (a, b) for s in SOURCES if r.leader(s) == 1.0} <= {"a", "b"}
    assert sum(r.changes(s, change) for r in (a, b) for s in SOURCES for change in LEADER_CHANGES) >= 4


@pytest.mark.parametrize("moment", ["renewing", "contending"])
async def test_one_cancel_stops_the_supervisor_even_when_redis_py_swallows_it(
    replicas: Callable[[str, Probe], Replica], monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    """Regression for a CI run that hung 15 minutes in this module's teardown (and the agent's shutdown could).

    redis-py sends each command under asyncio.wait_for, which on Python 3.11 returns the result instead
    of raising when its task is cancelled in the loop iteration where the send completes (CPython
    gh-86296, fixed in 3.12 by wait_for on asyncio.timeout). A TaskGroup cancels its tasks once, so a
    supervisor task that lost that one cancellation kept renewing (or contending) forever. The send is
    made to cancel Leadership.run() at exactly that moment, every time (it is then the supervisor's task,
    awaiting the command, that the TaskGroup cancels).
    """
    probe = Probe()
    a = replicas("a", probe)
    await until(lambda: all(probe.where(name) == {"a"} for name in SOURCES))
    assert a.client is not None
    assert a.task is not None
    source = {"renewing": "websocket:acme", "contending": "poller"}[moment]
    if moment == "contending":  # the poller's supervisor is back to trying to acquire, every RENEW
        await a.client.set("qss:{leader:poller}", "intruder/0123", px=60_000)
        await until(lambda: probe.where("poller") == set(), within=2 * RENEW + 1)
    key, task = f"{{leader:{source}}}".encode(), a.task
    # The supervisor's TaskGroup cancels its tasks in the next iteration: this send is done by then.
    fired = cancel_when_sent(monkeypatch, task, key)
    async with asyncio.timeout(2 * RENEW + 1):
        await fired.wait()
    done, _ = await asyncio.wait({task}, timeout=STOP_SECONDS + 2)
    assert done, "Leadership.run() went on after its cancellation"
    assert task.cancelled()
    assert all(probe.where(name) == set() for name in SOURCES)
    assert [a.leader(name) for name in SOURCES] == [0.0, 0.0]
    if moment == "renewing":  # it stepped down properly: the lease was given back
        assert await a.client.get(b"qss:" + key) is None
        assert a.changes(source, "released") == 1.0


# ------------------------------------------------------------------------------- through the agent


def redis_state(url: str) -> dict[str, Any]:
    return {
        "backend": "redis",
        "redis": {"url": url, "connect_timeout_seconds": 0.1, "command_timeout_seconds": 0.1},
        "leader": {"lease_seconds": LEASE, "renew_seconds": RENEW},
    }


async def test_the_agent_is_not_ready_until_the_configured_redis_answers_and_stays_ready(
    start_agent: AgentFactory, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis")  # configured, not started yet
    try:
        running = await start_agent(state=redis_state(server.url))
        readyz = running.metrics_url + "/readyz"
        await asyncio.sleep(0.3)
        assert (await running.client.get(readyz)).status_code == 503
        await asyncio.to_thread(server.start)
        await until(lambda: running.agent.ready, within=5)
        assert (await running.client.get(readyz)).status_code == 200
        # Once running, readiness does not follow Redis: webhooks are answered from local state meanwhile.
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(2 * RENEW)
        assert (await running.client.get(readyz)).status_code == 200
    finally:
        server.kill()


async def test_a_replica_that_loses_the_poller_lease_abandons_the_call_in_flight(
    start_agent: AgentFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    fake = FakeZoom()
    api = FakeZoomApi(fake)
    api.add(FakeInstance(ACCOUNT_ID, "meeting", "m1==", participants(2), ended_at=time.time() - 600))
    asked, answer = asyncio.Event(), asyncio.Event()

    async def hold(call: Call) -> None:
        asked.set()
        await answer.wait()

    api.gate = hold
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(serve_fake_zoom(fake, extra=api.routes))
        stack.callback(answer.set)  # first of all: the fake's shutdown waits for the held answer
        running = await start_agent(
            **poller_config(fake, tmp_path / "state", lookback_hours=2), state=redis_state(redis_server.url)
        )
        async with asyncio.timeout(LEASE + 5):
            await asked.wait()
        assert running.agent.leadership.leading("poller")
        client = build_redis(running.agent.config.state.redis)
        try:
            await client.set("qss:{leader:poller}", "intruder/0123", px=60_000)
        finally:
            await client.aclose()
        took = await until(lambda: not running.agent.leadership.leading("poller"), within=2 * RENEW + 1)
        assert took <= RENEW + 0.5  # at its next renewal, without waiting for Zoom's answer
        series = await running.scrape()
        assert total(series, "zoom_qss_leader", source="poller") == 0
        assert total(series, "zoom_qss_leader_changes_total", source="poller", change="lost") == 1
        answer.set()  # Zoom answers at last: nobody is listening any more
        await asyncio.sleep(0.3)
        series = await running.scrape()
        assert total(series, "zoom_qss_poll_instances_total") == 0
        assert total(series, "zoom_qss_participant_sessions_total", source="poll") == 0
        assert len(api.summary_calls()) == 1


async def test_with_the_local_backend_the_agent_runs_every_pulled_source_and_says_so(
    start_agent: AgentFactory, tmp_path: Path
) -> None:
    fake = FakeZoom()
    async with serve_fake_zoom(fake), serve_fake_zoom_websocket(FakeZoomWebSocket(zoom=fake)) as ws:
        config = websocket_config(fake, ws.url)
        config["accounts"][0] |= poller_config(fake, tmp_path / "state")["accounts"][0]
        running = await start_agent(**config, poller={"enabled": True, "state_dir": str(tmp_path / "state")})
        await ws.until(lambda: ws.live.get("sub-acme") == 1)
        series = await running.scrape()
        assert {source: total(series, "zoom_qss_leader", source=source) for source in SOURCES} == dict.fromkeys(
            SOURCES, 1.0
        )
        assert total(series, "zoom_qss_leader_changes_total") == 0


async def test_a_replica_that_does_not_run_the_websocket_is_ready_without_its_connection(
    start_agent: AgentFactory, redis_server: RedisServer
) -> None:
    """websocket.readyz_requires_connection counts the WebSockets this replica runs, not the other's."""
    fake = FakeZoom()
    async with serve_fake_zoom(fake), serve_fake_zoom_websocket(FakeZoomWebSocket(zoom=fake)) as ws:
        config = websocket_config(fake, ws.url, readyz_requires_connection=True)
        first = await start_agent(**config, state=redis_state(redis_server.url))
        second = await start_agent(**config, state=redis_state(redis_server.url))
        agents = (first.agent, second.agent)
        await until(lambda: any(agent.leadership.leading("websocket:acme") for agent in agents), within=LEASE + 5)
        await until(lambda: all(agent.ready for agent in agents), within=5)
        assert sorted(agent.leadership.leading("websocket:acme") for agent in agents) == [False, True]
        assert ws.max_live == {"sub-acme": 1}
        for running in (first, second):
            assert (await running.client.get(running.metrics_url + "/readyz")).status_code == 200
