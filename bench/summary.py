"""Rewrites the generated table in docs/performance.md from the recorded bench/results/*.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS

__all__ = ["summary_table", "write_summary"]

DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
START, END = "<!-- bench:summary:start -->", "<!-- bench:summary:end -->"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _spread(value: dict[str, float], digits: int = 2) -> str:
    return f"{value['median']:.{digits}f} ({value['min']:.{digits}f} - {value['max']:.{digits}f})"


def _row(figure: str, measured: str, baseline: str, target: str, met: bool | None) -> str:
    verdict = "-" if met is None else ("yes" if met else "**no**")
    return f"| {figure} | {measured} | {baseline} | {target} | {verdict} |"


def _ingest(result: dict[str, Any]) -> list[str]:
    ratio, half = result["ratio_agent_to_floor"], result["half_load"]
    floor = f"bare Starlette + uvicorn {_spread(result['floor_requests_per_second'], 0)} req/s"
    return [
        _row("ingest: agent events/s at saturation", _spread(result["agent_events_per_second"], 0), floor, "", None),
        _row("ingest: ratio agent / floor", _spread(ratio), "", ">= 0.6", ratio["median"] >= 0.6),
        _row(
            f"latency at half load ({half['rate']:.0f} events/s): p50 / p99 ms",
            f"{half['p50_ms']:.2f} / {half['p99_ms']:.2f}",
            "",
            "p99 <= 20 ms",
            half["p99_ms"] <= 20,
        ),
    ]


def _hotpath(result: dict[str, Any]) -> list[str]:
    stages = result["microseconds_per_event"]
    if "typed" not in stages:  # a result recorded before the typed fast path
        stages = {**stages, "typed": {"median": stages["json"]["median"] + stages["decode"]["median"]}}
    parts = ", ".join(f"{stage} {stages[stage]['median']:.1f}" for stage in ("verify", "typed", "record"))
    typed, tolerant = stages["typed"]["median"], stages["json"]["median"] + stages["decode"]["median"]
    return [
        _row(
            f"hot path in-process, us per event ({parts})",
            f"{result['total_median_microseconds']:.1f}",
            f"orjson.loads alone {stages['json']['median']:.1f}",
            "",
            None,
        ),
        _row(
            "decode, us per event: body bytes to record on the typed fast path, JSON included",
            f"{typed:.1f}",
            f"orjson.loads + tolerant decoder {tolerant:.1f} (x{tolerant / typed:.1f})",
            "<= 6",
            typed <= 6,
        ),
    ]


def _scrape(result: dict[str, Any]) -> list[str]:
    rows = []
    for case in result["cases"]:
        seconds, speedup = case["render_seconds"]["median"], case["speedup"]
        big = case["series"] >= 100_000
        baseline = f"prometheus_client {_spread(case['prometheus_client_seconds'])} s (x{speedup:.1f})"
        rows.append(
            _row(
                f"/metrics render of {case['series']:,} histogram series ({case['lines']:,} lines), s",
                _spread(case["render_seconds"], 3),
                baseline,
                ">= 10x faster" + (", <= 1 s" if big else ""),
                speedup >= 10 and (seconds <= 1.0 or not big),
            )
        )
    return rows


def _memory(result: dict[str, Any]) -> list[str]:
    rows = []
    for case in result["cases"]:
        last = case["samples"][-1]
        per = last["bytes_per_active_participant"]
        rows.append(
            _row(
                f"memory per active participant: {last['active_participants']:.0f} active "
                f"({case['participants']:,} simulated) after {last['minute']} min, bytes",
                f"{per:.0f}",
                f"process at start {case['baseline_rss_mib']:.0f} MiB",
                "<= 1536",
                per <= 1536,
            )
        )
    return rows


def _soak(result: dict[str, Any]) -> list[str]:
    rows = []
    if "soak_growth_percent" in result:
        growth = result["soak_growth_percent"]
        minutes = result["soak"]["simulated_minutes"]
        rows.append(
            _row(
                f"soak: RSS over the last {result['soak_steady_minutes']} of {minutes} simulated minutes "
                "(10k participants joining and leaving), MiB",
                _spread(result["soak_steady_rss_mib"], 1),
                f"growth {growth:+.1f} %",
                "within +- 1 %",
                abs(growth) <= 1.0,
            )
        )
    return rows


def _export(result: dict[str, Any]) -> list[str]:
    rows = []
    for build in result["builds"]:
        big = build["series"] >= 100_000
        seconds, peak = build["build_and_serialise_seconds"]["median"], build["peak_python_memory_mib"]
        rows.append(
            _row(
                f"OTLP encode of {build['series']:,} series, s (first export {build['first_export_seconds']:.2f} s; "
                f"peak {peak:.1f} MiB, {build['serialised_bytes'] / 2**20:.1f} MiB sent; "
                f"{build['cached_heads_mib']:.0f} MiB of heads kept)",
                _spread(build["build_and_serialise_seconds"]),
                f"/metrics render {_spread(build['prometheus_render_seconds'], 3)} s",
                "<= 1 s, peak <= 48 MiB" if big else "",
                seconds <= 1.0 and peak <= 48 if big else None,
            )
        )
    cases = [result["webhook_latency_during_exports"], *filter(None, [result.get("webhook_latency_stress")])]
    for during in cases:
        on, off = during["otlp_on"], during["otlp_off"]
        interval = during["export_interval_seconds"]
        rows.append(
            _row(
                f"webhook p99 while exporting {during['series']:,} series every {interval:g} s "
                f"({on['rate']:,.0f} events/s, median of {during['rounds']} rounds), ms",
                _rounds(on),
                f"OTLP off {_rounds(off)}",
                "p99 <= 20 ms",
                on["p99_ms"] <= 20,
            )
        )
    return rows


def _persist(result: dict[str, Any]) -> list[str]:
    rows = []
    for case in result["cases"]:
        start, participants = case["start_seconds"], case["participants"]
        big = participants >= 50_000
        rows.append(
            _row(
                f"start-up with {participants:,} participants' saved state ({case['file_bytes'] / 2**20:.0f} MiB), s",
                _spread(start),
                f"empty state {_spread(case['start_seconds_empty'])} s",
                "<= 5 s" if big else "",
                start["median"] <= 5.0 if big else None,
            )
        )
        rows.append(
            _row(
                f"checkpoint of {participants:,} participants: event loop held / whole save, s",
                f"{case['snapshot_seconds']['median']:.3f} / {_spread(case['save_seconds'])}",
                "",
                "",
                None,
            )
        )
    during = result["webhook_latency_during_checkpoints"]
    on, off = during["checkpoint_every_5s"], during["checkpoint_hourly"]
    rows.append(
        _row(
            f"webhook p99 with {during['participants']:,} participants' state checkpointed every 5 s "
            f"({on['rate']:,.0f} events/s, median of {during['rounds']} rounds), ms",
            _rounds(on),
            f"hourly {_rounds(off)}",
            "p99 <= 20 ms",
            on["p99_ms"] <= 20,
        )
    )
    return rows


def _replicas(result: dict[str, Any]) -> list[str]:
    ratio = result["ratio_redis_to_local"]
    local = f"state.backend local {_spread(result['local_events_per_second'], 0)} events/s"
    return [
        _row(
            "replica with state.backend redis: events/s at saturation",
            _spread(result["redis_events_per_second"], 0),
            local,
            "",
            None,
        ),
        _row("replica: ratio redis / local", _spread(ratio), "", ">= 0.7", ratio["median"] >= 0.7),
    ]


def _rounds(latency: dict[str, Any]) -> str:
    rounds = latency["p99_ms_per_round"]
    return f"{latency['p99_ms']:.1f} ({min(rounds):.1f} - {max(rounds):.1f})"


def summary_table() -> str:
    rows = [
        "| figure | measured: median (min - max) | baseline in the same run | target | met |",
        "|---|---|---|---|---|",
    ]
    machine: dict[str, Any] = {}
    for name, section in (
        ("ingest", _ingest),
        ("hotpath", _hotpath),
        ("scrape", _scrape),
        ("memory", _memory),
        ("soak", _soak),
        ("export", _export),
        ("persist", _persist),
        ("replicas", _replicas),
    ):
        result = _load(name)
        if result is not None:
            rows += section(result)
            machine = machine or result.get("machine", {})
    cpu, cores, python = machine.get("cpu", "?"), machine.get("cores", "?"), machine.get("python", "?")
    header = f"Recorded on {cpu}, {cores} cores, Python {python}."
    return header + "\n\n" + "\n".join(rows)


def write_summary() -> None:
    text = DOC.read_text()
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    DOC.write_text(f"{before}{START}\n{summary_table()}\n{END}{after}")
