"""Replicas: one replica's events/s at saturation with `state.backend: redis` (a real redis-server on
loopback) as a ratio of the same agent with local state, measured in the same run, one after the
other, with the same wrk script and signed requests (bench/ingest.py's). With Redis every event makes
one round trip (shared_state.py); the target is 0.7. Events/s swing with the machine's load; the CPU time
per event of the agent (and of Redis, which shares the cores) is the steadier measure, reported too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import Spread, free_port, wait_for_port
from bench.ingest import SECRETS, _accepted, _agent, _agent_config, _server
from bench.load import WrkResult, generate_requests, run_wrk

__all__ = ["run"]


def _redis(directory: Path, port: int) -> list[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("the replicas benchmark needs redis-server (Debian package redis-server)")
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
    ]


def run(smoke: bool = False) -> dict[str, Any]:
    seconds = 3 if smoke else 10
    rounds = 1 if smoke else 3
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        requests = directory / "requests.txt"
        corpus = generate_requests(requests, 3_000 if smoke else 150_000, SECRETS)
        local_runs: list[WrkResult] = []
        redis_runs: list[WrkResult] = []
        local_cpu: list[float] = []  # us per event, the agent's
        redis_cpu: list[float] = []  # the agent's, with Redis
        server_cpu: list[float] = []  # Redis's
        outcomes: list[dict[str, float]] = []
        for _ in range(rounds):
            webhook, metrics = free_port(), free_port()
            with _server(_agent(_agent_config(directory, webhook, metrics)), webhook) as agent:
                wait_for_port(metrics)
                before = _cpu_seconds(agent.pid)
                local_runs.append(run_wrk(f"http://127.0.0.1:{webhook}/zoom/webhook", requests, seconds))
                local_cpu.append(_per_event(_cpu_seconds(agent.pid) - before, local_runs[-1]))
            port = free_port()
            redis = subprocess.Popen(_redis(directory, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for_port(port)
                webhook, metrics = free_port(), free_port()
                # At saturation the event loop's own queue makes a 50 ms call timeout fire (the answer waits
                # for the loop): measured with 1 s, so that every event takes the Redis path; decisions
                # made locally all the same are reported.
                url = f"redis://127.0.0.1:{port}/0"
                state = f"state: {{backend: redis, redis: {{url: '{url}', call_timeout_ms: 1000}}}}"
                with _server(_agent(_agent_config(directory, webhook, metrics, state)), webhook) as agent:
                    wait_for_port(metrics)
                    before, server_before = _cpu_seconds(agent.pid), _cpu_seconds(redis.pid)
                    redis_runs.append(run_wrk(f"http://127.0.0.1:{webhook}/zoom/webhook", requests, seconds))
                    redis_cpu.append(_per_event(_cpu_seconds(agent.pid) - before, redis_runs[-1]))
                    server_cpu.append(_per_event(_cpu_seconds(redis.pid) - server_before, redis_runs[-1]))
                    outcomes.append(_local_decisions(metrics) | _accepted(metrics))
            finally:
                redis.terminate()
                redis.wait(timeout=15)
        ratios = [r.requests_per_second / lo.requests_per_second for r, lo in zip(redis_runs, local_runs, strict=True)]
    return {
        "corpus": corpus,
        "seconds_per_run": seconds,
        "local_events_per_second": Spread.of([r.requests_per_second for r in local_runs]).as_dict(),
        "redis_events_per_second": Spread.of([r.requests_per_second for r in redis_runs]).as_dict(),
        "ratio_redis_to_local": Spread.of(ratios).as_dict(),
        "redis_p99_ms": Spread.of([r.p99_ms for r in redis_runs]).as_dict(),
        "local_p99_ms": Spread.of([r.p99_ms for r in local_runs]).as_dict(),
        "redis_non_2xx": sum(r.non_2xx for r in redis_runs),
        "local_agent_cpu_us_per_event": Spread.of(local_cpu).as_dict(),
        "redis_agent_cpu_us_per_event": Spread.of(redis_cpu).as_dict(),
        "redis_server_cpu_us_per_event": Spread.of(server_cpu).as_dict(),
        # Local state's CPU per event over the agent's and Redis's with the Redis backend, same round.
        "cpu_ratio_redis_to_local": Spread.of(
            [lo / (r + s) for lo, r, s in zip(local_cpu, redis_cpu, server_cpu, strict=True)]
        ).as_dict(),
        "redis_outcomes_per_run": outcomes,
        "target": {"ratio": 0.7},
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_event(cpu_seconds: float, run: WrkResult) -> float:
    return cpu_seconds * 1e6 / max(1, run.requests)


def _local_decisions(metrics_port: int) -> dict[str, float]:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
    decisions: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("zoom_qss_state_local_decisions_total{"):
            decisions["local_" + line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
    return decisions


if __name__ == "__main__":
    import json

    print(json.dumps(run(smoke="--smoke" in sys.argv), indent=2))  # noqa: T201
