"""`python -m bench.demo_series [--minutes 30] [--labels default|all]`: the demo's series over wall time.

Starts `qss-exporter demo` as a newcomer would (its defaults: 120 participants at 60x speed), scrapes
/metrics every `--every` seconds and prints one line per scrape: elapsed seconds, the series the store
holds (the sum of `zoom_qss_series`, what `limits.max_series` counts), the samples of the exposition (what
Prometheus stores: every histogram bucket is one) and the size of the scrape in bytes. The curve in
docs/metrics.md ("Series budget") comes from this. Not part of `python -m bench`: it runs for minutes of
wall time and records nothing.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time

import httpx

_METRICS = re.compile(r"metrics:\s+(http://\S+/metrics)")
_SERIES = re.compile(r"^zoom_qss_series\{[^}]*\} (\S+)$", re.MULTILINE)


def _scrape(url: str) -> tuple[int, int, int]:
    body = httpx.get(url, timeout=120.0).text
    series = int(sum(float(value) for value in _SERIES.findall(body)))
    samples = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    return series, samples, len(body.encode())


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.demo_series", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between scrapes (default 30)")
    parser.add_argument("--labels", default="default", help="the demo's --labels (default: default)")
    args = parser.parse_args()
    command = [sys.executable, "-m", "qss_exporter", "demo", "--webhook-listen", "127.0.0.1:0"]
    command += ["--metrics-listen", "127.0.0.1:0", "--labels", args.labels, "--log-level", "warning"]
    # The demo's output goes to a file, drained by the OS, not by a reader that could fall behind.
    with tempfile.TemporaryFile(mode="w+") as output:
        demo = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True)
        try:
            url = ""
            while not url and demo.poll() is None:
                time.sleep(0.2)
                output.seek(0)
                if found := _METRICS.search(output.read()):
                    url = found.group(1)
            started = time.monotonic()
            print("seconds series samples bytes", flush=True)  # noqa: T201 - the measurement's output
            while (elapsed := time.monotonic() - started) < args.minutes * 60:
                series, samples, size = _scrape(url)
                print(f"{elapsed:.0f} {series} {samples} {size}", flush=True)  # noqa: T201 - the measurement's output
                time.sleep(max(0.0, args.every - (time.monotonic() - started - elapsed)))
        finally:
            demo.terminate()
            demo.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
