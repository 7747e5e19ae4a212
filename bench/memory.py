"""Memory: resident bytes per active participant at 10k and 50k concurrent participants, and a soak
with participants joining and leaving until every window (activity, enrichment, dedupe) is full.

Each case runs in a fresh process. Events come from the demo simulator and go through the real
decoder and pipeline with a simulated clock, so hours of traffic take a minute or two; webhook
HTTP handling keeps no per-participant state, so it is left out here.

The soak's events (~9 GB of lines at 10k participants over 400 minutes) are piped from the
simulator's process as they are made, never written to disk. `python -m bench.memory --soak` runs the
soak alone; `python -m bench.memory --trace-soak 2000` runs it with that many participants under
tracemalloc instead (slower; its RSS figures include tracemalloc's own): the allocations that grew
between minute 340 and the end, by file:line, which is how the soak's drift is found rather than
guessed."""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

from bench.common import Spread

__all__ = ["run"]

SOAK_MINUTES = 400
SOAK_STEADY_MINUTES = 60
TRACE_FROM_MINUTE = SOAK_MINUTES - SOAK_STEADY_MINUTES


def _rss() -> int:
    gc.collect()
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def _heap() -> dict[str, float]:
    """glibc malloc's view (process_tuning.malloc_usage), in MiB."""
    from qss_exporter.process_tuning import malloc_usage

    return {f"malloc_{name}_mib": size / 2**20 for name, size in malloc_usage().items()}


def _pymalloc() -> dict[str, float]:
    """Python's small-object allocator (objects <= 512 bytes, in 1 MiB arenas it takes by mmap, not from
    malloc): arenas held and bytes in use in them, from sys._debugmallocstats (written to fd 2)."""
    figures: dict[str, float] = {}
    with tempfile.TemporaryFile("w+b") as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        for line in capture.read().decode().splitlines():
            name, _, value = line.partition("=")
            if name.startswith("# arenas allocated current"):
                figures["pymalloc_arenas"] = int(value.replace(",", ""))
            elif name.startswith("# bytes in allocated blocks"):
                figures["pymalloc_in_use_mib"] = int(value.replace(",", "")) / 2**20
    return figures


def _large_containers(parts: dict[str, Any], floor: int = 256 * 1024) -> dict[str, int]:
    """The state's containers whose own allocation (sys.getsizeof: a dict's table, not its items) is at
    least `floor` bytes, by "part.attribute": a dict resizing shows here as the same step in RSS."""
    sizes = {}
    for name, part in parts.items():
        for attribute, value in getattr(part, "__dict__", {}).items():
            if isinstance(value, dict | set | list | deque) and (size := sys.getsizeof(value)) >= floor:
                sizes[f"{name}.{attribute}"] = size
    return sizes


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _generate(participants: int, minutes: int, out: IO[bytes]) -> None:
    """Simulator output as lines "<simulated time>\t<body>", made in its own process so that the
    simulator's own memory does not count against the agent's. `out` is a file, or the pipe the case
    reads from as the lines are made (the 10k x 400-minute soak is ~9 GB of lines: never on disk)."""
    from qss_exporter.demo.simulator import Simulator, default_accounts

    simulator = Simulator(default_accounts(), size=participants, seed=5, start=time.time())
    for _ in range(minutes):
        for emitted in simulator.advance(60):
            out.write(f"{simulator.now:.3f}\t".encode() + emitted.body + b"\n")
        out.write(f"{simulator.now:.3f}\tMINUTE\n".encode())
    out.flush()


def _growth(first: Any, last: Any, top: int = 25) -> list[dict[str, Any]]:
    """The allocations (by file:line) that grew most between two tracemalloc snapshots."""
    stats = last.compare_to(first, "lineno")
    return [
        {
            "where": f"{stat.traceback[0].filename.rsplit('/site-packages/', 1)[-1]}:{stat.traceback[0].lineno}",
            "size_diff_kib": round(stat.size_diff / 1024, 1),
            "count_diff": stat.count_diff,
            "size_kib": round(stat.size / 1024, 1),
        }
        for stat in stats[:top]
    ]


def _case(lines: IO[bytes], sample_every: int, trace_from: int = 0) -> dict[str, Any]:
    import tracemalloc

    from qss_exporter.app import Agent
    from qss_exporter.config import config_from_mapping
    from qss_exporter.demo.simulator import DEFAULT_SITES, default_accounts
    from qss_exporter.process_tuning import tune_process
    from qss_exporter.store import CallbackFamily
    from qss_exporter.zoom.typed import decode_body

    tune_process()  # as the agent's start does (cli.py): its GC generation and malloc's mmap threshold

    # Traced from the start: started later, the objects made before it are invisible, and their
    # replacements (a history's bytes are new at each event) look like growth (tried: it was all turnover).
    if trace_from:
        tracemalloc.start()
    snapshots: list[Any] = []
    clock = _Clock(time.time())
    accounts = [{"name": a.name, "account_id": a.account_id, "webhook_secret_token": "s"} for a in default_accounts()]
    sites = [{"name": site.name, "cidrs": list(site.cidrs)} for site in DEFAULT_SITES]
    agent = Agent(config_from_mapping({"accounts": accounts, "sites": sites}), clock=clock)  # default labels
    pipeline = agent.pipeline
    active_participants = agent.store.family("zoom_qss_active_participants")
    baseline = _rss()
    samples: list[dict[str, Any]] = []
    events = minute = 0
    wall = time.perf_counter()
    for line in lines:
        stamp, _, body = line.rstrip(b"\n").partition(b"\t")
        clock.now = float(stamp)
        if body != b"MINUTE":
            pipeline.ingest(decode_body(body), "demo")  # type: ignore[arg-type]  # only QSS events
            events += 1
            continue
        minute += 1
        if minute % 5 == 0:
            pipeline.expire()  # the agent's housekeeping runs every 30 s
        if trace_from and minute == trace_from:
            gc.collect()
            snapshots.append(tracemalloc.take_snapshot())
        if minute % sample_every == 0:
            assert isinstance(active_participants, CallbackFamily)
            active = sum(sample.value for sample in active_participants.collect())
            rss = _rss()
            samples.append(
                {
                    "minute": minute,
                    "active_participants": active,
                    "rss_mib": rss / 2**20,
                    "bytes_per_active_participant": (rss - baseline) / max(active, 1),
                    "dedupe_keys": len(pipeline._history) + len(pipeline._dedupe),
                    "series": agent.store.series_count,
                    **_heap(),
                    **_pymalloc(),
                    "large_containers": _large_containers({**pipeline.stateful(), "store": agent.store}),
                }
            )
            # As it goes, for a long soak to be watched (and its samples kept if it is stopped).
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)  # noqa: T201
    if snapshots:
        gc.collect()
        traced = {"traced_from_minute": trace_from, "growth": _growth(snapshots[0], tracemalloc.take_snapshot())}
    else:
        traced = {}
    return {
        **traced,
        "simulated_minutes": minute,
        "events": events,
        "seconds": time.perf_counter() - wall,
        "baseline_rss_mib": baseline / 2**20,
        "samples": samples,
    }


