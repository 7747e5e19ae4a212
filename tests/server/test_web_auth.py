"""Basic auth on the metrics listener: cached bcrypt off the event loop, bounded guessing, rate limit,
response headers, and users re-read when the web configuration file changes (in-process agent)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import yaml

from qss_exporter.server.web_auth import MAX_WAITING
from tests.conftest import AgentFactory
from tests.test_e2e_webhook import qos_body

PASSWORD = "right-password"


def _web_config(path: Path, users: dict[str, str], **extra: Any) -> str:
    path.write_text(yaml.safe_dump({"basic_auth_users": users, **extra}))
    return str(path)


def _hash(password: str, cost: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


async def test_each_password_is_checked_once_and_the_answer_cached(start_agent: AgentFactory, tmp_path: Path) -> None:
    web = _web_config(tmp_path / "web.yml", {"prometheus": _hash(PASSWORD)})
    running = await start_agent(listen={"metrics_web_config_file": web})
    auth = running.agent.web_auth
    assert auth is not None
    url = running.metrics_url + "/metrics"
    wrong = [await running.client.get(url, auth=("prometheus", "guess")) for _ in range(10)]
    right = [await running.client.get(url, auth=("prometheus", PASSWORD)) for _ in range(10)]
    unknown = await running.client.get(url, auth=("mallory", PASSWORD))
    nothing = await running.client.get(url)
    assert [r.status_code for r in wrong] == [401] * 10
    assert [r.status_code for r in right] == [200] * 10
    assert (unknown.status_code, nothing.status_code) == (401, 401)
    assert nothing.headers["www-authenticate"] == "Basic"
    assert auth.checks == 3  # one per distinct (user, password), whatever the number of requests


async def test_guessing_passwords_gets_429_beyond_a_short_queue_and_never_slows_webhooks(
    start_agent: AgentFactory, tmp_path: Path
) -> None:
    web = _web_config(tmp_path / "web.yml", {"prometheus": _hash(PASSWORD, cost=10)})  # ~100 ms a check
    running = await start_agent(listen={"metrics_web_config_file": web})
    auth = running.agent.web_auth
    assert auth is not None
    url = running.metrics_url + "/metrics"
    async with httpx.AsyncClient(timeout=30) as attacker:
        guesses = [asyncio.create_task(attacker.get(url, auth=("prometheus", f"guess-{n}"))) for n in range(60)]
        while auth.checks == 0:  # noqa: ASYNC110 - the count is bumped on the bcrypt thread
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        assert auth._waiting > 0, "the guesses were checked before the webhooks could compete with them"
        latencies = []
        for n in range(20):  # Zoom's webhooks meanwhile
            started = time.perf_counter()
            response = await running.post(qos_body(participant=f"during-{n}"))
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
        answers = [(await guess).status_code for guess in guesses]
    assert set(answers) == {401, 429}
    assert answers.count(401) <= MAX_WAITING + 1
    assert auth.checks == answers.count(401)
    # Were bcrypt on the event loop, nearly every webhook would wait ~100 ms per queued check; the 90th
    # percentile (not the maximum: one scheduling hiccup on a shared machine is not what this tests) shows it.
    p90 = sorted(latencies)[len(latencies) * 9 // 10]
    assert p90 < 0.1, f"webhooks waited {p90 * 1000:.0f} ms (90th percentile) behind bcrypt"


async def test_rate_limit_headers_and_a_changed_file(start_agent: AgentFactory, tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    limits = {"rate_limit": {"interval": "10s", "burst": 3}}
    headers = {"http_server_config": {"headers": {"X-Frame-Options": "deny"}}}
    web = _web_config(path, {"prometheus": _hash(PASSWORD)}, **limits, **headers)
    running = await start_agent(listen={"metrics_web_config_file": web})
    url = running.metrics_url + "/healthz"
    answers = [await running.client.get(url, auth=("prometheus", PASSWORD)) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["x-frame-options"] == "deny"
    # A new user and no rate limit, picked up while running (the file is checked every second).
    _web_config(path, {"grafana-agent": _hash("other-password")}, **headers)
    deadline = time.monotonic() + 10
    status = 0
    while status != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        status = (await running.client.get(url, auth=("grafana-agent", "other-password"))).status_code
    assert status == 200
    assert (await running.client.get(url, auth=("prometheus", PASSWORD))).status_code == 401
