"""Ingest: events/s of the agent at saturation as a ratio of the bare Starlette + uvicorn floor, and
latency at half the agent's maximum rate. Both servers run as their own process, one at a time,
with the same uvicorn settings, driven by the same wrk script and the same signed requests."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import Spread, free_port, wait_for_port
from bench.load import WrkResult, generate_requests, open_loop, run_wrk

__all__ = ["run"]

SECRETS = {"acme": "bench-secret-acme", "acme-health": "bench-secret-health"}


def _agent_config(directory: Path, webhook: int, metrics: int, extra: str = "") -> Path:
    """The benchmarked agent: two accounts, the simulator's offices as sites, default labels."""
    path = directory / "agent.yaml"
    path.write_text(
        f"""
listen: {{webhook: "127.0.0.1:{webhook}", metrics: "127.0.0.1:{metrics}"}}
webhook: {{timestamp_tolerance_seconds: 3600}}
accounts:
  - {{name: acme, account_id: Xq3vTn0bR8aL5mWcY2kPzQ, webhook_secret_token: {SECRETS["acme"]}}}
  - {{name: acme-health, account_id: Hd5sWm1qQkO7rLbN3vTzXe, webhook_secret_token: {SECRETS["acme-health"]}}}
sites:
  - {{name: london-hq, cidrs: [10.10.0.0/16]}}
  - {{name: frankfurt-office, cidrs: [10.20.0.0/16]}}
  - {{name: denver-office, cidrs: [10.30.0.0/16, 10.31.0.0/16]}}
  - {{name: new-york-office, cidrs: [10.40.0.0/16]}}
  - {{name: remote, cidrs: [192.168.0.0/16]}}
log: {{level: warning}}
{extra}"""
    )
    return path


@contextmanager
def _server(command: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _floor(port: int) -> list[str]:
    return [sys.executable, "-m", "bench.floor", "--port", str(port)]


def _agent(config: Path) -> list[str]:
    return [sys.executable, "-m", "qss_exporter", "run", "--config", str(config)]


def _accepted(metrics_port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
    outcomes: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("zoom_qss_webhook_requests_total{"):
            outcome = line.split('"')[1]
            outcomes[outcome] = float(line.rsplit(" ", 1)[1])
    return outcomes


def run(smoke: bool = False) -> dict[str, Any]:
    seconds = 2 if smoke else 10
    rounds = 1 if smoke else 3
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        requests = directory / "requests.txt"
        corpus = generate_requests(requests, 3_000 if smoke else 150_000, SECRETS)
        floor_runs: list[WrkResult] = []
        agent_runs: list[WrkResult] = []
        checks: list[dict[str, float]] = []
        for _ in range(rounds):
            port = free_port()
            with _server(_floor(port), port):
                floor_runs.append(run_wrk(f"http://127.0.0.1:{port}/zoom/webhook", requests, seconds))
            webhook, metrics = free_port(), free_port()
            with _server(_agent(_agent_config(directory, webhook, metrics)), webhook):
                wait_for_port(metrics)
                agent_runs.append(run_wrk(f"http://127.0.0.1:{webhook}/zoom/webhook", requests, seconds))
                checks.append(_accepted(metrics))
        ratios = [a.requests_per_second / f.requests_per_second for a, f in zip(agent_runs, floor_runs, strict=True)]
        best = max(run.requests_per_second for run in agent_runs)
        webhook, metrics = free_port(), free_port()
        with _server(_agent(_agent_config(directory, webhook, metrics)), webhook):
            wait_for_port(metrics)
            half = open_loop(f"http://127.0.0.1:{webhook}/zoom/webhook", requests, rate=best / 2, seconds=seconds)
    return {
        "corpus": corpus,
        "seconds_per_run": seconds,
        "floor_requests_per_second": Spread.of([r.requests_per_second for r in floor_runs]).as_dict(),
        "agent_events_per_second": Spread.of([r.requests_per_second for r in agent_runs]).as_dict(),
        "ratio_agent_to_floor": Spread.of(ratios).as_dict(),
        "agent_non_2xx": sum(r.non_2xx for r in agent_runs),
        "agent_outcomes_per_run": checks,
        "saturation_latency_ms": {
            "floor_p99": Spread.of([r.p99_ms for r in floor_runs]).as_dict(),
            "agent_p99": Spread.of([r.p99_ms for r in agent_runs]).as_dict(),
        },
        "half_load": half,
        "target": {"ratio": 0.6, "half_load_p99_ms": 20},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(smoke="--smoke" in sys.argv), indent=2))  # noqa: T201