def _subprocess(
    participants: int, minutes: int, sample_every: int, trace_from: int = 0, *, streamed: bool = False
) -> dict[str, Any]:
    """One case in a fresh process. The events are written to a file first, so that the case's
    timing is the agent's alone; or, `streamed`, piped from the simulator's process as they are made
    (bounded disk and memory, the two processes running side by side: for the soak)."""
    command = [sys.executable, "-m", "bench.memory"]
    case = [*command, "--case", "-", str(sample_every), "--trace-from", str(trace_from)]
    timeout = 3 * 3600
    if streamed:
        generate = [*command, "--generate", str(participants), str(minutes), "-"]
        with subprocess.Popen(generate, stdout=subprocess.PIPE) as generator:
            # The case's samples go on to this process's stderr as they come.
            out = subprocess.run(case, stdin=generator.stdout, stdout=subprocess.PIPE, text=True, timeout=timeout)
            assert generator.stdout is not None
            generator.stdout.close()
        if generator.returncode or out.returncode:
            raise RuntimeError(f"soak failed (generator {generator.returncode}, case {out.returncode}): see stderr")
        return {"participants": participants, "streamed": True, **json.loads(out.stdout)}
    with tempfile.TemporaryDirectory() as scratch:
        events = Path(scratch) / "events.tsv"
        subprocess.run(
            [*command, "--generate", str(participants), str(minutes), str(events)], check=True, timeout=timeout
        )
        with events.open("rb") as lines:
            out = subprocess.run(case, stdin=lines, capture_output=True, text=True, check=True, timeout=timeout)
    return {"participants": participants, **json.loads(out.stdout)}


def run(smoke: bool = False) -> dict[str, Any]:
    """Bytes per active participant at 10k and 50k participants, 10 simulated minutes each (~2 min)."""
    if smoke:
        return {"cases": [_subprocess(300, 3, 1)]}
    return {"cases": [_subprocess(10_000, 10, 10), _subprocess(50_000, 10, 10)]}


def run_soak(smoke: bool = False) -> dict[str, Any]:
    """RSS of 10k participants joining and leaving over 400 simulated minutes (~1 h of one core): well past
    the 2-hour dedupe and enrichment windows (the global dedupe generations keep keys up to 2 h 40 min),
    when every table has reached its steady size. Its own benchmark, so that the memory cases can be
    re-measured without it."""
    if smoke:
        return {"soak": _subprocess(200, 4, 1, streamed=True)}
    soak = _subprocess(10_000, SOAK_MINUTES, 10, streamed=True)
    steady = [s["rss_mib"] for s in soak["samples"] if s["minute"] >= SOAK_MINUTES - SOAK_STEADY_MINUTES]
    return {
        "soak": soak,
        "soak_steady_rss_mib": Spread.of(steady).as_dict(),
        "soak_steady_minutes": SOAK_STEADY_MINUTES,
        "soak_growth_percent": 100 * (steady[-1] - steady[0]) / steady[0],
        "target": {"soak_growth_percent": 1},
    }


def _open(name: str, mode: str) -> IO[bytes]:
    """A file, or "-": standard input or output (the pipe between the simulator and the case)."""
    if name == "-":
        stream = sys.stdin.buffer if mode == "rb" else sys.stdout.buffer
        return open(stream.fileno(), mode, closefd=False)  # closed by the caller's with
    return open(name, mode)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generate", nargs=3, metavar=("PARTICIPANTS", "MINUTES", "FILE"))
    parser.add_argument("--case", nargs=2, metavar=("FILE", "SAMPLE_EVERY"))
    parser.add_argument("--trace-from", type=int, default=0, metavar="MINUTE")
    parser.add_argument("--trace-soak", type=int, default=0, metavar="PARTICIPANTS")
    parser.add_argument("--soak", action="store_true", help="only the 10k-participant soak")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.generate:
        with _open(args.generate[2], "wb") as out:
            _generate(int(args.generate[0]), int(args.generate[1]), out)
        return
    if args.trace_soak:
        result = _subprocess(args.trace_soak, SOAK_MINUTES, 10, TRACE_FROM_MINUTE, streamed=True)
    elif args.soak:
        result = run_soak()
    elif args.case:
        with _open(args.case[0], "rb") as lines:
            result = _case(lines, int(args.case[1]), args.trace_from)
    else:
        result = run(args.smoke)
    print(json.dumps(result, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
