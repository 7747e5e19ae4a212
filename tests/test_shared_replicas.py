"""Issue 13's acceptance: three agent processes on one real redis-server behind a round-robin proxy count a
simulated organisation's stream exactly as one agent does (shared_state.py, docs/deploy.md).

One signed stream (the demo's simulator) goes to a single agent and, through a small real round-robin
HTTP proxy, to three replicas sharing Redis. Every fifth event is delivered twice (Zoom's retry, which
the proxy hands to the next replica); summaries and data summaries (the leaves) land wherever the proxy
sends them. Then a replica is SIGKILLed and the stream goes on: the proxy's 502 for it makes the sender
retry, and the retry reaches another replica. Then Redis is killed (no webhook gets a 5xx, the
degradation is counted) and started again (sharing resumes). The lease's own move on a replica's death is
tests/test_replicas.py's.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from qss_exporter.demo.simulator import DEFAULT_SITES, Simulator, default_accounts
from qss_exporter.zoom.signature import sign
from tests.conftest import Series, parse_metrics, total
from tests.process import AgentProcess
from tests.redis_server import RedisServer
from tests.round_robin_proxy import RoundRobinProxy

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
SECRETS = {"acme": "acme-secret-token-0123456789", "acme-health": "health-secret-token-0123456789"}
SYNC_SECONDS = 0.3
MINUTES = 8  # simulated minutes: 0-3 three replicas, 3-5 two, 5-6 Redis gone, 6-8 back
TIME_FAMILIES = frozenset({"zoom_qss_media_time_seconds_total", "zoom_qss_quality_time_seconds_total"})


def qos_families() -> set[str]:
    """Every family of docs/metrics.md from "Real-time stream" up to detail mode: what Zoom's data becomes."""
    text = DOC.read_text()
    section = text[text.index("## Real-time stream") : text.index("## Detail mode")]
    return set(re.findall(r"^\| `(zoom_qss_[a-z_]+)`", section, re.MULTILINE))


