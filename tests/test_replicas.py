"""Three real agent processes on one real redis-server: each pulled source runs on exactly one of them.

The agents poll a fake Zoom REST API and subscribe to a fake Zoom WebSocket (both real servers in this
test's event loop). The test SIGKILLs the holders and measures the takeover, kills Redis (the holder
steps down: never two pollers) and starts it again (a leader is elected again), while the agents keep
answering webhooks. The figures it prints are the ones docs/deploy.md quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ACCOUNT_ID, SECRET, Series, parse_metrics, total
from tests.fake_zoom import FakeZoom, serve_fake_zoom
from tests.fake_zoom_api import FakeInstance, FakeZoomApi, participants
from tests.fake_zoom_websocket import FakeZoomWebSocket, serve_fake_zoom_websocket
from tests.process import AgentProcess
from tests.redis_server import RedisServer
from tests.samples import sample_bytes

pytestmark = pytest.mark.slow

LEASE, RENEW = 3.0, 1.0
BOUND = LEASE + RENEW  # the documented takeover bound: lease_seconds + renew_seconds
SLACK = 2.0  # scraping every 0.1 s, process scheduling on a shared 2-core machine
REDIS_PASSWORD = "redis-pa55word"
SOURCES = ("poller", "websocket:acme")


def agent_config(directory: Path, redis: RedisServer, zoom: FakeZoom, websocket_url: str) -> dict[str, Any]:
    return {
        "listen": {"webhook": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
        "accounts": [
            {
                "name": "acme",
                "account_id": ACCOUNT_ID,
                "webhook_secret_token": SECRET,
                "client_id": zoom.client_id,
                "client_secret": zoom.client_secret,
                "websocket": {"subscription_id": "sub-acme", "url": websocket_url},
            }
        ],
        "zoom": {"api_base_url": zoom.url + "/v2", "oauth_token_url": zoom.url + "/oauth/token"},
        "websocket": {"reconnect_min_seconds": 0.05, "reconnect_max_seconds": 0.2},
        # Each replica keeps its poller progress in its own directory; lookback finds the meeting below.
        "poller": {"enabled": True, "state_dir": str(directory / "state"), "lookback_hours": 2},
        "state": {
            "backend": "redis",
            "redis": {
                "url": redis.url.replace("//", f"//:{REDIS_PASSWORD}@"),
                "connect_timeout_seconds": 0.3,
                "command_timeout_seconds": 0.2,
            },
            "leader": {"lease_seconds": LEASE, "renew_seconds": RENEW},
        },
    }


class Fleet:
    """The agents, and what their /metrics say; a killed agent is skipped."""

    def __init__(self, agents: list[AgentProcess], client: httpx.AsyncClient) -> None:
        self.agents = agents
        self.client = client
        self.dead: set[int] = set()

    async def scrape(self, index: int) -> Series:
        response = await self.client.get(self.agents[index].metrics_url + "/metrics")
        response.raise_for_status()
        return parse_metrics(response.text)

    async def everyone(self) -> dict[int, Series]:
        alive = [index for index in range(len(self.agents)) if index not in self.dead]
        return dict(zip(alive, await asyncio.gather(*(self.scrape(index) for index in alive)), strict=True))

    async def leaders(self, source: str) -> list[int]:
        return [i for i, series in (await self.everyone()).items() if total(series, "zoom_qss_leader", source=source)]

    async def holders(self) -> dict[str, list[int]]:
        """The replicas running each source now, by zoom_qss_leader."""
        series = await self.everyone()
        return {
            source: [i for i, s in series.items() if total(s, "zoom_qss_leader", source=source)] for source in SOURCES
        }

    async def until(self, predicate: Callable[[], Awaitable[bool]], within: float) -> float:
        """Wait until `predicate()` holds, checked every 0.1 s; returns how long it took."""
        started = time.monotonic()
        async with asyncio.timeout(within):
            while not await predicate():  # noqa: ASYNC110 - /metrics is the observable here; no event to await
                await asyncio.sleep(0.1)
        return time.monotonic() - started

    def kill(self, index: int) -> None:
        self.agents[index].process.kill()  # SIGKILL: no release, no goodbye
        self.dead.add(index)


@pytest.fixture
async def zoom() -> AsyncIterator[tuple[FakeZoom, FakeZoomApi]]:
    fake = FakeZoom()
    api = FakeZoomApi(fake)
    api.add(FakeInstance(ACCOUNT_ID, "meeting", "m1==", participants(2), ended_at=time.time() - 600))
    async with serve_fake_zoom(fake, extra=api.routes):
        yield fake, api


async def test_one_replica_runs_each_pulled_source_through_kills_and_a_redis_outage(
    tmp_path: Path, zoom: tuple[FakeZoom, FakeZoomApi]
) -> None:
    fake, api = zoom
    redis = RedisServer(tmp_path / "redis", password=REDIS_PASSWORD)
    redis.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(redis.kill)
        ws = await stack.enter_async_context(serve_fake_zoom_websocket(FakeZoomWebSocket(zoom=fake)))
        directories = [tmp_path / f"agent-{index}" for index in range(3)]
        for directory in directories:
            directory.mkdir()
        agents = list(
            await asyncio.gather(
                *(
                    asyncio.to_thread(AgentProcess, directory, agent_config(directory, redis, fake, ws.url))
                    for directory in directories
                )
            )
        )
        for agent in agents:
            stack.callback(agent.kill)
        fleet = Fleet(agents, await stack.enter_async_context(httpx.AsyncClient(timeout=5)))

        # ---- one leader per source: one poller against the fake API, one WebSocket connection
        async def one_leader_each() -> bool:
            return all(len(running) == 1 for running in (await fleet.holders()).values())

        elected = await fleet.until(one_leader_each, within=LEASE + 3 * RENEW + 10)
        poller = (await fleet.leaders("poller"))[0]

        async def polled(index: int) -> bool:
            return total(await fleet.scrape(index), "zoom_qss_poll_instances_total", outcome="polled") == 1

        await fleet.until(lambda: polled(poller), within=10)
        await ws.until(lambda: ws.live.get("sub-acme") == 1, within=5)
        await asyncio.sleep(3 * RENEW)  # the others keep trying, and keep failing
        series = await fleet.everyone()
        assert [i for i, s in series.items() if total(s, "zoom_qss_leader", source="poller")] == [poller]
        requests = {i: total(s, "zoom_qss_api_requests_total") for i, s in series.items()}
        assert requests[poller] == len(api.calls) > 0  # every call the fake API saw came from the leader
        assert [requests[i] for i in series if i != poller] == [0, 0]
        websocket = (await fleet.leaders("websocket:acme"))[0]
        connected = {i: total(s, "zoom_qss_websocket_connected") for i, s in series.items()}
        assert connected == {i: float(i == websocket) for i in series}
        assert ws.max_live == {"sub-acme": 1}

        # ---- SIGKILL the holders: the leases move within the bound
        holders = {poller, websocket}
        for index in holders:
            fleet.kill(index)
        killed = time.monotonic()

        async def moved() -> bool:
            return all(set(running) - holders for running in (await fleet.holders()).values())

        takeover = await fleet.until(moved, within=BOUND + SLACK + 5)
        new_poller = (await fleet.leaders("poller"))[0]
        await fleet.until(lambda: polled(new_poller), within=10)  # its own sweep: it polls, the dead do not
        await ws.until(lambda: ws.live.get("sub-acme") == 1 and len(ws.connections) >= 2, within=5)
        assert ws.connections[0].close_code is None  # the killed holder just went away: no close frame
        assert ws.max_live == {"sub-acme": 1}
        assert takeover <= BOUND + SLACK

        # ---- Redis gone: the holder stops its sources before its lease could expire; webhooks keep working
        redis.kill()
        redis_died = time.monotonic()

        async def nobody_leads() -> bool:
            return not any((await fleet.holders()).values())

        stepped_down = await fleet.until(nobody_leads, within=LEASE + SLACK + 5)
        assert stepped_down <= LEASE + SLACK
        await ws.until(lambda: ws.live.get("sub-acme") == 0, within=5)
        assert ws.connections[-1].close_code in (1000, 1001)  # a proper close, not a dropped connection
        calls = len(api.calls)
        survivor = next(index for index in range(3) if index not in fleet.dead)
        response = await asyncio.to_thread(
            fleet.agents[survivor].post_signed, sample_bytes("meeting.participant_qos"), SECRET
        )
        assert response.status_code == 200
        ready = await fleet.client.get(fleet.agents[survivor].metrics_url + "/readyz")
        assert ready.status_code == 200  # Redis answered once: readiness does not follow it afterwards
        series = await fleet.everyone()
        assert sum(total(s, "zoom_qss_leader_changes_total", change="expired") for s in series.values()) == 2
        await asyncio.sleep(LEASE)
        assert await nobody_leads()
        assert len(api.calls) == calls  # and nobody polls without the lease

        # ---- Redis back: a leader is elected again
        await asyncio.to_thread(redis.start)
        back = time.monotonic()
        reelected = await fleet.until(one_leader_each, within=LEASE + 3 * RENEW + 10)
        await ws.until(lambda: ws.live.get("sub-acme") == 1, within=5)
        assert ws.max_live == {"sub-acme": 1}
        print(  # noqa: T201 - the figures docs/deploy.md quotes
            f"\nfirst election {elected:.1f} s; takeover after SIGKILL {takeover:.1f} s (bound {BOUND:g} s); "
            f"step-down after Redis died {stepped_down:.1f} s; leaders again {reelected:.1f} s after Redis came "
            f"back ({back - redis_died:.1f} s outage); since the kill {time.monotonic() - killed:.1f} s"
        )

        # ---- SIGTERM: the leases are given back, the agents exit cleanly, and no password was ever printed
        for index in range(3):
            if index not in fleet.dead:
                assert await asyncio.to_thread(fleet.agents[index].terminate) == 0
        for agent in agents:
            assert REDIS_PASSWORD not in agent.log_text()
        assert "leader: this replica runs poller now" in "".join(agent.log_text() for agent in agents)
