"""The `state` section (backend, Redis connection, leader lease): invalid files, URL parsing, secrets kept secret."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from qss_exporter.config import RedisUrl, Secret, config_from_mapping, load_config, redacted_summary
from qss_exporter.errors import ConfigError
from tests.process import REPO

TESTDATA = Path(__file__).parent.absolute() / "testdata" / "config" / "state"
ACME = {"name": "acme", "account_id": "abc123", "webhook_secret_token": "s3cret-token"}
FORBIDDEN = ("URL-PASSWORD", "KEY-PASSWORD", "FILE-PASSWORD")

INVALID: list[tuple[str, list[str]]] = [
    ("invalid-state-backend.yaml", ["state.backend: must be one of 'local' or 'redis', got 'memcached'"]),
    (
        "invalid-redis-url-scheme.yaml",
        ["state.redis.url: expected a redis:// or rediss:// (TLS) URL, got 'http://<secret>@redis:6379/0'"],
    ),
    (
        "invalid-redis-url-query.yaml",
        [
            "state.redis.url: URL query options are not supported (use the state.redis keys), "
            "got 'redis://<secret>@redis:6379/0?socket_timeout=60'"
        ],
    ),
    (
        "invalid-redis-url-database.yaml",
        ["state.redis.url: the URL path is the database number (e.g. /0), got 'redis://<secret>@redis:6379/cache'"],
    ),
    (
        "invalid-redis-url-port.yaml",
        ["state.redis.url: not a URL with a valid port, got 'redis://<secret>@redis:99999/0'"],
    ),
    (
        "invalid-redis-password-twice.yaml",
        ["state.redis.password: the url holds a password already; give it in one place"],
    ),
    (
        "invalid-redis-password-file.yaml",
        ["state.redis.password_file: cannot read {dir}/no-such-password-file: No such file or directory"],
    ),
    ("invalid-redis-tls-without-rediss.yaml", ["state.redis.ca_file: needs a rediss:// url (TLS)"]),
    (
        "invalid-redis-ca-unreadable.yaml",
        ["state.redis.ca_file: cannot read {dir}/no-such-ca.pem: No such file or directory"],
    ),
    (
        "invalid-redis-cert-without-key.yaml",
        ["state.redis.key_file: missing (a client certificate needs both cert_file and key_file)"],
    ),
    (
        "invalid-redis-key-prefix.yaml",
        ["state.redis.key_prefix: must be 1-64 letters, digits, '_', '.', ':' or '-', got 'qss exporter'"],
    ),
    (
        "invalid-redis-command-timeout.yaml",
        ["state.redis.command_timeout_seconds: must be greater than 0.0, got 0"],
    ),
    (
        "invalid-redis-timeouts.yaml",
        [
            "state.redis.command_timeout_seconds: connect_timeout_seconds + command_timeout_seconds must be below "
            "state.leader.renew_seconds (3), got 3"
        ],
    ),
    ("invalid-leader-renew.yaml", ["state.leader.renew_seconds: must be at most a third of lease_seconds (10), got 4"]),
]


@pytest.mark.parametrize(("filename", "expected"), INVALID)
def test_invalid_state_config_reports_exact_problem(filename: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(TESTDATA / filename, environ={})
    assert caught.value.problems == [message.replace("{dir}", str(TESTDATA)) for message in expected]
    for secret in FORBIDDEN:
        assert secret not in str(caught.value)


def test_every_invalid_state_file_is_in_the_table() -> None:
    assert sorted(path.name for path in TESTDATA.glob("invalid-*.yaml")) == sorted(name for name, _ in INVALID)


def state(section: dict[str, Any], base_dir: Path | None = None) -> Any:
    return config_from_mapping({"accounts": [ACME], "state": section}, base_dir=base_dir).state


def test_local_is_the_default_and_redis_defaults_are_small_timeouts() -> None:
    settings = state({})
    assert settings.backend == "local"
    redis = settings.redis
    assert (redis.url.host, redis.url.port, redis.url.db, redis.url.tls) == ("localhost", 6379, 0, False)
    assert redis.key_prefix == "qss:"
    assert redis.command_timeout_seconds <= 0.25
    assert redis.connect_timeout_seconds <= 1.0
    # The documented takeover bound: lease plus one renewal interval, within 30 s.
    assert settings.leader.lease_seconds + settings.leader.renew_seconds <= 30


def test_the_url_gives_host_port_database_tls_and_credentials() -> None:
    redis = state({"backend": "redis", "redis": {"url": "rediss://app%40qss:p%3Ass@[::1]:6380/3"}}).redis
    assert redis.url == RedisUrl(True, "::1", 6380, 3, "app@qss", Secret("p:ss"))
    assert redis.effective_username == "app@qss"
    assert redis.effective_password == Secret("p:ss")
    assert str(redis.url) == "rediss://app%40qss:<secret>@[::1]:6380/3"


def test_username_and_password_keys_and_a_password_file(tmp_path: Path) -> None:
    (tmp_path / "redis-password").write_text("FILE-PASSWORD\n")
    redis = state(
        {"backend": "redis", "redis": {"username": "qss", "password_file": "redis-password"}}, base_dir=tmp_path
    ).redis
    assert redis.effective_username == "qss"
    assert redis.effective_password == Secret("FILE-PASSWORD")


def test_tls_files_are_read_from_the_configuration_directory(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("pem")
    redis = state(
        {
            "backend": "redis",
            "redis": {
                "url": "rediss://redis/0",
                "ca_file": "ca.pem",
                "cert_file": "client.pem",
                "key_file": "client.key",
            },
        },
        base_dir=tmp_path,
    ).redis
    assert (redis.ca_file, redis.cert_file, redis.key_file) == (
        tmp_path / "ca.pem",
        tmp_path / "client.pem",
        tmp_path / "client.key",
    )


def test_passwords_are_redacted_in_the_summary_and_repr() -> None:
    config = config_from_mapping(
        {"accounts": [ACME], "state": {"backend": "redis", "redis": {"url": "redis://qss:URL-PASSWORD@redis:6379/1"}}}
    )
    summary = json.dumps(redacted_summary(config))
    assert "redis://<secret>@redis:6379/1" in summary  # the whole user-info: a user name may be a token too
    keyed = config_from_mapping(
        {"accounts": [ACME], "state": {"backend": "redis", "redis": {"password": "KEY-PASSWORD"}}}
    )
    text = json.dumps(redacted_summary(keyed)) + repr(keyed) + repr(config) + str(config.state.redis.url)
    for secret in FORBIDDEN:
        assert secret not in summary + text


def test_check_config_accepts_a_redis_state_and_never_prints_its_password(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "accounts": [ACME],
                "state": {"backend": "redis", "redis": {"url": "redis://:URL-PASSWORD@redis:6379/0"}},
            }
        )
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {"accounts": [ACME], "state": {"backend": "redis", "redis": {"url": "redis://:URL-PASSWORD@redis:port/0"}}}
        )
    )
    for config, code in ((path, 0), (bad, 1)):
        result = subprocess.run(
            [sys.executable, "-m", "qss_exporter", "check-config", "--config", str(config)],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
        )
        assert result.returncode == code, result.stdout + result.stderr
        assert "URL-PASSWORD" not in result.stdout + result.stderr
    assert "state.redis.url: not a URL with a valid port, got 'redis://<secret>@redis:port/0'" in result.stderr


@given(
    user=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    password=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12),
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z0-9]{1,10}){0,2}", fullmatch=True),
    port=st.integers(1, 65535),
    db=st.integers(0, 15),
    tls=st.booleans(),
)
def test_a_url_round_trips_and_its_password_never_shows(
    user: str, password: str, host: str, port: int, db: int, tls: bool
) -> None:
    password = f"PW-{password}"  # a marker that no other part of the URL holds
    text = f"{'rediss' if tls else 'redis'}://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{db}"
    url = RedisUrl.parse(text)
    assert (url.tls, url.host, url.port, url.db) == (tls, host, port, db)
    assert url.username == (user or None)
    assert url.password == Secret(password)
    assert RedisUrl.parse(str(url).replace("<secret>", quote(password, safe=""))) == url
    assert "PW-" not in str(url)


@given(st.text(max_size=60))
def test_any_url_text_is_parsed_or_refused_with_a_message_without_its_userinfo(text: str) -> None:
    try:
        shown = str(RedisUrl.parse(f"redis://user:SECRET-{text}@host/0"))
    except ValueError as error:
        shown = str(error)
    assert "SECRET-" not in shown