def config(redis: RedisServer | None) -> dict[str, Any]:
    mapping: dict[str, Any] = {
        "listen": {"webhook": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
        "accounts": [
            {"name": account.name, "account_id": account.account_id, "webhook_secret_token": SECRETS[account.name]}
            for account in default_accounts()
        ],
        "sites": [{"name": site.name, "cidrs": list(site.cidrs)} for site in DEFAULT_SITES],
        "labels": {"data_center": True, "client_os": True},
        # Long enough that no participant ages out between the single agent's scrape and the replicas'.
        "pipeline": {"activity_window_seconds": 3600},
    }
    if redis is not None:
        # A generous call timeout: a loaded test machine must not turn a slow answer into a local decision.
        redis_settings = {"url": redis.url, "call_timeout_ms": 1000, "sync_seconds": SYNC_SECONDS}
        mapping["state"] = {"backend": "redis", "redis": redis_settings}
    return mapping


def post(url: str, account: str, body: bytes, client: httpx.Client | None = None) -> int:
    stamp = str(int(time.time()))
    headers = {"content-type": "application/json", "x-zm-request-timestamp": stamp}
    headers["x-zm-signature"] = sign(SECRETS[account], stamp, body)
    if client is None:  # through the proxy: it closes every connection after its answer
        return httpx.post(url, content=body, headers=headers, timeout=10).status_code
    return client.post(url, content=body, headers=headers).status_code


def deliver(url: str, account: str, body: bytes, statuses: list[int]) -> None:
    """As Zoom does: a 5xx or no answer is retried (here at once, the proxy's next pick is another replica)."""
    for _ in range(4):
        status = post(url, account, body)
        statuses.append(status)
        if status < 500:
            return
    raise AssertionError("an event was not accepted after 4 deliveries")


def qos(series: Series, families: set[str]) -> Series:
    """The samples of `families` (histogram _bucket/_sum/_count included), zeros left out."""
    return {
        key: value
        for key, value in series.items()
        if value
        and re.sub(r"_(bucket|sum|count|total|created)$", "", key[0]) in families | {_base(f) for f in families}
    }


def _base(family: str) -> str:
    return family.removesuffix("_total")


def summed(*scrapes: Series) -> Series:
    result: Series = {}
    for scrape in scrapes:
        for key, value in scrape.items():
            result[key] = result.get(key, 0.0) + value
    return {key: value for key, value in result.items() if value}


def assert_same(replicas: Series, single: Series, short: frozenset[str] = frozenset()) -> None:
    """Series for series; a histogram's float _sum may differ in its last bits (observations added in
    another order), every count and bucket is exact. The `short` families may be short of the single
    agent's by what a dead replica took with it, but no more than 10 %."""
    for name in short:
        mine = {key: value for key, value in replicas.items() if key[0] == name}
        theirs = {key: value for key, value in single.items() if key[0] == name}
        assert all(value <= theirs.get(key, 0.0) for key, value in mine.items()), name
        assert sum(theirs.values()) * 0.9 <= sum(mine.values()) <= sum(theirs.values()), name
        replicas = {key: value for key, value in replicas.items() if key[0] != name}
        single = {key: value for key, value in single.items() if key[0] != name}
    assert replicas.keys() == single.keys(), {
        "only on the replicas": sorted(set(replicas) - set(single))[:5],
        "only on the single agent": sorted(set(single) - set(replicas))[:5],
    }
    differ = [
        (key[0], dict(key[1]), replicas[key], value)
        for key, value in single.items()
        if replicas[key] != (pytest.approx(value, rel=1e-9) if key[0].endswith("_sum") else value)
    ]
    assert not differ, differ[:20]


def test_three_replicas_on_redis_count_as_one_agent(tmp_path: Path) -> None:
    families = qos_families()
    assert {"zoom_qss_active_participants", "zoom_qss_media_time_seconds_total"} <= families
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    agents: list[AgentProcess] = []
    try:
        single = AgentProcess(_dir(tmp_path, "single"), config(None))
        agents.append(single)
        replicas = [AgentProcess(_dir(tmp_path, f"replica{i}"), config(redis)) for i in range(3)]
        agents += replicas
        for replica in replicas:
            replica.wait_for("state: Redis at .* answers")
        simulator = Simulator(default_accounts(), size=15, seed=13, start=time.time() - MINUTES * 60)
        statuses: list[int] = []
        sent = 0

        def stream(minutes: int, proxy: RoundRobinProxy) -> None:
            nonlocal sent
            for _ in range(minutes):
                for emitted in simulator.advance(60):
                    sent += 1
                    deliveries = 2 if sent % 5 == 0 else 1  # Zoom's retry of an event it thought lost
                    for _ in range(deliveries):
                        assert post(single.webhook_url, emitted.account, emitted.body, direct) == 200
                        deliver(proxy.url + single.webhook_path, emitted.account, emitted.body, statuses)

        def compare(live: list[AgentProcess], gone: Series | None = None) -> None:
            # Every replica reconciles who counts whom at each sync; a dead replica's meeting claims
            # expire after three syncs. Under load a sync comes late: compare until they agree, or fail
            # with the last difference after 15 s.
            deadline = time.monotonic() + 15
            time.sleep(SYNC_SECONDS * 4)
            while True:
                scrapes = [parse_metrics(replica.scrape_text()) for replica in live]
                everyone = summed(*scrapes, *([gone] if gone is not None else []))
                # A first record's time is credited when the next arrives (timekeeping.py); the replica
                # that held it, if it died before, took those seconds with it (docs/deploy.md).
                short = frozenset() if gone is None else TIME_FAMILIES
                try:
                    assert_same(qos(everyone, families), qos(parse_metrics(single.scrape_text()), families), short)
                    return
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(SYNC_SECONDS)

        with RoundRobinProxy([replica.webhook_base for replica in replicas]) as proxy, httpx.Client() as direct:
            stream(3, proxy)
            compare(replicas)
            assert min(proxy.answered.values()) > 30  # every replica took its share
            local = sum(total(parse_metrics(r.scrape_text()), "zoom_qss_state_local_decisions_total") for r in replicas)
            assert local == 0

            # A replica dies between two events; what reached it stays in its last scrape (the sum's
            # share it took with it), the events after go to the others, retried after the proxy's 502.
            gone = parse_metrics(replicas[2].scrape_text())
            replicas[2].process.kill()
            replicas[2].process.wait()
            stream(2, proxy)
            assert proxy.failed[replicas[2].webhook_base] > 0  # its events were retried elsewhere
            # Counters are the replicas' plus what the dead one had counted; gauges are the living's.
            gauges = {"zoom_qss_active_participants", "zoom_qss_active_meetings", "zoom_qss_phone_active_calls"}
            compare(replicas[:2], {key: value for key, value in gone.items() if key[0] not in gauges})

            # Redis goes away: every webhook is still answered 200, decided locally, and counted as such.
            redis.kill()
            before = len(statuses)
            started = time.monotonic()
            stream(1, proxy)
            outage = statuses[before:]
            assert all(status == 200 for status in outage if status != 502), set(outage)
            assert (time.monotonic() - started) / len(outage) < 0.5  # no call waits on the dead Redis
            for replica in replicas[:2]:
                metrics = parse_metrics(replica.scrape_text())
                assert total(metrics, "zoom_qss_state_shared_up") == 0
                assert total(metrics, "zoom_qss_state_local_decisions_total") > 0

            # Redis is back (empty: no persistence): the replicas notice and share again.
            redis.start()
            time.sleep(SYNC_SECONDS * 4 + 1)
            for replica in replicas[:2]:
                assert total(parse_metrics(replica.scrape_text()), "zoom_qss_state_shared_up") == 1
            duplicates, first = _duplicates(replicas[:2]), sent + 1
            stream(2, proxy)
            # The retries of this part (every fifth event, to the other replica) are recognised again.
            assert _duplicates(replicas[:2]) - duplicates == sum(1 for n in range(first, sent + 1) if n % 5 == 0)
    finally:
        for agent in agents:
            agent.kill()
        redis.kill()


def _dir(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir()
    return path


def _duplicates(replicas: list[AgentProcess]) -> float:
    return sum(
        total(parse_metrics(r.scrape_text()), "zoom_qss_webhook_requests_total", outcome="duplicate") for r in replicas
    )
