"""Logging set-up: plain or one-JSON-object-per-line records on stderr."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

__all__ = ["JsonFormatter", "PlainFormatter", "configure_logging"]


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
