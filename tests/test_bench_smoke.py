"""The benchmarks run in a short smoke mode on every CI run, so they cannot rot (no timing asserted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.process import REPO


def test_every_benchmark_runs_in_smoke_mode() -> None:
    if shutil.which("wrk") is None:
        if os.environ.get("CI"):
            pytest.fail("wrk is required in CI (Debian package wrk, installed by scripts/install)")
        pytest.skip("wrk not installed (Debian package wrk)")
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = {name: value for line in result.stdout.splitlines() for name, value in json.loads(line).items()}
    assert set(outputs) == {"hotpath", "ingest", "scrape", "memory", "soak", "export", "persist", "replicas"}
    assert outputs["ingest"]["agent_non_2xx"] == 0
    assert outputs["ingest"]["agent_outcomes_per_run"][0]["accepted"] > 0
    if shutil.which("promtool"):
        assert outputs["scrape"]["cases"][0]["promtool_check_metrics"] == "ok"
    assert outputs["export"]["webhook_latency_during_exports"]["otlp_on"]["failures"] == 0
    assert outputs["memory"]["cases"][0]["samples"]
    assert outputs["soak"]["soak"]["streamed"]
    assert outputs["soak"]["soak"]["samples"]
    assert outputs["persist"]["cases"][0]["entries"]["enrichment"] > 0
    assert outputs["persist"]["webhook_latency_during_checkpoints"]["checkpoint_every_5s"]["failures"] == 0
    assert outputs["replicas"]["redis_non_2xx"] == 0
    assert outputs["replicas"]["redis_outcomes_per_run"][0]["accepted"] > 0
    assert outputs["replicas"]["redis_server_cpu_us_per_event"]["median"] > 0  # Redis's CPU was read
    assert outputs["replicas"]["cpu_ratio_redis_to_local"]["median"] > 0
