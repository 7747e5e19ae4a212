"""Running `qss-exporter` as a real process in tests, and reading what it prints."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from qss_exporter.zoom.signature import sign
from tests.secret_watch import WATCH

REPO = Path(__file__).resolve().parents[1]


class ExporterProcess:
    """`python -m qss_exporter ARGS` with its stdout and stderr lines collected by a thread."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.command = args[0] if args else ""
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qss_exporter", *args],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            WATCH.scan(line, f"process qss-exporter {self.command}")
            self.output.append(line)
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            match = regex.search(line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r}; output:\n{''.join(self.output)}")

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit code (the agent must stop within `timeout` seconds)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """Stop the process if it still runs and release its pipe."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._pump_thread.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


class AgentProcess(ExporterProcess):
    """`qss-exporter run` as a real process, from a configuration mapping written to a YAML file.

    Waits for the "listening" line and exposes the real URLs, so a test talks HTTP to the running
    agent (config file in, HTTP out) and can watch it while it keeps running:

        with AgentProcess(tmp_path, config) as agent:
            agent.post_signed(body, SECRET)
            assert total(agent.scrape(), "zoom_qss_media_records_total") == 4
    """

    def __init__(
        self,
        directory: Path,
        config: Mapping[str, Any],
        *,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        ready_timeout: float = 20.0,
    ) -> None:
        self.config_path = directory / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        WATCH.register_config(config, env)
        super().__init__(["run", "--config", str(self.config_path), *args], env)
        try:
            match = self.wait_for(
                r"listening: webhook (https?://\S+?)(/\S*), metrics (https?://\S+?)/metrics", ready_timeout
            )
        except BaseException:
            self.kill()
            raise
        self.webhook_base, self.webhook_path, self.metrics_url = match.group(1), match.group(2), match.group(3)

    @property
    def webhook_url(self) -> str:
        return self.webhook_base + self.webhook_path

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def post_signed(
        self, body: bytes, secret: str, *, timestamp: int | None = None, timeout: float = 10.0
    ) -> httpx.Response:
        """POST `body` to the webhook, signed with `secret` as Zoom would sign it."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            "content-type": "application/json; charset=utf-8",
            "x-zm-request-timestamp": stamp,
            "x-zm-signature": sign(secret, stamp, body),
        }
        return httpx.post(self.webhook_url, content=body, headers=headers, timeout=timeout)

    def scrape_text(self, **kwargs: Any) -> str:
        response = httpx.get(self.metrics_url + "/metrics", timeout=30.0, **kwargs)
        response.raise_for_status()
        return response.text

    def log_text(self) -> str:
        """Everything the process printed so far (stdout and stderr)."""
        return "".join(self.output)
