"""OTLP export: time and memory to encode one export of 20k and 100k histogram series (against
rendering /metrics from the same store in the same run), and webhook latency while exports run: 100k
series every 10 s (the target case) and 20k every second (a stress case), each against the same agent
with OTLP off, at 1,000 events/s."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource

from bench.common import Spread, free_port, wait_for_port
from bench.ingest import SECRETS, _agent_config
from bench.load import generate_requests, open_loop
from qss_exporter.outputs.otlp import SCOPE
from qss_exporter.outputs.otlp_encode import Encoder
from qss_exporter.outputs.prometheus import render
from qss_exporter.store import Store

__all__ = ["run"]

LABELS = ("account", "product", "media", "direction", "path", "network_type", "site")
BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2)


def populate(store: Store, series: int) -> None:
    """`series` histogram series spread over the seven media families, as a large deployment has."""
    rng = random.Random(series)
    names = [
        "latency_seconds",
        "jitter_seconds",
        "packet_loss_ratio",
        "max_packet_loss_ratio",
        "bitrate_bytes_per_second",
        "frames_per_second",
        "frame_height_pixels",
    ]
    existing = {family.name for family in store.families()}  # the agent's own, or a bare store
    families = [
        store.family(f"zoom_qss_media_{name}")
        if f"zoom_qss_media_{name}" in existing
        else store.histogram(f"zoom_qss_media_{name}", "doc", LABELS, BUCKETS)
        for name in names
    ]
    for index in range(series):
        family = families[index % len(families)]
        labels = ("acme", "meeting", "audio", "input", "client", "wifi", f"site-{index // len(families)}")
        for _ in range(3):
            family.observe(labels, rng.expovariate(20))  # type: ignore[union-attr]  # histogram families


def _encode(encoder: Encoder) -> tuple[int, int, float]:
    """One export's requests, kept no longer than the exporter keeps them (two at a time): the number of
    requests, their bytes, and the longest stretch between two pause points (what one slice can hold the loop)."""
    requests = size = 0
    longest = 0.0
    mark = time.perf_counter()
    held: list[bytes] = []
    for item in encoder.encode():
        now = time.perf_counter()
        if item is None:
            longest, mark = max(longest, now - mark), now
            continue
        requests += 1
        size += len(item.data)
        held = [*held[-1:], item.data]
    del held
    return requests, size, longest


def _build(series: int, repeats: int) -> dict[str, Any]:
    store = Store(series + 100, time.time)
    populate(store, series)
    encoder = Encoder(store, Resource.create({"service.name": "qss-exporter"}), SCOPE, "cumulative", time.time_ns())
    # The first export encodes every series' attributes once and keeps them (in Series.otlp, plain bytes).
    started = time.perf_counter()
    _encode(encoder)
    first = time.perf_counter() - started
    cached = sum(sys.getsizeof(series.otlp) for family in store.stored_families() for series in family.series())
    build_times, render_times, slices = [], [], []
    requests = size = 0
    for _ in range(repeats):
        started = time.perf_counter()
        requests, size, longest = _encode(encoder)
        build_times.append(time.perf_counter() - started)
        slices.append(longest)
        started = time.perf_counter()
        render(store)
        render_times.append(time.perf_counter() - started)
    # Peak memory in a separate, traced pass: tracing slows allocation, so it is not timed.
    tracemalloc.start()
    _encode(encoder)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    build = Spread.of(build_times)
    return {
        "series": series,
        "first_export_seconds": first,
        "cached_heads_mib": cached / 2**20,
        "build_and_serialise_seconds": build.as_dict(),
        "longest_stretch_between_pauses_seconds": Spread.of(slices).as_dict(),
        "prometheus_render_seconds": Spread.of(render_times).as_dict(),
        "ratio_build_to_prometheus_render": build.median / Spread.of(render_times).median,
        "requests": requests,
        "serialised_bytes": size,
        "peak_python_memory_mib": peak / 2**20,
    }


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that accepts everything (the payload is not the point here)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _receiver() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _serve(config: Path, series: int) -> None:
    """Child process: the real agent with its store pre-filled."""
    import uvloop

    from qss_exporter.app import Agent
    from qss_exporter.config import load_config
    from qss_exporter.logs import configure_logging

    configure_logging("warning", "plain")
    agent = Agent(load_config(config))
    populate(agent.store, series)
    uvloop.run(agent.serve(install_signal_handlers=True))


def _latency(
    directory: Path, requests: Path, series: int, otlp: bool, rate: float, seconds: float, interval: float
) -> dict[str, Any]:
    with _receiver() as receiver_port:
        webhook, metrics = free_port(), free_port()
        endpoint = f"http://127.0.0.1:{receiver_port}"
        exporting = f"otlp: {{enabled: true, protocol: http/protobuf, endpoint: '{endpoint}', "
        exporting += f"interval_seconds: {interval:g}}}\n"
        exporting = exporting if otlp else ""
        config = _agent_config(directory, webhook, metrics, exporting)
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.export", "--serve", str(config), str(series)], stdout=subprocess.DEVNULL
        )
        try:
            wait_for_port(webhook, timeout=120)
            time.sleep(2)  # let the process settle (and, at a 1 s interval, the first exports run)
            return open_loop(f"http://127.0.0.1:{webhook}/zoom/webhook", requests, rate=rate, seconds=seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)


def _latency_case(
    directory: Path, requests: Path, series: int, interval: float, rate: float, seconds: float, rounds: int
) -> dict[str, Any]:
    """p99 with OTLP exports of `series` series every `interval` seconds against the same agent without OTLP,
    in `rounds` alternating pairs; the median round is reported (a shared machine's bursts hit single runs)."""
    runs: dict[str, list[dict[str, Any]]] = {"otlp_off": [], "otlp_on": []}
    for _ in range(rounds):
        for name, otlp in (("otlp_off", False), ("otlp_on", True)):
            runs[name].append(_latency(directory, requests, series, otlp, rate, seconds, interval))

    def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "rate": rate,
            "requests": sum(result["requests"] for result in results),
            "failures": sum(result["failures"] for result in results),
            "p50_ms": statistics.median(result["p50_ms"] for result in results),
            "p99_ms": statistics.median(result["p99_ms"] for result in results),
            "p99_ms_per_round": [result["p99_ms"] for result in results],
        }

    off, on = summary(runs["otlp_off"]), summary(runs["otlp_on"])
    return {
        "series": series,
        "export_interval_seconds": interval,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "otlp_off": off,
        "otlp_on": on,
        "p99_ratio_on_to_off": on["p99_ms"] / off["p99_ms"],
    }


