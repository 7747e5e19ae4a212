"""The suite's secret watch: every secret a test configures, and every line the suite's code prints.

conftest.py installs `WatchHandler` on the root logger for the whole session (the product's loggers
at DEBUG), process.py feeds it every line a `qss-exporter` process prints, and a report hook the
output pytest captured. The session fails at its end if any line held a registered secret. Secrets
register themselves from every configuration the fixtures start an agent with (`register_config`);
a test that makes its own calls `register_secret`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["WATCH", "Leak", "SecretWatch", "WatchHandler", "register_secret"]

MIN_LENGTH = 8  # shorter test values ("s", "cs") would match ordinary words
SECRET_KEYS = frozenset(
    {"webhook_secret_token", "client_secret", "hash_key", "participant_id_hash_key", "password", "headers"}
)
_SECRET_VARIABLE = re.compile(r"SECRET|TOKEN|PASSWORD|PASS|KEY|HEADERS", re.IGNORECASE)


@dataclass(frozen=True)
class Leak:
    secret: str
    origin: str
    line: str

    def __str__(self) -> str:
        masked = self.line.replace(self.secret, f"<{len(self.secret)}-character secret>")
        return f"{self.origin}: {masked[:300]}"


class SecretWatch:
    """The registered secrets and the lines found holding one (thread-safe: process pumps are threads)."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self.leaks: list[Leak] = []
        self.lines_scanned = 0

    def register(self, *values: object) -> None:
        for value in values:
            if isinstance(value, str) and len(value.strip()) >= MIN_LENGTH:
                with self._lock:
                    self._secrets.add(value.strip())

    def register_config(self, config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
        """Every secret in a configuration mapping: secret keys (any form), and URL passwords anywhere."""

        def walk(node: Any, secret: bool) -> None:
            if isinstance(node, Mapping):
                for key, value in node.items():
                    walk(value, secret or key in SECRET_KEYS)
            elif isinstance(node, list | tuple):
                for item in node:
                    walk(item, secret)
            elif isinstance(node, str):
                if secret:
                    self.register(node)
                    # The OTEL_EXPORTER_OTLP_HEADERS form: each value on its own.
                    self.register(*(item.partition("=")[2] for item in node.split(",")))
                    self.register(*(item.partition("=")[2].partition(" ")[2] for item in node.split(",")))
                self._register_url_password(node)

        walk(config, False)
        for name, value in (environ or {}).items():
            if _SECRET_VARIABLE.search(name):
                self.register(value)

    def _register_url_password(self, text: str) -> None:
        if "://" in text and "@" in text:
            with suppress(ValueError):  # not a URL urllib can split: nothing to register
                self.register(urlsplit(text).password)

    def scan(self, text: str, origin: str) -> None:
        with self._lock:
            self.lines_scanned += 1
            found = [secret for secret in self._secrets if secret in text]
            self.leaks += [Leak(secret, origin, text) for secret in found]

    @contextmanager
    def planted(self, secret: str) -> Iterator[list[Leak]]:
        """Register `secret` for the block; yields the leaks of it found, which do not fail the session."""
        self.register(secret)
        found: list[Leak] = []
        try:
            yield found
        finally:
            with self._lock:
                found += [leak for leak in self.leaks if leak.secret == secret]
                self.leaks[:] = [leak for leak in self.leaks if leak.secret != secret]
                self._secrets.discard(secret)

    def report(self) -> str:
        lines = [f"{len(self.leaks)} line(s) printed a configured secret:"]
        return "\n".join([*lines, *(f"  {leak}" for leak in self.leaks[:50])])


WATCH = SecretWatch()


def register_secret(*values: str) -> None:
    """A secret a test configures itself (outside the fixtures): the session fails if any line prints it."""
    WATCH.register(*values)


class WatchHandler(logging.Handler):
    """Scans every log record: its message, its structured fields (the JSON format prints them) and its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a record whose arguments do not format: scan what it holds
            text = f"{record.msg!r} {record.args!r}"
        fields = getattr(record, "fields", None)
        if fields is not None:
            text += f" {fields!r}"
        if record.exc_info:
            text += "\n" + self._formatter.formatException(record.exc_info)
        WATCH.scan(text, f"log {record.name} {record.levelname}")
