"""Logging set-up (plain or one-JSON-object-per-line records on stderr), and throttling of lines about input."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

__all__ = ["LogThrottle", "configure_logging", "shown"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed as `extra={"fields": {...}}` are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class LogThrottle:
    """At most one log line per key every `interval` seconds, so that bad input cannot flood the log.

    `allow(key)` is None while a line would be held back, else how many were held back since the last
    line of that key (to be shown in the line). Keys are a small closed set (reasons), never input.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


def shown(value: object, limit: int = 40) -> str:
    """A value from untrusted input as it may appear in a log line: repr(), cut to `limit` characters."""
    text = repr(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log would log every webhook; our counters already do.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request at INFO (the demo and the poller make many).
    logging.getLogger("httpx").setLevel(logging.WARNING)