def run(smoke: bool = False) -> dict[str, Any]:
    sizes = [2_000] if smoke else [20_000, 100_000]
    builds = [_build(size, 1 if smoke else 3) for size in sizes]
    rate = 300.0 if smoke else 1000.0
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        requests = directory / "requests.txt"
        # The target case: 100k series exported every 10 s, 30 s per run (three exports, the first of which
        # encodes every series' attributes); and the old stress case, 20k series every second.
        if smoke:
            target, stress = (2_000, 1.0, 2.0, 1), None
        else:
            target, stress = (100_000, 10.0, 30.0, 3), (20_000, 1.0, 10.0, 2)
        generate_requests(requests, int(rate * target[2]) + 100, SECRETS)
        series, interval, seconds, rounds = target
        result: dict[str, Any] = {
            "builds": builds,
            "webhook_latency_during_exports": _latency_case(
                directory, requests, series, interval, rate, seconds, rounds
            ),
        }
        if stress is not None:
            series, interval, seconds, rounds = stress
            result["webhook_latency_stress"] = _latency_case(
                directory, requests, series, interval, rate, seconds, rounds
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs=2, metavar=("CONFIG", "SERIES"))
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.serve:
        _serve(Path(args.serve[0]), int(args.serve[1]))
        return
    print(json.dumps(run(args.smoke), indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
