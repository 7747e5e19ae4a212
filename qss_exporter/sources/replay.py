"""Feeds captured webhook bodies (JSON lines) through the pipeline, for support cases and dashboards.

A line is a webhook body, or a Zoom WebSocket frame whose `content` is the body as a string.
Captured files are trusted local input: no signature is checked.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import orjson

from qss_exporter.pipeline import Pipeline
from qss_exporter.zoom.events import decode
from qss_exporter.zoom.records import InvalidEvent, UnknownEvent, UrlValidation

__all__ = ["replay_files", "replay_lines"]

log = logging.getLogger(__name__)


def _unwrap(envelope: object) -> object:
    if isinstance(envelope, dict) and envelope.get("module") == "message" and isinstance(envelope.get("content"), str):
        try:
            return orjson.loads(envelope["content"])
        except orjson.JSONDecodeError:
            return None
    return envelope


def replay_lines(pipeline: Pipeline, lines: Iterable[bytes], origin: str = "<lines>") -> Counter[str]:
    """Ingest every line; returns how many lines ended as accepted, duplicate, unknown_event, malformed,
    unknown_account."""
    outcomes: Counter[str] = Counter()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            decoded = decode(_unwrap(orjson.loads(line)))
        except orjson.JSONDecodeError as error:
            log.warning("%s:%d: not JSON (%s)", origin, number, error)
            outcomes["malformed"] += 1
            continue
        if isinstance(decoded, InvalidEvent):
            log.warning("%s:%d: not a usable Zoom event: %s missing or invalid", origin, number, decoded.field)
            pipeline.count_parse_error(decoded.field)
            outcomes["malformed"] += 1
        elif isinstance(decoded, UnknownEvent | UrlValidation):
            outcomes["unknown_event"] += 1
        elif (refusal := pipeline.accounts.check(pipeline.accounts.names, decoded.account_id)) is not None:
            # A capture carries no signature: any configured account may be replayed, no other.
            log.warning("%s:%d: %s", origin, number, refusal)
            outcomes[refusal] += 1
        else:
            outcomes["accepted" if pipeline.ingest(decoded, "replay") else "duplicate"] += 1
    return outcomes


def replay_files(pipeline: Pipeline, paths: Iterable[Path]) -> Counter[str]:
    total: Counter[str] = Counter()
    for path in paths:
        with path.open("rb") as lines:
            total += replay_lines(pipeline, lines, str(path))
    return total
