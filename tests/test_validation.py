"""One validation: every configuration `run` refuses, `check-config` refuses with the same key-path lines,
and the reverse, as real processes; no traceback either way (validation.py)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from qss_exporter.app import Agent
from qss_exporter.cli import main
from qss_exporter.config import load_config
from qss_exporter.errors import ConfigError
from qss_exporter.validation import load_checked, validate
from tests.process import REPO
from tests.test_config import TABLE_ENVIRON, TESTDATA

ACME = {"name": "acme", "account_id": "abc123", "webhook_secret_token": "s3cret-token"}
LOOPBACK = {"webhook": "127.0.0.1:0", "metrics": "127.0.0.1:0"}
OTLP = {"enabled": True, "protocol": "grpc", "endpoint": "https://collector.example:4317"}


def _config(**sections: Any) -> dict[str, Any]:
    return {"listen": LOOPBACK, "accounts": [ACME], **sections}


Case = tuple[dict[str, Any], dict[str, str], list[str]]

# name -> (configuration, environment, the problem lines both commands print; [] = both accept it).
# "{tmp}" is the test's directory: the files named there do not exist unless the case creates them.
CASES: dict[str, Case] = {
    "bucket override of a family that does not exist": (
        _config(histograms={"buckets": {"zoom_qss_media_latncy_seconds": [0.01, 0.1]}}),
        {},
        [
            "histograms.buckets.zoom_qss_media_latncy_seconds: no histogram family of that name "
            "(did you mean zoom_qss_media_latency_seconds?)"
        ],
    ),
    "unreadable CA certificate": (
        _config(otlp=OTLP | {"certificate_file": "{tmp}/ca.pem"}),
        {},
        ["otlp.certificate_file: cannot read {tmp}/ca.pem: No such file or directory"],
    ),
    "unreadable client certificate and key": (
        _config(otlp=OTLP | {"client_certificate_file": "{tmp}/client.pem", "client_key_file": "{tmp}"}),
        {},
        [
            "otlp.client_certificate_file: cannot read {tmp}/client.pem: No such file or directory",
            "otlp.client_key_file: cannot read {tmp}: Is a directory",
        ],
    ),
    "unreadable certificate named by an OTEL variable": (
        _config(otlp=OTLP | {"protocol": "http/protobuf"}),
        {"OTEL_EXPORTER_OTLP_CERTIFICATE": "{tmp}/env-ca.pem"},
        ["OTEL_EXPORTER_OTLP_CERTIFICATE: cannot read {tmp}/env-ca.pem: No such file or directory"],
    ),
    "unreadable log-signal certificate": (
        _config(otlp=OTLP | {"logs": {"enabled": True, "participant_id": "omit"}}),
        {"OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE": "{tmp}/logs-ca.pem"},
        ["OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE: cannot read {tmp}/logs-ca.pem: No such file or directory"],
    ),
    "a schema problem": (
        _config(log={"level": "loud"}),
        {},
        ["log.level: must be one of 'debug', 'info', 'warning' or 'error', got 'loud'"],
    ),
    "readable TLS files and a real bucket override": (
        _config(
            otlp=OTLP | {"certificate_file": "{tmp}/present.pem"},
            histograms={"buckets": {"zoom_qss_media_latency_seconds": [0.01, 0.1]}},
        ),
        {},
        [],
    ),
    "an endpoint variable that is not a URL (ignored, as the specification says)": (
        _config(otlp={"enabled": True}),
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1"},
        [],
    ),
}


def _write(tmp: Path, case: Case) -> tuple[Path, dict[str, str], list[str]]:
    """The case's file in `tmp`, its environment and expected lines, with {tmp} filled in."""
    data, environ, expected = case
    (tmp / "present.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data).replace("{tmp}", str(tmp)))
    env = {name: value.replace("{tmp}", str(tmp)) for name, value in environ.items()}
    return path, env, [line.replace("{tmp}", str(tmp)) for line in expected]


def _command(command: str, path: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run `qss-exporter COMMAND --config PATH`; `run` is stopped once it listens (it accepted the file)."""
    output: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "qss_exporter", command, "--config", str(path)],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if command == "run" and "listening: webhook" in line:
                process.terminate()
        return process.wait(timeout=60), "".join(output)


def _problems(output: str) -> list[str]:
    return [line.removeprefix("  - ") for line in output.splitlines() if line.startswith("  - ")]


@pytest.mark.parametrize("case", CASES)
def test_run_refuses_exactly_what_check_config_refuses(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table, in-process (cheap): `run` stops before serving when it refuses, so both commands run as a user
    runs them; a file both accept is also built into a complete Agent, which is all `run` does before serving."""
    path, env, expected = _write(tmp_path, CASES[case])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["check-config", "--config", str(path)])
    output = capsys.readouterr()
    assert _problems(output.err) == expected
    assert code == (1 if expected else 0)
    if expected:
        assert main(["run", "--config", str(path)]) == 2
        assert _problems(capsys.readouterr().err) == expected
    else:
        assert "ok (1 account(s): acme)" in output.out
        Agent(load_checked(path).config)


@pytest.mark.slow
def test_the_same_as_real_processes(tmp_path: Path) -> None:
    """The refusals that only start-up used to make (all at once, in one file) and a file with readable TLS
    files, each through `check-config` and `run` as real processes: same lines, exit codes, no traceback."""
    refused, accepted = tmp_path / "refused", tmp_path / "accepted"
    refused.mkdir()
    accepted.mkdir()
    buckets, tls = (
        CASES["bucket override of a family that does not exist"],
        CASES["unreadable client certificate and key"],
    )
    data = copy.deepcopy(tls[0]) | {"histograms": buckets[0]["histograms"]}
    data["otlp"]["logs"] = {"enabled": True, "participant_id": "omit"}
    several: Case = (
        data,
        {"OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE": "{tmp}/logs-ca.pem"},
        [
            *buckets[2],
            *tls[2],
            "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE: cannot read {tmp}/logs-ca.pem: No such file or directory",
        ],
    )
    files = [_write(refused, several), _write(accepted, CASES["readable TLS files and a real bucket override"])]
    jobs = [(file, command) for file in files for command in ("check-config", "run")]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: (job, _command(job[1], job[0][0], job[0][1])), jobs))
    for ((_, _, lines), command), (code, output) in results:
        assert "Traceback" not in output, (command, output)
        assert _problems(output) == lines, (command, output)
        if lines:
            assert code == (1 if command == "check-config" else 2), (command, output)
        elif command == "check-config":
            assert (code, "ok (1 account(s): acme)" in output) == (0, True), output
        else:
            assert "listening: webhook" in output, output


