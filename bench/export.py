"""OTLP export: time and memory to build and serialise one export of 20k and 100k histogram series
(against rendering /metrics from the same store in the same run), and webhook latency while exports
of that size run (against the same agent with OTLP off)."""

from __future__ import annotations

import argparse
import json
import random
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

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.resources import Resource

from bench.common import Spread, free_port, wait_for_port
from bench.ingest import SECRETS, _agent_config
from bench.load import generate_requests, open_loop
from qss_exporter.outputs.otlp import Renderer, take_snapshot
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


def _build(series: int, repeats: int) -> dict[str, Any]:
    store = Store(series + 100, time.time)
    populate(store, series)
    renderer = Renderer(Resource.create({"service.name": "qss-exporter"}), "cumulative", time.time_ns())
    snapshot_times, build_times, render_times = [], [], []
    peak = 0
    size = 0
    for _ in range(repeats):
        started = time.perf_counter()
        snapshot = take_snapshot(store, time.time())
        snapshot_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        batches, tracks = renderer.render(snapshot)
        size = sum(len(encode_metrics(batch.data).SerializeToString()) for batch in batches)
        build_times.append(time.perf_counter() - started)
        renderer.commit(snapshot, tracks, set())
        # Peak memory in a second, traced pass: tracing slows allocation, so it is not timed.
        tracemalloc.start()
        batches, tracks = renderer.render(snapshot)
        encoded = [encode_metrics(batch.data).SerializeToString() for batch in batches]
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        del encoded
        renderer.commit(snapshot, tracks, set())
        started = time.perf_counter()
        render(store)
        render_times.append(time.perf_counter() - started)
    build = Spread.of(build_times)
    return {
        "series": series,
        "snapshot_on_event_loop_seconds": Spread.of(snapshot_times).as_dict(),
        "build_and_serialise_seconds": build.as_dict(),
        "prometheus_render_seconds": Spread.of(render_times).as_dict(),
        "ratio_build_to_prometheus_render": build.median / Spread.of(render_times).median,
        "requests": len(batches),
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


def _latency(directory: Path, requests: Path, series: int, otlp: bool, rate: float, seconds: float) -> dict[str, Any]:
    with _receiver() as receiver_port:
        webhook, metrics = free_port(), free_port()
        endpoint = f"http://127.0.0.1:{receiver_port}"
        exporting = f"otlp: {{enabled: true, protocol: http/protobuf, endpoint: '{endpoint}', interval_seconds: 1}}\n"
        exporting = exporting if otlp else ""
        config = _agent_config(directory, webhook, metrics, exporting)
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.export", "--serve", str(config), str(series)], stdout=subprocess.DEVNULL
        )
        try:
            wait_for_port(webhook, timeout=120)
            time.sleep(2)  # let the first exports run
            return open_loop(f"http://127.0.0.1:{webhook}/zoom/webhook", requests, rate=rate, seconds=seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)


def run(smoke: bool = False) -> dict[str, Any]:
    sizes = [2_000] if smoke else [20_000, 100_000]
    builds = [_build(size, 1 if smoke else 3) for size in sizes]
    rate, seconds = (300.0, 2.0) if smoke else (1000.0, 10.0)
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        requests = directory / "requests.txt"
        generate_requests(requests, int(rate * seconds) + 100, SECRETS)
        latency_series = sizes[-1] if smoke else 20_000
        without = _latency(directory, requests, latency_series, False, rate, seconds)
        with_otlp = _latency(directory, requests, latency_series, True, rate, seconds)
    return {
        "builds": builds,
        "webhook_latency_during_exports": {
            "series": latency_series,
            "export_interval_seconds": 1,
            "otlp_off": without,
            "otlp_on": with_otlp,
            "p99_ratio_on_to_off": with_otlp["p99_ms"] / without["p99_ms"],
        },
    }


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
