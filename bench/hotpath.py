"""The synchronous hot path in-process, stage by stage: verify, decode, record (µs per event).

A regression guard for the code itself, free of HTTP noise; the baseline in the same run is
orjson.loads of the same bodies (the cheapest thing any implementation must do). `typed` is what the
webhook does now: body bytes to a record on the typed fast path (zoom/typed.py, JSON included);
`json` + `decode` is the tolerant decoder after orjson.loads, its fallback, measured on the same bodies."""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

import orjson

from bench.common import Spread
from qss_exporter.app import Agent
from qss_exporter.config import config_from_mapping
from qss_exporter.demo.simulator import Simulator, default_accounts
from qss_exporter.zoom.events import decode
from qss_exporter.zoom.signature import sign, verify
from qss_exporter.zoom.typed import decode_body

__all__ = ["run"]

QOS_EVENTS = ("meeting.participant_qos", "webinar.participant_qos", "session.user_qos")


def _bodies(count: int) -> list[bytes]:
    simulator = Simulator(default_accounts(), size=max(1000, count // 60), seed=11, start=time.time() - 86_400)
    bodies: list[bytes] = []
    while len(bodies) < count:
        bodies += [e.body for e in simulator.advance(60) if e.event in QOS_EVENTS]
    return bodies[:count]


# `--detail`: detail mode on, tracking every participant (worst N), as a busy deployment would run it.
DETAIL = {"enabled": True, "hash_key": "bench", "worst": {"participants": 50, "meetings": 20}, "max_series": 10_000}


def _agent(detail: bool = False) -> Agent:
    accounts = [{"name": a.name, "account_id": a.account_id, "webhook_secret_token": "s"} for a in default_accounts()]
    config = {"accounts": accounts, "sites": [{"name": "office", "cidrs": ["10.0.0.0/8"]}]}
    return Agent(config_from_mapping({**config, "detail": DETAIL} if detail else config))


def run(smoke: bool = False, detail: bool = False) -> dict[str, Any]:
    count = 2_000 if smoke else 50_000
    repeats = 1 if smoke else 5
    bodies = _bodies(count)
    stamp = str(int(time.time()))
    signatures = [sign("s", stamp, body) for body in bodies]
    stages: dict[str, list[float]] = {"json": [], "verify": [], "decode": [], "typed": [], "record": []}
    for _ in range(repeats):
        agent = _agent(detail)
        # The stages hold every intermediate object alive at once, which a server never does; the
        # cyclic GC would then dominate the figures, so it is paused while timing.
        gc.collect()
        gc.disable()
        started = time.perf_counter()
        envelopes = [orjson.loads(body) for body in bodies]
        stages["json"].append(time.perf_counter() - started)
        started = time.perf_counter()
        now = time.time()
        for body, signature in zip(bodies, signatures, strict=True):
            verify(("s",), stamp, signature, body, now, 300)
        stages["verify"].append(time.perf_counter() - started)
        started = time.perf_counter()
        tolerant = [decode(envelope) for envelope in envelopes]
        stages["decode"].append(time.perf_counter() - started)
        del envelopes, tolerant
        started = time.perf_counter()
        records = [decode_body(body) for body in bodies]
        stages["typed"].append(time.perf_counter() - started)
        ingest = agent.pipeline.ingest
        started = time.perf_counter()
        for record in records:
            ingest(record, "webhook")  # type: ignore[arg-type]  # every body is a QoS event
        stages["record"].append(time.perf_counter() - started)
        gc.enable()
    per_event = {stage: Spread.of([1e6 * t / count for t in times]).as_dict() for stage, times in stages.items()}
    total = sum(per_event[stage]["median"] for stage in ("verify", "typed", "record"))
    return {
        "detail": detail,
        "events": count,
        "mean_body_bytes": sum(map(len, bodies)) / count,
        "microseconds_per_event": per_event,
        "total_median_microseconds": total,
        "ratio_total_to_json": total / per_event["json"]["median"],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(smoke="--smoke" in sys.argv, detail="--detail" in sys.argv), indent=2))  # noqa: T201