def test_check_config_and_run_print_the_same_lines_for_every_invalid_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reverse, for the whole table of invalid files (in-process: both stop before serving)."""
    for name, value in TABLE_ENVIRON.items():
        monkeypatch.setenv(name, value)
    files = sorted([*TESTDATA.glob("invalid-*.yaml"), TESTDATA / "several-problems.yaml"])
    assert len(files) > 50
    for path in files:
        assert main(["check-config", "--config", str(path)]) == 1, path.name
        checked = _problems(capsys.readouterr().err)
        assert main(["run", "--config", str(path)]) == 2, path.name
        assert _problems(capsys.readouterr().err) == checked != [], path.name


def test_validate_is_the_one_function_a_reload_calls(tmp_path: Path) -> None:
    path, env, expected = _write(tmp_path, CASES["unreadable client certificate and key"])
    config = load_config(path, env)  # the schema accepts it ...
    with pytest.raises(ConfigError) as caught:
        validate(config, env, source=str(path))  # ... start-up would not
    assert caught.value.problems == expected
    with pytest.raises(ConfigError) as again:
        load_checked(path, env)
    assert again.value.problems == expected


def test_warnings_name_what_start_up_would_only_warn_about(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    data = _config(
        accounts=[ACME | {"client_id": "cid", "client_secret": "cs"}],
        poller={"enabled": True, "state_dir": str(blocker / "state")},
        otlp={"enabled": True},
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    checked = load_checked(path, {"OTEL_EXPORTER_OTLP_TIMEOUT": "soon", "OTEL_RESOURCE_ATTRIBUTES": "a=b,oops"})
    assert checked.warnings == (
        "ignoring a malformed entry in OTEL_RESOURCE_ATTRIBUTES (expected key=value)",
        "ignoring OTEL_EXPORTER_OTLP_TIMEOUT='soon': expected a positive number of milliseconds",
        f"poller.state_dir: cannot write {blocker / 'state'} ({blocker} is not a directory); the poller would "
        "keep its progress in memory only",
    )
    assert load_checked(TESTDATA / "valid-minimal.yaml", {}).warnings == ()
