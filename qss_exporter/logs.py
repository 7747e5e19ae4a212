"""Logging set-up: plain or one-JSON-object-per-line records on stderr; rate-limited lines for bad input."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

__all__ = ["JsonFormatter", "PlainFormatter", "RateLimitedLog", "configure_logging", "shown"]


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


class PlainFormatter(logging.Formatter):
    """`time LEVEL logger: message`, one line; a record's `extra={"plain": "..."}` is appended to the message.

    The start-up line uses it for a compact summary of the configuration, where the JSON format
    carries the whole configuration as a field.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        plain = getattr(record, "plain", None)
        if isinstance(plain, str) and plain:
            record.message = f"{record.message}; {plain}"
        return super().formatMessage(record)


def shown(value: object, limit: int = 40) -> str:
    """A value from untrusted input as it may appear in a log line: repr(), cut to `limit` characters."""
    text = repr(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log would log every webhook; our counters already do.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request at INFO (the demo and the poller make many).
    logging.getLogger("httpx").setLevel(logging.WARNING)


class RateLimitedLog:
    """Short log lines about rejected input, at most `burst` per reason and then one per `interval`.

    A token bucket per reason: anyone on the Internet can send bad requests, and a line per request
    would be a log flood. What was held back is counted and said in the next line of that reason
    ("... (41 more suppressed)"). Reasons are a closed set chosen by the caller, never client data.
    """

    def __init__(
        self,
        logger: logging.Logger,
        level: int = logging.INFO,
        *,
        interval: float = 60.0,
        burst: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._level = level
        self._interval = interval
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float, int]] = {}  # reason -> (tokens, last refill, suppressed)

    def __call__(self, reason: str, message: str, *args: object) -> None:
        if not self._logger.isEnabledFor(self._level):
            return
        now = self._clock()
        tokens, last, suppressed = self._buckets.get(reason, (self._burst, now, 0))
        tokens = min(self._burst, tokens + (now - last) / self._interval)
        if tokens < 1.0:
            self._buckets[reason] = (tokens, now, suppressed + 1)
            return
        self._buckets[reason] = (tokens - 1.0, now, 0)
        if suppressed:
            message += f" ({suppressed} more suppressed)"
        self._logger.log(self._level, message, *args)
