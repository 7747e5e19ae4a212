"""Load for the ingest benchmark: signed realistic webhook requests, wrk at saturation, and an
open-loop constant-rate client for latency at a given fraction of the maximum rate."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from qss_exporter.demo.simulator import Simulator, default_accounts
from qss_exporter.zoom.signature import sign

__all__ = ["WrkResult", "generate_requests", "open_loop", "run_wrk"]

LUA = Path(__file__).resolve().parent / "ingest.lua"
QOS_EVENTS = ("meeting.participant_qos", "webinar.participant_qos", "session.user_qos")


def generate_requests(path: Path, count: int, secrets: Mapping[str, str], seed: int = 7) -> dict[str, float]:
    """Write `count` distinct signed real-time QoS requests (from the demo simulator) to `path`."""
    simulator = Simulator(default_accounts(), size=max(2000, count // 60), seed=seed, start=time.time() - 86_400)
    timestamp = str(int(time.time()))
    written = 0
    size = 0
    values = 0
    with path.open("w") as out:
        while written < count:
            for emitted in simulator.advance(60):
                if emitted.event not in QOS_EVENTS:
                    continue
                body = emitted.body.decode()
                out.write(f"{timestamp}\t{sign(secrets[emitted.account], timestamp, emitted.body)}\t{body}\n")
                written += 1
                size += len(emitted.body)
                values += body.count('":"') - body.count('"date_time":"') - body.count('"type":"')
                if written == count:
                    break
    return {"requests": written, "mean_body_bytes": size / written, "mean_values_per_event": values / written}


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_second: float
    requests: int
    non_2xx: int
    p50_ms: float
    p99_ms: float


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[match.group(2)]


def run_wrk(url: str, requests: Path, seconds: float, connections: int = 64) -> WrkResult:
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(LUA), url, "--", str(requests)],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    out = result.stdout
    if "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed:\n{out}\n{result.stderr}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)\s*$", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)\s*$", out, re.M)
    if p50 is None or p99 is None:
        raise RuntimeError(f"wrk printed no latency distribution:\n{out}\n{result.stderr}")
    return WrkResult(
        rps, total, int(non_2xx.group(1)) if non_2xx else 0, _milliseconds(p50.group(1)), _milliseconds(p99.group(1))
    )


async def _open_loop(
    host: str, port: int, path: str, lines: list[tuple[str, str, bytes]], rate: float, seconds: float, connections: int
) -> tuple[list[float], int]:
    queue: asyncio.Queue[tuple[float, int] | None] = asyncio.Queue()
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await queue.get()) is not None:
                scheduled, index = item
                timestamp, signature, body = lines[index % len(lines)]
                writer.write(
                    f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
                    f"x-zm-request-timestamp: {timestamp}\r\nx-zm-signature: {signature}\r\n"
                    f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                head = await reader.readuntil(b"\r\n\r\n")
                found = re.search(rb"content-length: (\d+)", head, re.I)
                length = int(found.group(1)) if found else 0
                if length:
                    await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    failures += 1
                # From the scheduled time, not the send time: a slow server cannot hide its queueing.
                latencies.append(time.perf_counter() - scheduled)
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start = time.perf_counter()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1)
        for index in range(sent, due):
            queue.put_nowait((start + index / rate, index))
        sent = due
        await asyncio.sleep(0.0005)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return latencies, failures


def open_loop(url: str, requests: Path, rate: float, seconds: float, connections: int = 32) -> dict[str, float]:
    """Send at a constant `rate`; latency percentiles measured from each request's scheduled time."""
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, _, port = hostport.partition(":")
    lines = []
    with requests.open() as source:
        for line in source:
            timestamp, signature, body = line.rstrip("\n").split("\t", 2)
            lines.append((timestamp, signature, body.encode()))
    import uvloop  # a dependency on Linux, where the benchmarks run

    latencies, failures = uvloop.run(_open_loop(host, int(port), "/" + path, lines, rate, seconds, connections))
    latencies.sort()

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "rate": rate,
        "requests": len(latencies),
        "failures": failures,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
    }
