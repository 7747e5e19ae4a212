"""`qss-exporter demo`: the simulator's events, signed and POSTed to the agent's own webhook listener.

Everything a real deployment exercises runs here too (HTTP, signature check, decoding, dedupe), so
the demo doubles as an end-to-end smoke test.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import httpx

from qss_exporter.demo.simulator import DEFAULT_SITES, SimAccount, Simulator, default_accounts
from qss_exporter.enrichment import ENRICHMENT_LABELS
from qss_exporter.zoom.signature import sign

__all__ = ["DemoDriver", "demo_config"]

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5  # real seconds between simulator steps
SEND_CONCURRENCY = 8


def demo_config(
    accounts: Sequence[SimAccount],
    webhook: str,
    metrics: str,
    speed: float,
    labels: Collection[str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The configuration mapping a demo agent runs with, and each account's fresh secret token.

    `labels` names the enrichment labels to turn on; None keeps the defaults a configuration gets without a
    `labels:` section (network type, and site since the demo maps its sites), so that the demo's series
    level off as a real deployment's would (docs/metrics.md "Series budget").
    """
    tokens = {account.name: secrets.token_urlsafe(24) for account in accounts}
    mapping: dict[str, Any] = {
        "listen": {"webhook": webhook, "metrics": metrics},
        "accounts": [
            {"name": account.name, "account_id": account.account_id, "webhook_secret_token": tokens[account.name]}
            for account in accounts
        ],
        "sites": [{"name": site.name, "cidrs": list(site.cidrs)} for site in DEFAULT_SITES],
        # A simulated minute lasts 60/speed real seconds: keep "active" to three simulated minutes.
        "pipeline": {"activity_window_seconds": max(3 * 60 / speed, 2.0)},
        # Detail mode, hashed with a key nobody keeps: the worst participants and meetings, re-ranked every
        # simulated minute, for the dashboards' drill-down panels.
        "detail": {
            "enabled": True,
            "hash_key": secrets.token_urlsafe(24),
            "worst": {"participants": 10, "meetings": 5, "interval_seconds": max(60 / speed, 1.0)},
        },
    }
    if labels is not None:
        mapping["labels"] = {name: name in labels for name in ENRICHMENT_LABELS}
    return mapping, tokens


class DemoDriver:
    """Advances the simulator in real time x `speed` and delivers what it emits, signed."""

    def __init__(self, simulator: Simulator, tokens: Mapping[str, str], speed: float) -> None:
        self.simulator = simulator
        self.tokens = dict(tokens)
        self.speed = speed
        self.sent = 0
        self.failed = 0

    @classmethod
    def create(cls, tokens: Mapping[str, str], speed: float, size: int, seed: int) -> DemoDriver:
        return cls(Simulator(default_accounts(), size=size, seed=seed, start=time.time()), tokens, speed)

    async def run(self, webhook_url: str) -> None:
        limiter = asyncio.Semaphore(SEND_CONCURRENCY)
        async with httpx.AsyncClient(timeout=5.0) as client:
            next_tick = time.monotonic()
            while True:
                batch = self.simulator.advance(TICK_SECONDS * self.speed)
                await asyncio.gather(*(self._send(client, limiter, webhook_url, e.account, e.body) for e in batch))
                next_tick += TICK_SECONDS
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

    async def _send(
        self, client: httpx.AsyncClient, limiter: asyncio.Semaphore, url: str, account: str, body: bytes
    ) -> None:
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json; charset=utf-8",
            "x-zm-request-timestamp": timestamp,
            "x-zm-signature": sign(self.tokens[account], timestamp, body),
        }
        async with limiter:
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as error:
                self.failed += 1
                log.warning("demo delivery failed: %s", error)
                return
        if response.status_code == 200:
            self.sent += 1
        else:
            self.failed += 1
            log.warning("demo delivery answered %d: %s", response.status_code, response.text[:200])
