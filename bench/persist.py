"""Saved pipeline state (issue 13 point 1): checkpoint cost and start-up time at 10k and 50k
participants, and webhook latency while checkpoints run.

The state is made by the real pipeline: the demo simulator's organisation of N participants for
10 simulated minutes, through the real decoder, ending now. Ten minutes fill the activity, enrichment
and time-in-quality tables, but not the dedupe history, which keeps ~1.5 records per participant per
minute for the 2-hour window: each participant's history is then padded to that steady size (180
records of 10 bytes), or to what `pipeline.dedupe_max_entries` (2M records in all) leaves each
(40 at 50k participants), so that the file has the size it has after hours of traffic.

* checkpoint: the snapshot on the event loop (held at once), then the whole save (serialisation in
  slices between events, the fsynced write on a thread), and the file's size; the median of 3;
* start-up: `qss-exporter run` from exec to its "listening" line with the state file, against the same
  configuration with an empty state directory (the baseline, same run), alternating, 3 rounds;
* webhook p99 at 500 events/s (open loop; ~30k participants' real-time traffic, within what a shared
  2-core machine serves while other work runs) with the 50k state restored and a checkpoint every 5 s
  (one running ~10-20 % of the time, so that well over 1 % of the requests meet one), against the same
  agent checkpointing once an hour; 2 rounds, alternating. The time SIGTERM takes with that state
  (its last save included) is recorded too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sized
from pathlib import Path
from typing import Any

import orjson

from bench.common import Spread, free_port, wait_for_port
from bench.ingest import SECRETS, _agent_config
from bench.load import generate_requests, open_loop

__all__ = ["run"]

SIMULATED_MINUTES = 10
HISTORY_RECORDS = 180  # per participant at steady state: ~1.5 a minute over the 2-hour dedupe window


def _build(participants: int, directory: Path) -> dict[str, Any]:
    """Child process: the state of `participants` made by the pipeline, saved 3 times into `directory`."""
    from qss_exporter.config import config_from_mapping
    from qss_exporter.core import build_core, enrichment_labels
    from qss_exporter.demo.simulator import DEFAULT_SITES, Simulator, default_accounts
    from qss_exporter.persistence import StateFile
    from qss_exporter.zoom.events import decode

    now = time.time()
    clock = [now - SIMULATED_MINUTES * 60]
    accounts = [{"name": a.name, "account_id": a.account_id, "webhook_secret_token": "s"} for a in default_accounts()]
    sites = [{"name": site.name, "cidrs": list(site.cidrs)} for site in DEFAULT_SITES]
    config = config_from_mapping({"accounts": accounts, "sites": sites})
    core = build_core(config, lambda: clock[0])
    pipeline = core.pipeline
    simulator = Simulator(default_accounts(), size=participants, seed=5, start=clock[0])
    events = 0
    for minute in range(SIMULATED_MINUTES):
        for emitted in simulator.advance(60):
            clock[0] = simulator.now
            pipeline.ingest(decode(orjson.loads(emitted.body)), "demo")  # type: ignore[arg-type]  # QSS events only
            events += 1
        if minute % 5 == 4:
            pipeline.expire()
    clock[0] = now
    history = pipeline.stateful()["history"]
    rng = random.Random(3)
    shards: list[dict[int, bytes]] = history._shards  # type: ignore[attr-defined]
    # The steady size of a 2-hour window (module docstring), within pipeline.dedupe_max_entries.
    steady = min(HISTORY_RECORDS, config.pipeline.dedupe_max_entries // max(1, sum(map(len, shards))))
    for histories in shards:
        for bucket, records in histories.items():  # values replaced in place: no key added or removed
            missing = steady - len(records) // 10
            if missing > 0:
                start = int(now) - 7000
                padding = b"".join(
                    (start + i * 38).to_bytes(4, "big") + rng.randbytes(6) for i in range(missing)
                )  # older than the simulated records, in order
                histories[bucket] = padding + records
                history._size += missing  # type: ignore[attr-defined]
    sizes = {name: len(part) for name, part in pipeline.stateful().items() if isinstance(part, Sized)}
    state = StateFile(directory, pipeline.stateful, enrichment_labels(config), 3600.0, core.state_families)
    assert state.open()

    async def timed_saves() -> list[dict[str, float]]:
        runs = []
        for _ in range(3):
            parts = pipeline.stateful()
            started = time.perf_counter()
            snapshot = {name: part.snapshot() for name, part in parts.items()}
            snapshot_seconds = time.perf_counter() - started
            del snapshot
            started = time.perf_counter()
            assert await state.save()
            runs.append({"snapshot": snapshot_seconds, "save": time.perf_counter() - started})
        return runs

    runs = asyncio.run(timed_saves())
    state.close()
    return {
        "participants": participants,
        "events": events,
        "entries": sizes,
        "file_bytes": (directory / "pipeline-state.bin").stat().st_size,
        "snapshot_seconds": Spread.of([r["snapshot"] for r in runs]).as_dict(),
        # save = snapshot on the loop + serialisation, checksum and fsynced write on a thread
        "save_seconds": Spread.of([r["save"] for r in runs]).as_dict(),
    }


def _start_seconds(config: Path) -> float:
    """Exec to the "listening" line of `qss-exporter run --config`."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "qss_exporter", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if "listening" in line:
                return time.perf_counter() - started
        raise RuntimeError("the agent exited before listening")
    finally:
        process.terminate()
        process.wait(timeout=30)


