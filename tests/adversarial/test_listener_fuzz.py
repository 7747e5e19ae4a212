"""Fuzzing the webhook listener: hypothesis writes raw HTTP/1.x requests (request lines, header sets
with any bytes, up to tens of kilobytes, framing right and wrong, bodies signed or not) and sends each
over a real socket to one running agent process.

Whatever comes in, the agent answers only with documented statuses (never a 5xx: nothing here
overloads it), stays up, logs no traceback and counts no internal error. CI runs a short pass;
`QSS_FUZZ_EXAMPLES=20000` runs the long one whose figures docs/security.md records.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adversarial.rawhttp import address, statuses
from tests.conftest import SECRET, base_config, merge, parse_metrics, total
from tests.process import AgentProcess
from tests.samples import load_sample

EXAMPLES = int(os.environ.get("QSS_FUZZ_EXAMPLES", "150"))
# Every status the listener documents (docs/security.md); 100 precedes a final one.
DOCUMENTED = {100, 200, 400, 401, 404, 405, 408, 413, 414, 431}
PATH = "/zoom/webhook"

_token = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1, max_size=20)
_any_bytes = st.binary(max_size=64)
_header_value = st.one_of(
    _any_bytes,
    st.text(max_size=40).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.integers(min_value=-(10**30), max_value=10**30).map(lambda n: str(n).encode()),
    st.sampled_from([b"", b" ", b"chunked", b"gzip, chunked", b"100-continue", b"close", b"upgrade", b"h2c"]),
    st.binary(min_size=1000, max_size=40_000),
)
_header_name = st.one_of(
    st.sampled_from(
        [
            b"content-length",
            b"transfer-encoding",
            b"x-zm-request-timestamp",
            b"x-zm-signature",
            b"expect",
            b"connection",
            b"upgrade",
            b"content-type",
            b"host",
        ]
    ),
    _token.map(str.encode),
    _any_bytes,
)
_headers = st.lists(st.tuples(_header_name, _header_value), max_size=12)
_many_headers = st.integers(min_value=0, max_value=3000).map(lambda n: [(b"x-f%d" % i, b"v") for i in range(n)])
_method = st.one_of(st.sampled_from([b"POST", b"GET", b"HEAD", b"PUT", b"OPTIONS", b"PRI", b"CONNECT"]), _any_bytes)
_target = st.one_of(st.just(PATH.encode()), st.sampled_from([b"/", b"*", b"/zoom/webhook?x=1", b"//x"]), _any_bytes)
_version = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9.9", b"", b"http/1.1"])


def _json_value() -> st.SearchStrategy[object]:
    integers = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # orjson's range
    scalars = st.one_of(st.none(), st.booleans(), integers, st.floats(allow_nan=False), st.text(max_size=30))
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=30,
    )


@st.composite
def signed_body(draw: st.DrawFn) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """A body signed as Zoom signs it: the sample with fuzzed parts, or any JSON."""
    from qss_exporter.zoom.signature import sign

    if draw(st.booleans()):
        event = load_sample("meeting.participant_qos")
        event["event_ts"] = int(time.time() * 1000)
        event["payload"]["object"]["participant"]["user_id"] = draw(st.text(max_size=12))
        if draw(st.booleans()):
            event["payload"]["object"]["participant"]["qos"] = draw(_json_value())
        body = orjson.dumps(event)
    else:
        body = orjson.dumps(draw(_json_value()))
    stamp = str(int(time.time()))
    return [(b"x-zm-request-timestamp", stamp.encode()), (b"x-zm-signature", sign(SECRET, stamp, body).encode())], body


@st.composite
def raw_request(draw: st.DrawFn) -> bytes:
    method, target, version = draw(_method), draw(_target), draw(_version)
    headers = draw(st.one_of(_headers, _many_headers))
    body = draw(st.binary(max_size=2000))
    if draw(st.booleans()):
        signature, body = draw(signed_body())
        headers = signature + headers
    framing = draw(st.sampled_from(["length", "chunked", "none", "wrong-length"]))
    if framing == "length":
        headers.append((b"content-length", str(len(body)).encode()))
    elif framing == "wrong-length":
        headers.append((b"content-length", str(draw(st.integers(0, 5000))).encode()))
    elif framing == "chunked":
        headers.append((b"transfer-encoding", b"chunked"))
        cut = draw(st.integers(0, len(body)))
        body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:cut], body[cut:]) if part) + b"0\r\n\r\n"
    head = method + b" " + target + b" " + version + b"\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"\r\n" + body


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    config = merge(base_config(), {"webhook": {"header_timeout_seconds": 2, "body_timeout_seconds": 2}})
    with AgentProcess(tmp_path_factory.mktemp("fuzz"), config) as process:
        yield process


def _send(target: tuple[str, int], data: bytes) -> bytes:
    with socket.create_connection(target, timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)  # the whole request is out: the agent sees the end
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before everything was sent (431, 413): the answer may still be there
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 150,  # CI: the same inputs every run; the long run explores
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=raw_request())
def test_any_request_gets_a_documented_answer(agent: AgentProcess, data: bytes) -> None:
    answer = _send(address(agent.webhook_url), data)
    codes = statuses(answer)
    assert set(codes) <= DOCUMENTED, (codes, data[:300])
    assert agent.process.poll() is None


def test_the_agent_survived_the_fuzzing_without_a_trace(agent: AgentProcess) -> None:
    # Runs after the fuzz test in this module (pytest keeps file order).
    samples = parse_metrics(agent.scrape_text())
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="error") == 0
    log = agent.log_text()
    at = log.find("Traceback")
    assert at < 0, log[max(0, at - 500) : at + 4000]
    assert agent.process.poll() is None


def test_fuzz_target_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    assert "QSS_FUZZ_EXAMPLES" in doc
