"""Shared fixtures: a real agent on loopback ports, signed webhook delivery, and /metrics reading."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from qss_exporter.app import Agent
from qss_exporter.config import config_from_mapping
from qss_exporter.zoom.signature import sign
from tests.redis_server import RedisServer
from tests.secret_watch import WATCH, WatchHandler, register_secret

SECRET = "test-secret-token"
ROTATED_SECRET = "rotated-secret-token"
OTHER_SECRET = "other-account-secret"
ACCOUNT_ID = "Xq3vTn0bR8aL5mWcY2kPzQ"  # the account id of the shared samples
SESSION_ACCOUNT_ID = "Hd5sWm1qQkO7rLbN3vTzXe"
register_secret(SECRET, ROTATED_SECRET, OTHER_SECRET, "fake-client-secret")  # the last: tests/fake_zoom.py


@pytest.fixture(scope="session", autouse=True)
def secret_watch() -> Iterator[None]:
    """Every log line of the session (the exporter's at DEBUG) goes through the secret watch; at the end,
    the session fails if any line, process output or captured output held a configured secret."""
    root, ours = logging.getLogger(), logging.getLogger("qss_exporter")
    handler = WatchHandler()
    levels = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    ours.setLevel(logging.DEBUG)
    yield
    root.removeHandler(handler)
    root.setLevel(levels[0])
    ours.setLevel(levels[1])
    assert not WATCH.leaks, WATCH.report()


@pytest.fixture(autouse=True)
def _watching(secret_watch: None) -> None:
    """Put the watch back if a test replaced the root handlers (as `configure_logging` does)."""
    root = logging.getLogger()
    if not any(isinstance(handler, WatchHandler) for handler in root.handlers):
        root.addHandler(WatchHandler())
    logging.getLogger("qss_exporter").setLevel(logging.DEBUG)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Output the tests left uncaptured by capsys (stdout, stderr) is scanned too."""
    for name, text in ((f"{report.nodeid} stdout", report.capstdout), (f"{report.nodeid} stderr", report.capstderr)):
        if text:
            WATCH.scan(text, name)


class MutableClock:
    """Wall-clock time that a test can move forward (activity windows, TTLs) without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def base_config() -> dict[str, Any]:
    return {
        "listen": {"webhook": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
        "accounts": [
            {"name": "acme", "account_id": ACCOUNT_ID, "webhook_secret_token": [SECRET, ROTATED_SECRET]},
            {"name": "acme-health", "account_id": SESSION_ACCOUNT_ID, "webhook_secret_token": OTHER_SECRET},
        ],
        "sites": [{"name": "leeds", "cidrs": ["10.20.0.0/16"]}, {"name": "denver", "cidrs": ["192.168.1.0/24"]}],
    }


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Series:
    samples: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Series, name: str, **labels: str) -> float:
    """Sum of every sample called `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= have)


@dataclass
class RunningAgent:
    agent: Agent
    clock: MutableClock
    client: httpx.AsyncClient
    path: str = "/zoom/webhook"
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def webhook_url(self) -> str:
        return self.agent.url("webhook") + self.path

    @property
    def metrics_url(self) -> str:
        return self.agent.url("metrics")

    def headers(self, body: bytes, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(self.clock()) if timestamp is None else timestamp)
        return {
            "content-type": "application/json; charset=utf-8",
            "x-zm-request-timestamp": stamp,
            "x-zm-signature": sign(secret, stamp, body),
        }

    async def post(self, body: bytes | dict[str, Any], secret: str = SECRET, **kwargs: Any) -> httpx.Response:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = kwargs.pop("headers", None) or self.headers(raw, secret)
        return await self.client.post(self.webhook_url, content=raw, headers=headers, **kwargs)

    async def scrape_text(self, accept: str | None = None) -> httpx.Response:
        headers = {"accept": accept} if accept else {}
        return await self.client.get(self.metrics_url + "/metrics", headers=headers)

    async def scrape(self) -> Series:
        response = await self.scrape_text()
        assert response.status_code == 200
        return parse_metrics(response.text)


AgentFactory = Callable[..., Awaitable[RunningAgent]]


@pytest.fixture
async def start_agent() -> AsyncIterator[AgentFactory]:
    """Starts real agents (both uvicorn listeners on 127.0.0.1, free ports) and stops them after the test."""
    running: list[RunningAgent] = []

    async def start(**overrides: Any) -> RunningAgent:
        clock = MutableClock()
        mapping = merge(base_config(), overrides)
        WATCH.register_config(mapping)
        agent = Agent(config_from_mapping(mapping), clock=clock)
        ready = asyncio.Event()
        task = asyncio.create_task(agent.serve(on_ready=lambda _: ready.set()))
        await asyncio.wait_for(ready.wait(), timeout=10)
        path = agent.config.webhook.path
        instance = RunningAgent(agent, clock, httpx.AsyncClient(timeout=10), path, task)
        running.append(instance)
        return instance

    yield start
    for instance in running:
        instance.agent.stop()
        await instance.client.aclose()
        if instance.task is not None:
            await asyncio.wait_for(instance.task, timeout=15)


@pytest.fixture
def promtool() -> str:
    """Path to promtool; missing is a skip on a laptop but a failure in CI (CI installs it)."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI (Debian package prometheus)")
        pytest.skip("promtool not installed (Debian package prometheus)")
    return path


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started redis-server on a free loopback port (no persistence); killed after the test."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()
