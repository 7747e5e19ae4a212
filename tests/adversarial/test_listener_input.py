"""Odd header values and HTTP framing: a documented 4xx or a counted 200, never a 5xx, never a
traceback, and log lines bounded whatever the volume (issue 11, point 2, listener side).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.adversarial.rawhttp import (
    FAKE_SIGNATURE,
    address,
    connect,
    exchange,
    qos_body,
    read_all,
    request,
    signed_headers,
    statuses,
)
from tests.conftest import SECRET, base_config, merge, parse_metrics, total
from tests.process import AgentProcess

REPEAT = 40  # each bad request this many times: a log line per request would be a flood

# Timestamp header values (raw bytes) that are not whole seconds in ASCII digits, or not now.
ODD_TIMESTAMPS = [
    ("\u0661\u0667" + "\u0660" * 8).encode(),  # Arabic-Indic digits: int() takes them, .encode("ascii") did not
    ("\uff11\uff17" + "\uff10" * 8).encode(),  # fullwidth digits
    b"1_700_000_000",
    b" 1700000000",
    b"+1700000000",
    b"-1",
    b"1e9",
    b"9" * 400,
    b"\xff\xfe\xfd",
    b"0x65",
    b"",
]
ODD_SIGNATURES = [
    b"v0=" + "\u00e9".encode() * 32,
    b"v0=" + b"g" * 64,
    b"v0=" + b"a" * 63,
    b"v0=" + b"a" * 10_000,
    b"v1=" + b"a" * 64,
    b"\xc3\x28\xa0\xa1",
    b"",
]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    config = merge(base_config(), {"log": {"level": "debug"}})
    with AgentProcess(tmp_path_factory.mktemp("input"), config) as process:
        yield process


def _send_all(agent: AgentProcess, requests: list[bytes]) -> list[list[int]]:
    target = address(agent.webhook_url)
    return [statuses(exchange(target, data + b"", timeout=5)) for data in requests]


def test_odd_signature_headers_get_401_without_a_traceback_or_a_log_flood(agent: AgentProcess) -> None:
    body = qos_body("odd")
    now = str(int(time.time())).encode()
    requests = [
        request(agent.webhook_path, [(b"x-zm-request-timestamp", stamp), (b"x-zm-signature", FAKE_SIGNATURE.encode())])
        for stamp in ODD_TIMESTAMPS
    ]
    requests += [
        request(agent.webhook_path, [(b"x-zm-request-timestamp", now), (b"x-zm-signature", signature)], body)
        for signature in ODD_SIGNATURES
    ]
    # Repeated headers: the last one counts, and a wrong one among them is not a way around the check.
    good = signed_headers(body, SECRET)
    requests.append(
        request(
            agent.webhook_path,
            [
                (b"x-zm-request-timestamp", good["x-zm-request-timestamp"].encode()),
                (b"x-zm-request-timestamp", "\u0661".encode()),
                (b"x-zm-signature", good["x-zm-signature"].encode()),
            ],
            body,
        )
    )
    lines_before = len(agent.output)
    answers = _send_all(agent, requests * REPEAT)
    time.sleep(0.3)
    assert all(answer == [401] for answer in answers), sorted({str(a) for a in answers})
    logged = agent.output[lines_before:]
    assert not any("Traceback" in line or "Exception" in line for line in logged), "".join(logged[:20])
    # Three lines per reason, then nothing until the rate limit refills (one a minute).
    assert len(logged) <= 3 * 3, "".join(logged)
    samples = parse_metrics(agent.scrape_text())
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="accepted") == 0
    assert total(samples, "zoom_qss_media_records_total") == 0


def test_framing_is_a_documented_4xx_or_a_counted_200(agent: AgentProcess) -> None:
    path = agent.webhook_path
    before = parse_metrics(agent.scrape_text())

    def signed(participant: str) -> tuple[bytes, dict[str, str]]:
        body = qos_body(participant)
        return body, signed_headers(body, SECRET)

    chunked_body, chunked_headers = signed("chunked")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (chunked_body[:100], chunked_body[100:]))
    chunked = (
        f"POST {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\ntransfer-encoding: chunked\r\n".encode()
        + b"".join(f"{k}: {v}\r\n".encode() for k, v in chunked_headers.items())
        + b"\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    old_body, old_headers = signed("http10")
    http10 = request(path, old_headers, old_body).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    first, first_headers = signed("pipelined-1")
    second, second_headers = signed("pipelined-2")
    pipelined = request(path, first_headers, first).replace(b"connection: close\r\n", b"") + request(
        path, second_headers, second
    )
    continue_body, continue_headers = signed("expect-100")
    expect = request(path, {**continue_headers, "expect": "100-continue"}, continue_body)
    unsigned_expect = request(path, {"expect": "100-continue"}, b"{}")
    waiting_body, waiting_headers = signed("expect-100-waits")
    waiting = request(path, {**waiting_headers, "expect": "100-continue"}, waiting_body)
    now = str(int(time.time()))
    unsigned_head = f"POST {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\nx-zm-request-timestamp: {now}\r\n"
    cases: list[tuple[str, bytes, list[int]]] = [
        ("chunked, signed", chunked, [200]),
        ("HTTP/1.0, signed", http10, [200]),
        ("two pipelined, signed", pipelined, [200, 200]),
        ("expect 100-continue, body sent at once, signed", expect, [200]),
        ("content-length over 64 bits", f"{unsigned_head}content-length: {'9' * 40}\r\n\r\n".encode(), [400]),
        ("content-length of a terabyte", f"{unsigned_head}content-length: {10**12}\r\n\r\n".encode(), [413]),
        ("content-length not digits", f"{unsigned_head}content-length: 12a\r\n\r\n".encode(), [400]),
        ("two content-lengths", f"{unsigned_head}content-length: 1\r\ncontent-length: 2\r\n\r\nab".encode(), [400]),
        (
            "content-length and chunked",
            f"{unsigned_head}content-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n".encode(),
            [400],
        ),
        ("a NUL in a header", f"{unsigned_head}x-a: b\x00c\r\n\r\n".encode(), [400]),
        ("no request line", b"\r\n\r\n\r\n\r\nhello\r\n\r\n", [400]),
        ("no request target (found by the fuzzer)", b"POST  HTTP/1.0\r\nhost: a\r\n\r\n", [400]),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [400]),
        (
            "h2c upgrade",
            f"GET {path} HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n".encode(),
            [405],
        ),
        ("a long URL", f"POST {path}?{'q' * 40_000} HTTP/1.1\r\nhost: a\r\n\r\n".encode(), [414]),
        ("GET on the webhook path", f"GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n".encode(), [405]),
    ]
    target = address(agent.webhook_url)
    for name, data, expected in cases:
        assert statuses(exchange(target, data, timeout=5)) == expected, name
    # Expect: 100-continue as curl does it: the headers, a wait for "100 Continue", then the body;
    # without a plausible signature the final answer comes instead, and the body is never sent.
    head, _, rest = waiting.partition(b"\r\n\r\n")
    with connect(target) as sock:
        sock.sendall(head + b"\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(rest)
        assert statuses(read_all(sock, 5)) == [200]
    with connect(target) as sock:
        sock.sendall(unsigned_expect.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
        assert statuses(read_all(sock, 5)) == [401]
    after = parse_metrics(agent.scrape_text())

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("zoom_qss_webhook_requests_total", outcome="accepted") == 6
    assert grew("zoom_qss_media_records_total") == 4 * 6
    assert grew("zoom_qss_webhook_requests_total", outcome="error") == 0
    assert not any("Traceback" in line for line in agent.output)