def _agent_with_state(scratch: Path, state: Path, interval: float) -> tuple[Path, int]:
    """The benchmarked agent (bench/ingest.py's) with `state.dir`; logging at info for the "listening" line."""
    webhook, metrics = free_port(), free_port()
    extra = f"state: {{dir: '{state}', checkpoint_interval_seconds: {interval:g}}}\n"
    config = _agent_config(scratch, webhook, metrics, extra)
    config.write_text(config.read_text().replace("log: {level: warning}", "log: {level: info}"))
    return config, webhook


def _latency(
    scratch: Path, state: Path, requests: Path, interval: float, rate: float, seconds: float
) -> dict[str, Any]:
    config, webhook = _agent_with_state(scratch, state, interval)
    process = subprocess.Popen(
        [sys.executable, "-m", "qss_exporter", "run", "--config", str(config)], stdout=subprocess.DEVNULL
    )
    try:
        wait_for_port(webhook, timeout=120)
        time.sleep(2)
        result = open_loop(f"http://127.0.0.1:{webhook}/zoom/webhook", requests, rate=rate, seconds=seconds)
        stopping = time.perf_counter()
        process.terminate()  # SIGTERM: the last save of the whole state, within the 8 s budget
        process.wait(timeout=30)
        result["stop_seconds"] = time.perf_counter() - stopping
        return result
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def _case(participants: int, scratch: Path, rounds: int) -> tuple[dict[str, Any], Path]:
    state = scratch / f"state-{participants}"
    state.mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "bench.persist", "--build", str(participants), str(state)],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    empty = scratch / "empty"
    with_state, without = [], []
    for _ in range(rounds):
        shutil.rmtree(empty, ignore_errors=True)
        empty.mkdir()
        without.append(_start_seconds(_agent_with_state(scratch, empty, 3600)[0]))
        kept = scratch / "kept"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(state, kept)  # the agent writes its last state at exit: start each round from the same
        with_state.append(_start_seconds(_agent_with_state(scratch, kept, 3600)[0]))
    result["start_seconds"] = Spread.of(with_state).as_dict()
    result["start_seconds_empty"] = Spread.of(without).as_dict()
    result["start_added_seconds"] = statistics.median(with_state) - statistics.median(without)
    return result, state


def run(smoke: bool = False) -> dict[str, Any]:
    sizes = [500] if smoke else [10_000, 50_000]
    rounds = 1 if smoke else 3
    rate, seconds, latency_rounds = (200.0, 3.0, 1) if smoke else (500.0, 20.0, 2)
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        cases = []
        state = scratch
        for size in sizes:
            case, state = _case(size, scratch, rounds)
            cases.append(case)
        requests = scratch / "requests.txt"
        generate_requests(requests, int(rate * seconds) + 100, SECRETS)
        runs: dict[str, list[dict[str, Any]]] = {"checkpoint_every_5s": [], "checkpoint_hourly": []}
        for _ in range(latency_rounds):
            for name, interval in (("checkpoint_hourly", 3600.0), ("checkpoint_every_5s", 5.0)):
                kept = scratch / "kept"
                shutil.rmtree(kept, ignore_errors=True)
                shutil.copytree(state, kept)
                runs[name].append(_latency(scratch, kept, requests, interval, rate, seconds))
    latency = {
        name: {
            "rate": rate,
            "requests": sum(r["requests"] for r in results),
            "failures": sum(r["failures"] for r in results),
            "p50_ms": statistics.median(r["p50_ms"] for r in results),
            "p99_ms": statistics.median(r["p99_ms"] for r in results),
            "p99_ms_per_round": [r["p99_ms"] for r in results],
            "stop_seconds_per_round": [r["stop_seconds"] for r in results],
        }
        for name, results in runs.items()
    }
    return {
        "cases": cases,
        "webhook_latency_during_checkpoints": {
            "participants": sizes[-1],
            "seconds_per_round": seconds,
            "rounds": latency_rounds,
            **latency,
        },
        "target": {"start_seconds_at_50k": 5.0, "p99_ms": 20.0},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", nargs=2, metavar=("PARTICIPANTS", "DIRECTORY"))
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.build:
        print(json.dumps(_build(int(args.build[0]), Path(args.build[1]))))  # noqa: T201
        return
    print(json.dumps(run(args.smoke), indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
