"""A real `redis-server` for tests: loopback, a free port, no persistence, its own temp dir.

Tests stop it (`kill`, as a crash, or `stop`) and `start` it again on the same port, to see what the
agent does while Redis is gone and once it is back. With `tls`, it listens with TLS only (the
`--tls-*` options), with a certificate from a throw-away CA (trustme), optionally requiring a client
certificate. The `redis_server` fixture in conftest.py gives a started one. `cancel_when_sent` lands a
cancellation at the one moment where redis-py (on Python 3.11) loses it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

START_TIMEOUT_SECONDS = 5.0
# docs/config.md's least-privilege user: ACL SETUSER qss on >acl-pass ~qss:* +@connection +@read +@write
# +@scripting +info (no TIME, for one).
ACL_USER, ACL_PASSWORD = "qss", "acl-pass"


async def add_documented_acl_user(client: Redis) -> None:
    """Create docs/config.md's least-privilege ACL user on the server `client` talks to."""
    await client.acl_setuser(
        ACL_USER,
        enabled=True,
        passwords=[f"+{ACL_PASSWORD}"],
        keys=["qss:*"],
        categories=["+@connection", "+@read", "+@write", "+@scripting"],
        commands=["+info"],
    )


def redis_server_binary() -> str:
    """Path to redis-server; missing is a skip on a laptop but a failure in CI (scripts/install installs it)."""
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (Debian package redis-server, see scripts/install)")
        pytest.skip("redis-server not installed (Debian package redis-server)")
    return path


def cancel_when_sent(monkeypatch: pytest.MonkeyPatch, task: asyncio.Task[Any], containing: bytes) -> asyncio.Event:
    """Cancel `task` from inside redis-py's send of the first command that contains `containing`; the event tells when.

    redis-py sends under asyncio.wait_for, which on Python 3.11 returns the result instead of raising when
    its caller is cancelled in the iteration where the send completes (CPython gh-86296): a caller awaiting
    a command directly loses this cancellation. Whoever cancels `task` in turn (a TaskGroup) does so in the
    next iteration, when the send is done as well.
    """
    fired = asyncio.Event()
    send = AbstractConnection._send_packed_command

    async def cancelling_send(connection: AbstractConnection, command: Iterable[bytes]) -> None:
        chunks = list(command)
        if not fired.is_set() and any(containing in chunk for chunk in chunks):
            fired.set()
            task.cancel()
        await send(connection, chunks)

    monkeypatch.setattr(AbstractConnection, "_send_packed_command", cancelling_send)
    return fired


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throw-away CA, the server's certificate (for localhost) and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def create(cls, directory: Path) -> TlsFiles:
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        server = ca.issue_cert("localhost", "127.0.0.1")
        client = ca.issue_cert("qss-exporter-test-client")
        files = cls(*(directory / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")))
        ca.cert_pem.write_to_path(str(files.ca))
        server.cert_chain_pems[0].write_to_path(str(files.server_cert))
        server.private_key_pem.write_to_path(str(files.server_key))
        client.cert_chain_pems[0].write_to_path(str(files.client_cert))
        client.private_key_pem.write_to_path(str(files.client_key))
        return files


class RedisServer:
    """One redis-server process; `url` is what the agent's `state.redis.url` takes."""

    def __init__(
        self,
        directory: Path,
        *,
        password: str | None = None,
        tls: TlsFiles | None = None,
        client_certificates: bool = False,
    ) -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.client_certificates = client_certificates
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://localhost:{self.port}/0"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / f"redis-{self.starts}.log"

    def _arguments(self) -> list[str]:
        arguments = [
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.log),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password is not None:
            arguments += ["--requirepass", self.password]
        if self.tls is None:
            return [*arguments, "--port", str(self.port)]
        return [
            *arguments,
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.server_cert),
            "--tls-key-file", str(self.tls.server_key),
            "--tls-ca-cert-file", str(self.tls.ca),
            "--tls-auth-clients", "yes" if self.client_certificates else "no",
        ]  # fmt: skip

    def start(self) -> None:
        """Start (again, on the same port) and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("redis-server is running already")
        self.starts += 1
        self.process = subprocess.Popen(
            [self.binary, *self._arguments()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.log.exists() and "Ready to accept connections" in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.01)
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        self.kill()
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{text}")

    def kill(self) -> None:
        """SIGKILL, as a crash: connections drop without a goodbye, and every key is gone (no persistence)."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: a clean shutdown."""
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(timeout=10)
        self.process = None
