"""No configured secret is ever printed: not in any log line at any level (JSON format, which also prints the
configuration summary), not by check-config, not in an answer, on /metrics or on the landing page."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.adversarial.conftest import post, qos_event
from tests.conftest import OTHER_SECRET, SECRET, base_config
from tests.process import AgentProcess, ExporterProcess

OTLP_PASSWORD = "otlp-url-password-5e1"
OTLP_TOKEN = "otlp-header-token-8c2"
CLIENT_SECRET = "zoom-client-secret-3f9"
DETAIL_KEY = "detail-hash-key-7a4"
LOGS_KEY = "logs-hash-key-2b6"
SECRETS = (SECRET, OTHER_SECRET, OTLP_PASSWORD, OTLP_TOKEN, CLIENT_SECRET, DETAIL_KEY, LOGS_KEY)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def secret_config() -> dict[str, Any]:
    config = base_config()
    config["accounts"][0] |= {"client_id": "zoom-client-id", "client_secret": CLIENT_SECRET}
    config["log"] = {"level": "debug", "format": "json"}
    config["otlp"] = {
        "enabled": True,
        "protocol": "http/protobuf",
        "endpoint": f"http://otel-user:{OTLP_PASSWORD}@127.0.0.1:{_closed_port()}",  # nobody listens
        "headers": f"authorization=Bearer%20{OTLP_TOKEN}",  # the OTEL_EXPORTER_OTLP_HEADERS form
        "interval_seconds": 0.3,
        "timeout_seconds": 0.5,
        "logs": {"enabled": True, "participant_id_hash_key": LOGS_KEY},
    }
    config["detail"] = {"enabled": True, "hash_key": DETAIL_KEY, "worst": {"participants": 3}}
    return config


@pytest.fixture(scope="module")
def secret_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with AgentProcess(tmp_path_factory.mktemp("secrets"), secret_config()) as agent:
        yield agent


def _assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows a secret"


def test_logs_answers_metrics_and_pages_show_no_secret(secret_agent: AgentProcess) -> None:
    answers = [
        post(secret_agent, qos_event(), secret=SECRET),
        post(secret_agent, qos_event(), secret="wrong-secret-value"),  # 401
        post(secret_agent, qos_event(), secret=OTHER_SECRET),  # 403 account_mismatch, logged
        post(secret_agent, b"not json", secret=SECRET),  # 400
        post(secret_agent, orjson.dumps({"event": "endpoint.url_validation", "payload": {"plainToken": "t"}}), SECRET),
    ]
    assert [answer.status_code for answer in answers] == [200, 401, 403, 400, 200]
    pages = [httpx.get(secret_agent.metrics_url + path, timeout=10).text for path in ("/", "/metrics", "/healthz")]
    deadline = time.monotonic() + 20
    while "OTLP metric export to" not in secret_agent.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = secret_agent.log_text()
    assert f"otel-user:{OTLP_PASSWORD}" not in log
    assert "http://<secret>@127.0.0.1" in log  # the failing endpoint is named, without its password
    assert '"config":' in log  # the configuration summary was printed, redacted
    assert "refused a webhook (account_mismatch)" in log
    for answer in answers:
        _assert_no_secret(answer.text, f"the answer {answer.status_code}")
    for page in pages:
        _assert_no_secret(page, "a page")
    _assert_no_secret(log, "the log")


def _check_config(tmp_path: Path, config: dict[str, Any]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    process = ExporterProcess(["check-config", "--config", str(path)])
    process.process.wait(timeout=60)
    process.kill()
    return "".join(process.output)


def test_check_config_shows_no_secret_valid_or_not(tmp_path: Path) -> None:
    valid = _check_config(tmp_path, secret_config())
    assert "ok (2 account(s): acme, acme-health)" in valid
    broken = secret_config()
    broken["otlp"] |= {"endpoint": f"ftp://otel-user:{OTLP_PASSWORD}@collector", "headers": f"Bearer {OTLP_TOKEN}"}
    broken["accounts"][0] |= {"client_secret": {"value": CLIENT_SECRET}}
    broken["accounts"][1] |= {"webhook_secret_token": [OTHER_SECRET, 12345678]}
    broken["detail"] |= {"hash_key": ""}
    output = _check_config(tmp_path, broken)
    for problem in ("otlp.endpoint: expected an http(s) URL", "otlp.headers: entry 1 is not key=value"):
        assert problem in output
    assert "accounts[0].client_secret" in output
    _assert_no_secret(output, "check-config")
