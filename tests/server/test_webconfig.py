"""The exporter-toolkit web configuration: accepted as the toolkit documents it, refused with key paths."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from qss_exporter.errors import ConfigError
from qss_exporter.server.webconfig import load_web_config

HASH = "$2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze"  # the toolkit's own sample


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    ca = trustme.CA()
    server = ca.issue_cert("localhost")
    server.cert_chain_pems[0].write_to_path(tmp_path / "server.crt")
    server.private_key_pem.write_to_path(tmp_path / "server.key")
    ca.cert_pem.write_to_path(tmp_path / "ca.crt")
    return tmp_path


def _load(directory: Path, content: dict[str, Any]) -> Any:
    path = directory / "web.yml"
    path.write_text(yaml.safe_dump(content))
    return load_web_config(path)


def _problems(directory: Path, content: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(directory, content)
    prefix = f"{directory / 'web.yml'}: "
    assert all(problem.startswith(prefix) for problem in caught.value.problems)
    return [problem.removeprefix(prefix) for problem in caught.value.problems]


def test_the_toolkit_sample_with_mutual_tls(directory: Path) -> None:
    config = _load(
        directory,
        {
            "tls_server_config": {
                "cert_file": "server.crt",
                "key_file": "server.key",
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": "ca.crt",
                "min_version": "TLS13",
                "cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
            },
            "http_server_config": {"http2": False, "headers": {"X-Frame-Options": "deny"}},
            "basic_auth_users": {"alice": HASH},
            "rate_limit": {"interval": "100ms", "burst": 5},
        },
    )
    assert config.tls.cert_file == directory / "server.crt"  # relative to the file
    assert config.tls.client_auth == ssl.CERT_REQUIRED
    assert config.tls.min_version == ssl.TLSVersion.TLSv1_3
    assert config.tls.ciphers == ("ECDHE-RSA-AES128-GCM-SHA256",)
    assert config.auth.users == {"alice": HASH.encode()}
    assert config.auth.headers == ((b"x-frame-options", b"deny"),)
    assert (config.auth.rate_interval, config.auth.rate_burst) == (0.1, 5)


def test_basic_auth_alone_keeps_plain_http(directory: Path) -> None:
    config = _load(directory, {"basic_auth_users": {"alice": HASH}})
    assert config.tls is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"tls_server_config": {"cert_file": "server.crt"}}, ["tls_server_config.key_file: missing"]),
        (
            {"tls_server_config": {"cert_file": "server.crt", "key_file": "absent.key"}},
            ["tls_server_config.key_file: cannot read"],
        ),
        (
            {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "client_auth_type": "Bogus"}},
            ["tls_server_config.client_auth_type: must be one of NoClientCert"],
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "server.crt",
                    "key_file": "server.key",
                    "client_auth_type": "RequireAnyClientCert",
                    "client_ca_file": "ca.crt",
                }
            },
            ["tls_server_config.client_auth_type: RequireAnyClientCert is not supported"],
        ),
        (
            {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "client_ca_file": "ca.crt"}},
            ["tls_server_config.client_auth_type: client CAs have been configured without a client auth policy"],
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "server.crt",
                    "key_file": "server.key",
                    "client_auth_type": "RequireAndVerifyClientCert",
                }
            },
            ["tls_server_config.client_ca_file: missing"],
        ),
        (
            {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "min_version": "SSL3"}},
            ["tls_server_config.min_version: must be one of TLS10, TLS11, TLS12, TLS13, got 'SSL3'"],
        ),
        (
            {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "cipher_suites": ["RC4"]}},
            ["tls_server_config.cipher_suites[0]: unknown cipher suite 'RC4'"],
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "server.crt",
                    "key_file": "server.key",
                    "curve_preferences": ["X25519"],
                }
            },
            ["tls_server_config.curve_preferences: not supported"],
        ),
        ({"tls_server_config": {"cert": "-----BEGIN"}}, ["tls_server_config.cert: inline certificates"]),
        ({"basic_auth_users": {"alice": "plain-text-password"}}, ["basic_auth_users.alice: not a bcrypt hash"]),
        (
            {"http_server_config": {"headers": {"Server": "x"}}},
            ["http_server_config.headers.Server: can not be configured"],
        ),
        (
            {"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
            ["http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin, got 'allow'"],
        ),
        ({"rate_limit": {"interval": "soon", "burst": 1}}, ["rate_limit.interval: expected a duration"]),
        ({"basic_auth_user": {"alice": HASH}}, ["basic_auth_user: unknown key"]),
    ],
)
def test_refused_with_the_key_path(directory: Path, content: dict[str, Any], expected: list[str]) -> None:
    problems = _problems(directory, content)
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), problem


def test_a_password_hash_is_never_echoed(directory: Path) -> None:
    problems = _problems(directory, {"basic_auth_users": {"alice": "$2y$10$short"}})
    assert not any("$2y$10$short" in problem for problem in problems)


def test_unreadable_and_invalid_yaml(directory: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_web_config(directory / "absent.yml")
    (directory / "bad.yml").write_text("basic_auth_users: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_web_config(directory / "bad.yml")
