"""Tests for qss_exporter.config: invalid-file table, interpolation, `*_file` secrets, redaction, example."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from qss_exporter.config import (
    Config,
    HostPort,
    Secret,
    config_from_mapping,
    load_config,
    redacted_summary,
)
from qss_exporter.errors import ConfigError

TESTDATA = Path(__file__).parent.absolute() / "testdata" / "config"
EXAMPLE = Path(__file__).parent.parent / "config.example.yaml"
TABLE_ENVIRON = {"QSS_TEST_EMPTY": ""}
ACME = {"name": "acme", "account_id": "abc123", "webhook_secret_token": "s3cret-token"}
MISSING_SECRET = (
    "missing (give webhook_secret_token or webhook_secret_token_file, "
    "or set webhook.insecure_skip_verification for local testing)"
)
ACCOUNT_KEYS = (
    "name, account_id, webhook_secret_token, webhook_secret_token_file, client_id, client_secret, client_secret_file, "
    "websocket, sub_accounts, undeclared_sub_accounts"
)

# Every section, in the order the message lists them (sections are added by several features at once).
TOP_LEVEL_KEYS = ", ".join(Config.model_fields)

# One problem per file, each with its exact message; "{dir}" stands for TESTDATA.
INVALID: list[tuple[str, list[str]]] = [
    ("invalid-yaml-syntax.yaml", ["{dir}/invalid-yaml-syntax.yaml:3:24: mapping values are not allowed here"]),
    ("invalid-yaml-duplicate-key.yaml", ["{dir}/invalid-yaml-duplicate-key.yaml:3:1: duplicate key 'listen'"]),
    ("invalid-top-level-list.yaml", ["top level: expected a mapping, got a list"]),
    ("invalid-empty.yaml", ["accounts: missing"]),
    (
        "invalid-unknown-section.yaml",
        [f"listeners: unknown key (allowed: {TOP_LEVEL_KEYS})"],
    ),
    ("invalid-unknown-account-key.yaml", [f"accounts[0].clientid: unknown key (allowed: {ACCOUNT_KEYS})"]),
    ("invalid-section-not-mapping.yaml", ["limits: expected a mapping, got 1000"]),
    ("invalid-listen-port.yaml", ["listen.webhook: port must be 0-65535, got '0.0.0.0:70000'"]),
    (
        "invalid-listen-ipv6-brackets.yaml",
        ["listen.metrics: put an IPv6 host in brackets (e.g. [::]:8080), got '::1:9877'"],
    ),
    (
        "invalid-listen-same-address.yaml",
        ["listen.metrics: conflicts with listen.webhook (0.0.0.0:9000); use another port"],
    ),
    (
        "invalid-webhook-path.yaml",
        ["webhook.path: must start with '/' and hold no spaces, '?' or '#', got 'zoom/webhook'"],
    ),
    ("invalid-webhook-tolerance.yaml", ["webhook.timestamp_tolerance_seconds: must be greater than 0, got 0"]),
    ("invalid-webhook-max-body-bytes.yaml", ["webhook.max_body_bytes: must be at least 1024, got 100"]),
    ("invalid-webhook-max-connections.yaml", ["webhook.max_connections: expected an integer, got 'many'"]),
    (
        "invalid-webhook-insecure-type.yaml",
        ["webhook.insecure_skip_verification: expected true or false, got 'maybe'"],
    ),
    ("invalid-accounts-empty.yaml", ["accounts: must not be empty"]),
    (
        "invalid-account-name.yaml",
        [
            "accounts[0].name: must be 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit, "
            "got 'acme corp'"
        ],
    ),
    ("invalid-account-name-duplicate.yaml", ["accounts[1].name: duplicate of accounts[0].name ('acme')"]),
    ("invalid-account-id-missing.yaml", ["accounts[0].account_id: missing"]),
    (
        "invalid-account-id-duplicate.yaml",
        ["accounts[1].account_id: duplicate of accounts[0].account_id ('abc123')"],
    ),
    (
        "invalid-account-id-number.yaml",
        ["accounts[0].account_id: expected a string, got 12345 (put it in quotes)"],
    ),
    ("invalid-secret-missing.yaml", [f"accounts[0].webhook_secret_token: {MISSING_SECRET}"]),
    ("invalid-secret-empty.yaml", ["accounts[0].webhook_secret_token: must not be empty"]),
    ("invalid-secret-empty-list.yaml", ["accounts[0].webhook_secret_token: must not be empty"]),
    (
        "invalid-secret-not-string.yaml",
        ["accounts[0].webhook_secret_token: expected a string or a list of strings, got <secret>"],
    ),
    (
        "invalid-secret-both.yaml",
        ["accounts[0].webhook_secret_token_file: give webhook_secret_token or webhook_secret_token_file, not both"],
    ),
    (
        "invalid-secret-file-unreadable.yaml",
        ["accounts[0].webhook_secret_token_file: cannot read {dir}/no-such-file.txt: No such file or directory"],
    ),
    (
        "invalid-client-secret-without-id.yaml",
        ["accounts[0].client_id: missing (client_secret is set; give both or neither)"],
    ),
    (
        "invalid-client-id-without-secret.yaml",
        ["accounts[0].client_secret: missing (client_id is set; give both or neither)"],
    ),
    (
        "invalid-websocket-without-credentials.yaml",
        [
            "accounts[0].websocket: needs the account's client_id and client_secret (the WebSocket connects with a "
            "Server-to-Server OAuth token)"
        ],
    ),
    ("invalid-websocket-subscription-missing.yaml", ["accounts[0].websocket.subscription_id: missing"]),
    (
        "invalid-websocket-subscription-duplicate.yaml",
        ["accounts[1].websocket.subscription_id: duplicate of accounts[0].websocket.subscription_id ('sub-1')"],
    ),
    (
        "invalid-websocket-url.yaml",
        ["accounts[0].websocket.url: expected a ws:// or wss:// URL, got 'https://ws.zoom.us/ws'"],
    ),
    (
        "invalid-websocket-grant.yaml",
        [
            "accounts[0].websocket.grant_type: must be one of 'auto', 'account_credentials' or 'client_credentials', "
            "got 'password'"
        ],
    ),
    (
        "invalid-websocket-reconnect-range.yaml",
        ["websocket.reconnect_max_seconds: must be at least reconnect_min_seconds (30), got 5"],
    ),
    (
        "invalid-env-unset.yaml",
        [
            "accounts[0].webhook_secret_token: ${QSS_TEST_UNSET} is not set (give ${QSS_TEST_UNSET:-default} for a "
            "default)"
        ],
    ),
    ("invalid-env-empty.yaml", ["accounts[0].webhook_secret_token: empty after interpolating ${QSS_TEST_EMPTY}"]),
    (
        "invalid-env-syntax.yaml",
        [
            "webhook.path: invalid reference '${HOOK' at character 6 (use ${VAR} or ${VAR:-default}; write $${ for "
            "a literal ${)"
        ],
    ),
    ("invalid-zoom-url.yaml", ["zoom.api_base_url: expected an http(s) URL, got 'ftp://api.zoom.us/v2'"]),
    ("invalid-site-cidr.yaml", ["sites[0].cidrs[1]: not an IPv4 or IPv6 network, got '10.300.0.0/16'"]),
    ("invalid-site-cidrs-empty.yaml", ["sites[0].cidrs: must not be empty"]),
    ("invalid-site-name-duplicate.yaml", ["sites[1].name: duplicate of sites[0].name ('leeds')"]),
    (
        "invalid-pipeline-dedupe-window.yaml",
        [
            "pipeline.dedupe_window_seconds: must be at least 7200 (Zoom retries deliveries for about 85 minutes), "
            "got 3600"
        ],
    ),
    ("invalid-pipeline-dedupe-max-entries.yaml", ["pipeline.dedupe_max_entries: must be at least 1000, got 10"]),
    ("invalid-limits-max-series.yaml", ["limits.max_series: expected an integer, got 1.5"]),
    (
        "invalid-histogram-family.yaml",
        ["histograms.buckets.media_latency_seconds: expected a zoom_qss_ metric name, got 'media_latency_seconds'"],
    ),
    (
        "invalid-histogram-order.yaml",
        [
            "histograms.buckets.zoom_qss_media_latency_seconds[2]: must be greater than the bucket before it (0.1), "
            "got 0.05"
        ],
    ),
    ("invalid-histogram-empty.yaml", ["histograms.buckets.zoom_qss_media_latency_seconds: must not be empty"]),
    (
        "invalid-histogram-infinite.yaml",
        ["histograms.buckets.zoom_qss_media_latency_seconds[1]: must be a finite number, got inf"],
    ),
    ("invalid-labels-type.yaml", ["labels.client_os: expected true or false, got 'sometimes'"]),
    ("invalid-log-level.yaml", ["log.level: must be one of 'debug', 'info', 'warning' or 'error', got 'verbose'"]),
]


def problems_of(data: dict[str, Any], environ: dict[str, str] | None = None, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(data, environ={} if environ is None else environ, base_dir=base_dir)
    return caught.value.problems


# ------------------------------------------------------------------------------------ invalid files


@pytest.mark.parametrize(("filename", "expected"), INVALID)
def test_invalid_config_reports_exact_problem(filename: str, expected: list[str]) -> None:
    path = TESTDATA / filename
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=TABLE_ENVIRON)
    assert caught.value.problems == [message.replace("{dir}", str(TESTDATA)) for message in expected]
    assert caught.value.source == str(path)


def test_every_invalid_file_is_in_the_table() -> None:
    assert sorted(path.name for path in TESTDATA.glob("invalid-*.yaml")) == sorted(name for name, _ in INVALID)


def test_several_problems_are_reported_together_in_file_order() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(TESTDATA / "several-problems.yaml", environ={})
    assert caught.value.problems == [
        "listen.webhook: port must be 0-65535, got '0.0.0.0:99999'",
        "webhook.path: must start with '/' and hold no spaces, '?' or '#', got 'zoom/webhook'",
        "webhook.max_connections: must be at least 16, got 0",
        "accounts[0].webhook_secret_token: ${QSS_TEST_UNSET} is not set (give ${QSS_TEST_UNSET:-default} for a "
        "default)",
        "accounts[0].client_id: missing (client_secret is set; give both or neither)",
        "accounts[1].name: must be 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit, "
        "got 'bad name'",
        f"accounts[1].webhook_secret_token_file: cannot read {TESTDATA}/no-such-file.txt: No such file or directory",
        f"accounts[1].webhok_secret_token: unknown key (allowed: {ACCOUNT_KEYS})",
        "sites[0].cidrs[0]: not an IPv4 or IPv6 network, got '10.20.0.0/33'",
        "log.level: must be one of 'debug', 'info', 'warning' or 'error', got 'loud'",
    ]
    assert str(caught.value).startswith(f"10 configuration problem(s) in {TESTDATA / 'several-problems.yaml'}:")


def test_unreadable_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml")
    assert caught.value.problems == [f"{tmp_path / 'absent.yaml'}: cannot read: No such file or directory"]


def test_mapping_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(["accounts"])  # type: ignore[arg-type]  # the runtime check is what is tested
    assert caught.value.problems == ["top level: expected a mapping, got a list"]


# ---------------------------------------------------------------------------------- valid configs


def test_minimal_config_gets_documented_defaults() -> None:
    config = load_config(TESTDATA / "valid-minimal.yaml", environ={})
    assert config.listen.webhook == HostPort("0.0.0.0", 8080)
    assert str(config.listen.metrics) == "0.0.0.0:9877"
    assert config.webhook.path == "/zoom/webhook"
    assert config.webhook.timestamp_tolerance_seconds == 300
    assert config.webhook.max_body_bytes == 1_048_576
    assert config.webhook.max_connections == 4096
    assert config.webhook.header_timeout_seconds == config.webhook.body_timeout_seconds == 5.0
    assert config.webhook.shed_after_seconds == 1.0
    assert config.listen.metrics_web_config_file is None
    assert config.webhook.insecure_skip_verification is False
    assert config.accounts[0].webhook_secret_token == (Secret("s3cret-token"),)
    assert config.accounts[0].client_id is None
    assert config.zoom.api_base_url == "https://api.zoom.us/v2"
    labels = config.labels
    assert (labels.network_type, labels.site, labels.data_center, labels.client_os, labels.client_version) == (
        True,
        True,
        False,
        False,
        False,
    )
    assert config.sites == ()
    assert config.pipeline.dedupe_window_seconds == 7_200
    assert config.limits.max_series == 200_000
    assert dict(config.histograms.buckets) == {}
    assert (config.log.level, config.log.format) == ("info", "plain")


def test_config_is_frozen() -> None:
    config = config_from_mapping({"accounts": [ACME]})
    with pytest.raises(ValidationError):
        config.log = config.log


def test_full_config_values() -> None:
    config = config_from_mapping(
        {
            "listen": {"webhook": "[::1]:0", "metrics": "localhost:0"},
            "accounts": [ACME | {"webhook_secret_token": ["new", "old"], "client_id": "cid", "client_secret": "cs"}],
            "zoom": {"api_base_url": "http://127.0.0.1:9999/v2/"},
            "sites": [{"name": "leeds", "cidrs": ["10.20.1.5/16", "2001:db8::/32"]}],
            "histograms": {"buckets": {"zoom_qss_media_latency_seconds": [0.01, "0.05", 1]}},
        }
    )
    assert config.listen.webhook == HostPort("::1", 0)
    assert str(config.listen.webhook) == "[::1]:0"
    assert config.accounts[0].webhook_secret_token == (Secret("new"), Secret("old"))
    assert config.accounts[0].client_secret == Secret("cs")
    assert config.zoom.api_base_url == "http://127.0.0.1:9999/v2"
    assert [str(network) for network in config.sites[0].cidrs] == ["10.20.0.0/16", "2001:db8::/32"]
    assert config.histograms.buckets == {"zoom_qss_media_latency_seconds": (0.01, 0.05, 1.0)}


def test_insecure_skip_verification_allows_accounts_without_secret() -> None:
    account = {"name": "acme", "account_id": "abc123"}
    config = config_from_mapping({"webhook": {"insecure_skip_verification": "true"}, "accounts": [account]})
    assert config.accounts[0].webhook_secret_token == ()


def test_models_enforce_secret_presence_without_the_loader() -> None:
    with pytest.raises(ValidationError, match="webhook_secret_token"):
        Config.model_validate({"accounts": [{"name": "acme", "account_id": "abc123"}]})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:8080", HostPort("0.0.0.0", 8080)),
        ("[::]:0", HostPort("::", 0)),
        ("exporter.example.com:65535", HostPort("exporter.example.com", 65535)),
    ],
)
def test_host_port_parses(text: str, expected: HostPort) -> None:
    assert HostPort.parse(text) == expected
    assert str(HostPort.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8080", "expected host:port (e.g. 0.0.0.0:8080), got '8080'"),
        (":8080", "host is empty (use 0.0.0.0:PORT for all interfaces), got ':8080'"),
        ("[nope]:80", "'nope' in brackets is not an IPv6 address, got '[nope]:80'"),
        ("300.1.1.1:80", "'300.1.1.1' is not an IPv4 address, got '300.1.1.1:80'"),
        ("bad_host:80", "'bad_host' is not an IP address or host name, got 'bad_host:80'"),
        ("0.0.0.0:-1", "port must be 0-65535, got '0.0.0.0:-1'"),
    ],
)
def test_host_port_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        HostPort.parse(text)


def test_listeners_may_share_port_zero() -> None:
    config = config_from_mapping({"listen": {"webhook": "127.0.0.1:0", "metrics": "127.0.0.1:0"}, "accounts": [ACME]})
    assert config.listen.webhook.port == config.listen.metrics.port == 0


# ---------------------------------------------------------------------------------- interpolation


def test_interpolation_forms() -> None:
    environ = {"ACCOUNT": "abc123", "TOKEN": "s3cret", "EMPTY": "", "PATH_PART": "zoom"}
    config = config_from_mapping(
        {
            "webhook": {"path": "/${PATH_PART}/${MISSING:-hook}"},
            "accounts": [
                {
                    "name": "${NAME:-acme}",
                    "account_id": "${ACCOUNT}",
                    "webhook_secret_token": "${TOKEN}",
                    "client_id": "$${NOT_A_VAR} costs $5 and ${EMPTY:-fallback}",
                    "client_secret": "${TOKEN:-unused}",
                }
            ],
        },
        environ=environ,
    )
    assert config.webhook.path == "/zoom/hook"
    assert config.accounts[0].name == "acme"
    assert config.accounts[0].account_id == "abc123"
    assert config.accounts[0].webhook_secret_token == (Secret("s3cret"),)
    assert config.accounts[0].client_id == "${NOT_A_VAR} costs $5 and fallback"
    assert config.accounts[0].client_secret == Secret("s3cret")


def test_numbers_and_booleans_from_environment_validate() -> None:
    environ = {"PORT": "9100", "INFLIGHT": "512", "INSECURE": "true", "BUCKET": "0.25"}
    config = config_from_mapping(
        {
            "listen": {"metrics": "0.0.0.0:${PORT}"},
            "webhook": {"max_connections": "${INFLIGHT}", "insecure_skip_verification": "${INSECURE}"},
            "accounts": [{"name": "acme", "account_id": "abc123"}],
            "histograms": {"buckets": {"zoom_qss_media_jitter_seconds": ["0.1", "${BUCKET}"]}},
        },
        environ=environ,
    )
    assert config.listen.metrics.port == 9100
    assert config.webhook.max_connections == 512
    assert config.webhook.insecure_skip_verification is True
    assert config.histograms.buckets["zoom_qss_media_jitter_seconds"] == (0.1, 0.25)


def test_bad_number_from_environment_names_the_value() -> None:
    problems = problems_of({"webhook": {"max_connections": "${N}"}, "accounts": [ACME]}, environ={"N": "lots"})
    assert problems == ["webhook.max_connections: expected an integer, got 'lots'"]


def test_every_unset_variable_is_reported_once() -> None:
    problems = problems_of({"webhook": {"path": "/${A}/${B}"}, "accounts": [ACME | {"account_id": "${A}"}]})
    assert problems == [
        "webhook.path: ${A} is not set (give ${A:-default} for a default)",
        "webhook.path: ${B} is not set (give ${B:-default} for a default)",
        "accounts[0].account_id: ${A} is not set (give ${A:-default} for a default)",
    ]


def test_empty_secret_after_interpolation_names_the_variable() -> None:
    accounts = [ACME, ACME | {"name": "b", "account_id": "b", "webhook_secret_token": ["ok", "${ZOOM_SECRET}"]}]
    accounts.append(ACME | {"name": "c", "account_id": "c", "webhook_secret_token": "${ZOOM_SECRET}"})
    problems = problems_of({"accounts": accounts}, environ={"ZOOM_SECRET": " "})
    assert problems == [
        "accounts[1].webhook_secret_token[1]: empty after interpolating ${ZOOM_SECRET}",
        "accounts[2].webhook_secret_token: empty after interpolating ${ZOOM_SECRET}",
    ]


def test_keys_are_not_interpolated() -> None:
    problems = problems_of({"accounts": [ACME], "${LOG}": {}}, environ={"LOG": "log"})
    assert problems == [f"${{LOG}}: unknown key (allowed: {TOP_LEVEL_KEYS})"]


def test_environ_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QSS_TEST_ACCOUNT_ID", "from-env")
    config = config_from_mapping({"accounts": [ACME | {"account_id": "${QSS_TEST_ACCOUNT_ID}"}]})
    assert config.accounts[0].account_id == "from-env"


# Strings built from the pieces interpolation reacts to, so `${`, `$${` and `:-` occur often.
DOLLAR_TEXT = st.lists(st.sampled_from(["$", "{", "}", ":-", "-", ":", "A", "UNSET", "SET", "EMPTY", " "])).map("".join)


@given(st.one_of(st.text(), DOLLAR_TEXT))
def test_interpolation_raises_nothing_but_config_error(text: str) -> None:
    data = {
        "listen": {"webhook": text},
        "webhook": {"path": text, "max_connections": text, "shed_after_seconds": text},
        "accounts": [{"name": text, "account_id": text, "webhook_secret_token": [text], "client_secret": text}],
        "sites": [{"name": "s", "cidrs": [text]}],
        "log": {"level": text},
    }
    with contextlib.suppress(ConfigError):  # any other exception fails the test
        config_from_mapping(data, environ={"SET": "value", "EMPTY": "", "A": "$"})


@given(st.one_of(st.text(min_size=1), DOLLAR_TEXT.filter(bool)))
def test_escaped_text_survives_interpolation(text: str) -> None:
    escaped = text.replace("${", "$${")
    config = config_from_mapping({"accounts": [ACME | {"account_id": escaped}]}, environ={"SET": "value"})
    assert config.accounts[0].account_id == text


# ---------------------------------------------------------------------------------- *_file secrets


def test_secret_files_with_rotation(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "webhook").write_text("  new-token\r\n\n old-token \n")
    (tmp_path / "secrets" / "client").write_text("client-s3cret\n")
    account = {
        "name": "acme",
        "account_id": "abc123",
        "webhook_secret_token_file": "secrets/webhook",
        "client_id": "cid",
        "client_secret_file": str(tmp_path / "secrets" / "client"),
    }
    config = config_from_mapping({"accounts": [account]}, base_dir=tmp_path)
    loaded = config.accounts[0]
    assert loaded.webhook_secret_token == (Secret("new-token"), Secret("old-token"))
    assert loaded.webhook_secret_token_file == tmp_path / "secrets" / "webhook"
    assert loaded.client_secret == Secret("client-s3cret")


def test_relative_secret_file_resolves_against_config_directory(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    config_text = "accounts:\n  - name: acme\n    account_id: abc123\n    webhook_secret_token_file: token\n"
    (tmp_path / "config.yaml").write_text(config_text)
    config = load_config(tmp_path / "config.yaml", environ={})
    assert config.accounts[0].webhook_secret_token == (Secret("s3cret"),)


@pytest.mark.parametrize(
    ("content", "key", "message"),
    [
        (None, "webhook_secret_token_file", "cannot read {dir}: Is a directory"),
        ("\n  \n", "webhook_secret_token_file", "{dir}/secret holds no secret (the file is empty)"),
        ("one\ntwo\n", "client_secret_file", "{dir}/secret holds 2 lines; client_secret_file takes one secret"),
    ],
)
def test_bad_secret_files(tmp_path: Path, content: str | None, key: str, message: str) -> None:
    path = tmp_path
    if content is not None:
        path = tmp_path / "secret"
        path.write_text(content)
    account: dict[str, Any] = {"name": "acme", "account_id": "abc123", key: str(path)}
    if key == "client_secret_file":
        account |= {"webhook_secret_token": "s3cret", "client_id": "cid"}
    problems = problems_of({"accounts": [account]})
    assert problems == [f"accounts[0].{key}: {message.replace('{dir}', str(tmp_path))}"]


# ---------------------------------------------------------------------------------------- secrets


def test_secret_type() -> None:
    secret = Secret("hunter2")
    assert repr(secret) == str(secret) == f"{secret}" == "<secret>"
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2")
    assert secret != Secret("hunter3")
    assert secret != "hunter2"
    assert len({secret, Secret("hunter2")}) == 1


def test_secrets_never_shown(tmp_path: Path) -> None:
    (tmp_path / "rotation").write_text("FILE-SECRET-1\nFILE-SECRET-2\n")
    accounts: list[dict[str, Any]] = [
        ACME | {"webhook_secret_token": ["INLINE-SECRET-1", "INLINE-SECRET-2"], "client_id": "cid"},
        {"name": "b", "account_id": "b", "webhook_secret_token_file": "rotation", "client_id": "c"},
    ]
    accounts[0]["client_secret"] = "${CLIENT}"
    accounts[1]["client_secret"] = "INLINE-SECRET-3"
    config = config_from_mapping({"accounts": accounts}, environ={"CLIENT": "ENV-SECRET"}, base_dir=tmp_path)
    summary = redacted_summary(config)
    shown = [repr(config), str(config), f"{config!r}", json.dumps(summary), str(config.model_dump())]
    for text in shown:
        assert "SECRET" not in text
    assert summary["accounts"][0]["webhook_secret_token"] == ["<secret>", "<secret>"]
    assert summary["accounts"][1]["client_secret"] == "<secret>"
    assert summary["accounts"][1]["webhook_secret_token_file"] == str(tmp_path / "rotation")


@pytest.mark.parametrize(
    "account",
    [
        {"webhook_secret_token": 12345678},
        {"webhook_secret_token": [True, "${BROKEN-SECRET-VALUE"]},
        {"webhook_secret_token": "x", "client_id": "cid", "client_secret": 87654321},
        {"webhook_secret_token": "x", "client_secret": "WRONG-SECRET-VALUE"},
        {"webhook_secret_token": {"nested": "MAPPING-SECRET-VALUE"}},
    ],
)
def test_secrets_never_in_error_messages(account: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"accounts": [{"name": "acme", "account_id": "abc"} | account]}, environ={})
    text = str(caught.value)
    for forbidden in ("SECRET-VALUE", "12345678", "87654321", "True"):
        assert forbidden not in text


def test_url_passwords_and_header_strings_are_never_shown() -> None:
    config = config_from_mapping(
        {
            "accounts": [ACME],
            "zoom": {"api_base_url": "https://proxy-user:URL-SECRET-1@proxy.example/v2"},
            "otlp": {
                "enabled": True,
                "endpoint": "https://otel:URL-SECRET-2@otel.example:4318/otlp?api-key=URL-SECRET-3",
                "headers": "authorization=Bearer%20HEADER-SECRET-4,x-scope-orgid=tenant-1",
            },
        }
    )
    assert config.otlp.endpoint == "https://otel:URL-SECRET-2@otel.example:4318/otlp?api-key=URL-SECRET-3"  # as is
    assert {name: value.reveal() for name, value in config.otlp.headers.items()} == {
        "authorization": "Bearer HEADER-SECRET-4",
        "x-scope-orgid": "tenant-1",
    }
    summary = json.dumps(redacted_summary(config))
    assert "SECRET" not in summary
    assert "https://<secret>@otel.example:4318/otlp?api-key=<secret>" in summary
    assert '"headers": {"authorization": "<secret>", "x-scope-orgid": "<secret>"}' in summary


@pytest.mark.parametrize(
    "otlp",
    [
        {"endpoint": "ftp://user:URL-SECRET-VALUE@collector"},
        {"headers": "Bearer HEADER-SECRET-VALUE"},
        {"headers": "authorization=ok,HEADER-SECRET-VALUE"},
        {"headers": ["authorization", "HEADER-SECRET-VALUE"]},
        {"headers": {"bad header name": "HEADER-SECRET-VALUE"}},
    ],
)
def test_otlp_secrets_never_in_error_messages(otlp: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"accounts": [ACME], "otlp": otlp})
    assert caught.value.problems[0].startswith("otlp.")
    assert "SECRET-VALUE" not in str(caught.value)


def test_yaml_syntax_error_does_not_echo_the_line(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text('accounts:\n  - webhook_secret_token: "YAML-SECRET-VALUE\n')
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "c.yaml")
    assert "YAML-SECRET-VALUE" not in str(caught.value)
    assert caught.value.problems[0].startswith(f"{tmp_path / 'c.yaml'}:3:1: ")


# ------------------------------------------------------------------------- config.example.yaml contract

EXAMPLE_ENVIRON = {
    "ZOOM_ACCOUNT_ID": "acme-account-id",
    "ZOOM_WEBHOOK_SECRET_TOKEN": "acme-webhook-token",
    "ZOOM_CLIENT_ID": "acme-client-id",
    "ZOOM_CLIENT_SECRET": "acme-client-secret",
    "GLOBEX_ACCOUNT_ID": "globex-account-id",
    "GLOBEX_CLIENT_ID": "globex-client-id",
}


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((model for arg in get_args(annotation) if (model := _inner_model(arg))), None)


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key path the model accepts; list items share their list's path."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        if (inner := _inner_model(field.annotation)) is not None:
            keys |= model_keys(inner, f"{prefix}{name}.")
    return keys


def yaml_keys(node: Any, model: type[BaseModel] | None, prefix: str = "") -> set[str]:
    """Every key path in a YAML tree, descending only where the model has sub-models."""
    if isinstance(node, list):
        return set().union(*(yaml_keys(item, model, prefix) for item in node))
    if not isinstance(node, dict) or model is None:
        return set()
    keys: set[str] = set()
    for key, value in node.items():
        keys.add(prefix + key)
        field = model.model_fields.get(key)
        keys |= yaml_keys(value, _inner_model(field.annotation) if field else None, f"{prefix}{key}.")
    return keys


def test_example_config_loads(tmp_path: Path) -> None:
    (tmp_path / "globex_webhook_secret_token").write_text("globex-new\nglobex-old\n")
    (tmp_path / "globex_client_secret").write_text("globex-client-secret\n")
    config = load_config(EXAMPLE, environ=EXAMPLE_ENVIRON | {"SECRETS_DIR": str(tmp_path)})
    assert [account.name for account in config.accounts] == ["acme", "globex"]
    assert config.accounts[1].webhook_secret_token == (Secret("globex-new"), Secret("globex-old"))
    assert config.accounts[0].client_secret == Secret("acme-client-secret")


def test_example_config_has_every_key_and_only_known_keys() -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    assert yaml_keys(example, Config) == model_keys(Config)


def test_example_config_comments_every_key() -> None:
    text = EXAMPLE.read_text()
    lines = text.splitlines()
    uncommented: list[str] = []

    def walk(node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                line = key.start_mark.line
                if " #" not in lines[line] and not lines[line - 1].lstrip().startswith("#"):
                    uncommented.append(lines[line].strip())
                walk(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)

    root = yaml.compose(text)
    assert root is not None
    walk(root)
    assert uncommented == []


def test_otlp_logs_hash_key_can_come_from_a_file(tmp_path: Path) -> None:
    key = tmp_path / "hash-key"
    key.write_text("k3y-from-file\n")
    config = config_from_mapping(
        {
            "accounts": [{"name": "acme", "account_id": "a", "webhook_secret_token": "s"}],
            "otlp": {"enabled": True, "logs": {"enabled": True, "participant_id_hash_key_file": str(key)}},
        }
    )
    secret = config.otlp.logs.participant_id_hash_key
    assert secret is not None
    assert secret.reveal() == "k3y-from-file"
    assert "k3y" not in repr(config)
