"""One real agent process shared by the adversarial model tests, and the helpers they build events with.

Each test measures what it changed (a scrape before and after), so that the tests can share the
process and still assert exact figures, whatever ran before them.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from qss_exporter.zoom.signature import sign
from tests.conftest import ACCOUNT_ID, OTHER_SECRET, SECRET, SESSION_ACCOUNT_ID, Series, base_config, parse_metrics
from tests.process import AgentProcess
from tests.samples import load_sample

MSP_SECRET = "msp-master-secret-token"
MSP_ACCOUNT_ID = "MspMaster0000000000001"
DECLARED_SUB = "DeclaredSub00000000001"
SECRETS = {ACCOUNT_ID: SECRET, SESSION_ACCOUNT_ID: OTHER_SECRET, MSP_ACCOUNT_ID: MSP_SECRET}

__all__ = [
    "DECLARED_SUB",
    "MSP_ACCOUNT_ID",
    "MSP_SECRET",
    "delta",
    "post",
    "qos_event",
    "rss_bytes",
    "scrape",
    "shared_agent",
]

_ids = itertools.count(1)


def adversarial_config() -> dict[str, Any]:
    config = base_config()
    config["accounts"].append(
        {
            "name": "msp",
            "account_id": MSP_ACCOUNT_ID,
            "webhook_secret_token": MSP_SECRET,
            "sub_accounts": [DECLARED_SUB],
            "undeclared_sub_accounts": "master",
        }
    )
    config["labels"] = {"data_center": True, "client_os": True, "client_version": True}
    return config


@pytest.fixture(scope="session", autouse=True)
def _close_client() -> Iterator[None]:
    yield
    _client.close()


@pytest.fixture(scope="session")
def shared_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with AgentProcess(tmp_path_factory.mktemp("adversarial"), adversarial_config()) as agent:
        yield agent


_client = httpx.Client(timeout=30.0)  # one keep-alive connection for the hundreds of posts of these tests


def post(agent: AgentProcess, body: dict[str, Any] | bytes, secret: str | None = None) -> httpx.Response:
    """Sign and POST `body` (with its account's secret unless one is given), as Zoom would."""
    raw = body if isinstance(body, bytes) else _encode(body)
    if secret is None:
        assert isinstance(body, dict)
        secret = SECRETS[body["payload"]["account_id"]]
    stamp = str(int(time.time()))
    headers = {
        "content-type": "application/json; charset=utf-8",
        "x-zm-request-timestamp": stamp,
        "x-zm-signature": sign(secret, stamp, raw),
    }
    return _client.post(agent.webhook_url, content=raw, headers=headers)


def _encode(body: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254): the stdlib writes up to ~990
        return json.dumps(body, separators=(",", ":")).encode()


def scrape(agent: AgentProcess) -> Series:
    response = _client.get(agent.metrics_url + "/metrics")
    response.raise_for_status()
    return parse_metrics(response.text)


def delta(before: Series, after: Series, name: str, **labels: str) -> float:
    """How much the samples called `name` whose labels include `labels` grew, summed."""
    wanted = set(labels.items())

    def total(samples: Series) -> float:
        return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= have)

    return total(after) - total(before)


def qos_event(name: str = "meeting.participant_qos", participant: str | None = None, **account: str) -> dict[str, Any]:
    """A sample event as a new participant (so that it is never a duplicate), now."""
    body: dict[str, Any] = copy.deepcopy(load_sample(name))
    body["event_ts"] = int(time.time() * 1000)
    who = participant or f"adv-{next(_ids)}"
    obj = body["payload"]["object"]
    person = obj.get("participant") or obj.get("user")
    if person is not None:
        for key in ("user_id", "participant_id", "id"):
            if key in person:
                person[key] = who
    if "call_id" in obj:
        obj["call_id"] = who
    body["payload"].update(account)
    return body


def rss_bytes(agent: AgentProcess) -> int:
    for line in Path(f"/proc/{agent.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")
