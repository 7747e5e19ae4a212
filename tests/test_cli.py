"""The command line as users run it: a real process, real ports, real signals."""

from __future__ import annotations

import gc
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from qss_exporter import __version__, cli
from qss_exporter.process_tuning import GC_YOUNG_THRESHOLD
from qss_exporter.zoom.signature import sign
from tests.conftest import parse_metrics, total
from tests.process import REPO, AgentProcess, ExporterProcess
from tests.samples import load_sample, sample_bytes

TESTDATA = REPO / "tests" / "testdata" / "config"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qss_exporter", *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def test_version() -> None:
    result = run_cli("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"qss-exporter {__version__}")


def test_check_config_accepts_a_valid_file() -> None:
    result = run_cli("check-config", "--config", str(TESTDATA / "valid-minimal.yaml"))
    assert result.returncode == 0
    assert "ok (1 account(s): acme)" in result.stdout


def test_check_config_names_every_problem_and_fails() -> None:
    result = run_cli("check-config", "--config", str(TESTDATA / "several-problems.yaml"))
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 10
    assert "  - accounts[0].webhook_secret_token: ${QSS_TEST_UNSET} is not set" in result.stderr
    assert "  - log.level: must be one of" in result.stderr
    assert "oauth-s3cret" not in result.stderr + result.stdout


def test_check_config_without_a_path_says_how_to_give_one() -> None:
    result = run_cli("check-config")
    assert result.returncode != 0
    assert "--config PATH or set QSS_EXPORTER_CONFIG" in result.stderr


def test_run_refuses_an_invalid_config() -> None:
    result = run_cli("run", "--config", str(TESTDATA / "several-problems.yaml"))
    assert result.returncode == 2
    assert "10 configuration problem(s)" in result.stderr


@pytest.fixture
def agent_process(tmp_path: Path) -> Iterator[tuple[ExporterProcess, str, str]]:
    config = {
        "listen": {"webhook": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
        "accounts": [
            {"name": "acme", "account_id": "Xq3vTn0bR8aL5mWcY2kPzQ", "webhook_secret_token": "${TEST_SECRET}"}
        ],
        "log": {"format": "json"},
    }
    with AgentProcess(tmp_path, config, env={"TEST_SECRET": "proc-secret"}) as process:
        yield process, process.webhook_url, process.metrics_url


def _signed(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {
        "content-type": "application/json",
        "x-zm-request-timestamp": stamp,
        "x-zm-signature": sign("proc-secret", stamp, body),
    }


def test_run_serves_and_stops_gracefully_on_sigterm(agent_process: tuple[ExporterProcess, str, str]) -> None:
    process, webhook, metrics = agent_process
    body = sample_bytes("meeting.participant_qos")
    assert httpx.post(webhook, content=body, headers=_signed(body)).status_code == 200
    scraped = parse_metrics(httpx.get(metrics + "/metrics").text)
    assert total(scraped, "zoom_qss_media_records_total", account="acme") == 4
    assert httpx.get(metrics + "/readyz").status_code == 200
    # A request in flight when SIGTERM arrives is finished, not dropped.
    host, port = webhook.split("//")[1].split("/")[0].split(":")
    path = "/" + webhook.split("//")[1].split("/", 1)[1]
    late = orjson.dumps({**load_sample("meeting.participant_qos"), "event_ts": 1761317999000})
    headers = "".join(f"{k}: {v}\r\n" for k, v in _signed(late).items())
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(late)}\r\n{headers}\r\n".encode()
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(head + late[:10])
        time.sleep(0.2)
        started = time.monotonic()
        process.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        connection.sendall(late[10:])
        reply = connection.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 200")
    assert process.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 10
    log = "".join(process.output)
    assert '"message": "qss-exporter 0.1.0 starting"' in log.replace('":"', '": "')
    assert "proc-secret" not in log


def test_start_up_log_summarises_config_without_secrets(agent_process: tuple[ExporterProcess, str, str]) -> None:
    process, _, _ = agent_process
    assert process.terminate() == 0
    starting = next(line for line in process.output if "starting" in line)
    entry = orjson.loads(starting)
    assert entry["config"]["accounts"][0]["name"] == "acme"
    assert entry["config"]["accounts"][0]["webhook_secret_token"] == ["<secret>"]


def test_replay_prints_metrics_and_reports_bad_lines(tmp_path: Path) -> None:
    capture = tmp_path / "capture.jsonl"
    frame = orjson.dumps({"module": "message", "content": sample_bytes("webinar.participant_qos").decode()})
    capture.write_bytes(
        b"\n".join(
            [
                sample_bytes("meeting.participant_data"),
                sample_bytes("meeting.participant_qos"),
                sample_bytes("meeting.participant_qos"),
                frame,
                b"{not json",
                b"",
            ]
        )
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        "accounts:\n  - name: acme\n    account_id: Xq3vTn0bR8aL5mWcY2kPzQ\n    webhook_secret_token: x\n"
        "sites:\n  - name: leeds\n    cidrs: [10.20.0.0/16]\n"
    )
    result = run_cli("replay", "--config", str(config), str(capture))
    assert result.returncode == 1  # one line was not JSON
    assert "accepted 3, duplicate 1, malformed 1" in result.stderr
    scraped = parse_metrics(result.stdout)
    assert total(scraped, "zoom_qss_media_records_total", product="meeting", site="leeds", network_type="wifi") == 4
    assert total(scraped, "zoom_qss_media_records_total", product="webinar") == 3
    assert total(scraped, "zoom_qss_events_total", source="replay") == 3


def test_plain_start_up_line_summarises_the_configuration_in_one_redacted_line(tmp_path: Path) -> None:
    """README and docs/config.md promise a start-up line summarising the effective configuration; with the
    default plain format it said only 'starting'."""
    config = {
        "listen": {"webhook": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
        "accounts": [
            {
                "name": "acme",
                "account_id": "Xq3vTn0bR8aL5mWcY2kPzQ",
                "webhook_secret_token": ["${TEST_SECRET}", "older-secret"],
                "client_id": "the-client-id",
                "client_secret": "the-client-secret",
            }
        ],
        "limits": {"max_series": 5000},
        "otlp": {"enabled": True, "endpoint": "http://127.0.0.1:1", "headers": {"authorization": "Bearer tok"}},
    }
    with AgentProcess(tmp_path, config, env={"TEST_SECRET": "proc-secret"}) as agent:
        [line] = [line for line in agent.output if "qss-exporter 0.1.0 starting" in line]
        summary = orjson.loads(line.split("starting; configuration: ", 1)[1])
        assert summary["accounts"] == [
            {
                "name": "acme",
                "account_id": "Xq3vTn0bR8aL5mWcY2kPzQ",
                "webhook_secret_token": ["<secret>", "<secret>"],
                "client_id": "the-client-id",
                "client_secret": "<secret>",
            }
        ]
        assert summary["limits"] == {"max_series": 5000}  # what differs from the defaults, nothing else
        assert summary["otlp"]["headers"] == {"authorization": "<secret>"}
        assert "pipeline" not in summary
        for secret in ("proc-secret", "older-secret", "the-client-secret", "Bearer tok"):
            assert secret not in agent.log_text()


def test_check_config_checks_the_web_configuration_file_too(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: absent.crt\n  key_file: absent.key\nbasic_auth_users:\n  a: pw\n")
    result = run_cli("check-config", "--config", str(TESTDATA / "valid-minimal.yaml"), "--web.config.file", str(web))
    assert result.returncode == 1
    assert f"  - {web}: tls_server_config.cert_file: cannot read {tmp_path / 'absent.crt'}" in result.stderr
    assert f"  - {web}: basic_auth_users.a: not a bcrypt hash" in result.stderr


def test_the_agent_runs_with_a_young_generation_of_ten_thousand_allocations() -> None:
    """Requests waiting for Redis outlive CPython's default 700 (process_tuning.py says what it costs)."""
    seen: list[tuple[int, int, int]] = []

    async def record() -> None:
        seen.append(gc.get_threshold())

    default = gc.get_threshold()
    try:
        cli._run_async(record())
    finally:
        gc.set_threshold(*default)
    assert seen == [(GC_YOUNG_THRESHOLD, default[1], default[2])]
    assert GC_YOUNG_THRESHOLD == 10_000
