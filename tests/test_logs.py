"""Rate-limited log lines for rejected input: a burst per reason, then one per interval, with a count."""

from __future__ import annotations

import logging

import pytest

from qss_exporter.logs import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_per_interval_with_the_suppressed_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = RateLimitedLog(logging.getLogger("test.rate"), interval=60, burst=3, clock=clock)
    with caplog.at_level(logging.INFO, "test.rate"):
        for n in range(1000):
            log("bad_signature", "rejected %d", n)
            log("stale_timestamp", "stale %d", n)
        clock.now = 61
        log("bad_signature", "rejected again")
    lines = [record.getMessage() for record in caplog.records]
    assert lines[:6] == ["rejected 0", "stale 0", "rejected 1", "stale 1", "rejected 2", "stale 2"]
    assert lines[6:] == ["rejected again (997 more suppressed)"]


def test_nothing_is_counted_when_the_level_is_off(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(logging.getLogger("test.quiet"), logging.DEBUG, clock=Clock())
    with caplog.at_level(logging.WARNING, "test.quiet"):
        for _ in range(10):
            log("reason", "line")
    assert caplog.records == []
