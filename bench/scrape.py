"""Scrape: /metrics rendering of N histogram series against prometheus_client.generate_latest over
the same data, in the same process and run."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.common import Spread
from qss_exporter.catalogue import DEFAULT_BUCKETS
from qss_exporter.outputs.prometheus import render
from qss_exporter.store import Store

__all__ = ["run"]

LABELS = ("account", "product", "media", "direction", "path", "network_type", "site")
BUCKETS = DEFAULT_BUCKETS["zoom_qss_media_latency_seconds"]


def _label_sets(count: int) -> list[tuple[str, ...]]:
    rng = random.Random(count)
    seen: set[tuple[str, ...]] = set()
    while len(seen) < count:
        seen.add(
            (
                rng.choice(["acme", "globex"]),
                rng.choice(["meeting", "webinar", "session"]),
                rng.choice(["audio", "video", "share"]),
                rng.choice(["input", "output"]),
                "client",
                rng.choice(["wired", "wifi", "cellular", "other"]),
                f"site-{rng.randrange(count)}",
            )
        )
    return sorted(seen)


def _timed(function: Any, repeats: int) -> tuple[Spread, Any]:
    durations = []
    output = None
    for _ in range(repeats):
        started = time.perf_counter()
        output = function()
        durations.append(time.perf_counter() - started)
    return Spread.of(durations), output


def measure(series: int, repeats: int) -> dict[str, Any]:
    label_sets = _label_sets(series)
    rng = random.Random(1)
    store = Store(series + 10, time.time)
    family = store.histogram("zoom_qss_media_latency_seconds", "One-way media latency.", LABELS, BUCKETS)
    registry = CollectorRegistry()
    reference = Histogram(
        "zoom_qss_media_latency_seconds", "One-way media latency.", LABELS, buckets=BUCKETS, registry=registry
    )
    for labels in label_sets:
        for _ in range(3):
            value = rng.expovariate(20)
            family.observe(labels, value)
            reference.labels(*labels).observe(value)
    ours, text = _timed(lambda: render(store), repeats)
    theirs, _ = _timed(lambda: generate_latest(registry), repeats)
    result: dict[str, Any] = {
        "series": series,
        "lines": text.count(b"\n"),
        "bytes": len(text),
        "render_seconds": ours.as_dict(),
        "prometheus_client_seconds": theirs.as_dict(),
        "speedup": theirs.median / ours.median,
    }
    promtool = shutil.which("promtool")
    if promtool:
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, check=False)
        result["promtool_check_metrics"] = (
            "ok" if check.returncode == 0 else check.stdout.decode() + check.stderr.decode()
        )
    return result


def run(smoke: bool = False) -> dict[str, Any]:
    sizes = [2_000] if smoke else [20_000, 100_000]
    return {
        "cases": [measure(size, 1 if smoke else 3) for size in sizes],
        "target": {"speedup": 10, "seconds_at_100k": 1.0},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(smoke="--smoke" in sys.argv), indent=2))  # noqa: T201
