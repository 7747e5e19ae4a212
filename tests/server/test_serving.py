"""Process limits a server sets for itself: the soft open-file limit raised to the hard one, and a
connection cap lowered (with a warning) when the open-file limit cannot hold it."""

from __future__ import annotations

import logging
import resource
from collections.abc import Iterator

import pytest

from qss_exporter.app import Agent
from qss_exporter.config import config_from_mapping
from qss_exporter.server.serving import raise_open_file_limit
from tests.conftest import base_config, merge


@pytest.fixture
def low_soft_limit() -> Iterator[int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(low_soft_limit: int) -> None:
    raised = raise_open_file_limit()
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == low_soft_limit
    assert raised == low_soft_limit


def test_a_cap_the_descriptors_cannot_hold_is_lowered_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    agent = Agent(config_from_mapping(merge(base_config(), {"webhook": {"max_connections": 100_000}})))
    with caplog.at_level(logging.WARNING, "qss_exporter.app"):
        limits = agent.webhook_limits(open_files=4096)
    assert limits.max_connections == 4096 - 256
    assert "webhook.max_connections 100000 is more than the open-file limit allows; using 3840" in caplog.text
    assert agent.webhook_limits(open_files=1 << 20).max_connections == 100_000
