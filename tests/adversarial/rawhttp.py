"""Raw sockets against a running agent: hand-made requests, held-open connections, status lines.

httpx refuses to send most of what an attacker sends (bytes above 0x7f in headers, a body that
never completes, 100,000 headers), so these tests write HTTP/1.1 by hand.
"""

from __future__ import annotations

import copy
import resource
import select
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import orjson

from qss_exporter.zoom.signature import sign
from tests.samples import load_sample

FAKE_SIGNATURE = "v0=" + "ab" * 32  # well formed, verifies against nothing


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def raise_open_files(needed: int) -> None:
    """This test process holds many sockets: take the soft RLIMIT_NOFILE up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= needed, "not enough file descriptors for this test"


def qos_body(participant: str) -> bytes:
    """The shared QoS sample for one participant, happening now: four records when accepted."""
    body: dict[str, Any] = copy.deepcopy(load_sample("meeting.participant_qos"))
    body["event_ts"] = int(time.time() * 1000)
    body["payload"]["object"]["participant"]["user_id"] = participant
    return orjson.dumps(body)


def signed_headers(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"x-zm-request-timestamp": stamp, "x-zm-signature": sign(secret, stamp, body)}


def request(path: str, headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    """POST `path` with `headers` (str pairs, or raw byte pairs sent as they are), a content-length and
    `connection: close`, so that reading until the agent closes reads one answer."""
    pairs = (
        [(name.encode(), value.encode()) for name, value in headers.items()]
        if isinstance(headers, Mapping)
        else list(headers)
    )
    head = b"".join(name + b": " + value + b"\r\n" for name, value in pairs)
    return (
        f"POST {path} HTTP/1.1\r\nhost: agent\r\n".encode()
        + head
        + f"content-type: application/json\r\nconnection: close\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )


def connect(target: tuple[str, int], timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(target, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def exchange(target: tuple[str, int], data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data` on a fresh connection and read until the agent closes it or `timeout` passes."""
    with connect(target, timeout) as sock:
        sock.sendall(data)
        return read_all(sock, timeout)


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def statuses(answer: bytes) -> list[int]:
    """Every status code in a stream of responses (pipelined answers come back to back)."""
    return [int(line.split(b" ", 2)[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.")]


def is_open(sock: socket.socket) -> bool:
    """True while the peer has neither closed nor reset the connection (nothing is consumed)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False


@contextmanager
def held(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def rss_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in bytes: resident now, and its peak so far."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status.read().splitlines() if line.startswith("Vm"))
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024
