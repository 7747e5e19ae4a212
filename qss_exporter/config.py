"""Typed, frozen configuration: the models, their checks, and `load_config` (YAML + `${VAR}` + `*_file`).

The raw side (parsing, interpolation, file secrets, error wording) lives in config_loading.py.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self, cast
from urllib.parse import unquote

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from qss_exporter import config_loading as _loading
from qss_exporter.config_loading import Problem, problems_error
from qss_exporter.errors import ConfigError
from qss_exporter.redaction import redact_url, redact_urls_in

__all__ = [
    "AccountConfig",
    "AccountWebSocketConfig",
    "Config",
    "DetailConfig",
    "DetailPlainConfig",
    "DetailWorstConfig",
    "HistogramsConfig",
    "HostPort",
    "IPNetwork",
    "LabelsConfig",
    "LeaderConfig",
    "LimitsConfig",
    "ListenConfig",
    "LogConfig",
    "OtlpConfig",
    "OtlpLogsConfig",
    "PipelineConfig",
    "PollerConfig",
    "RedisConfig",
    "RedisUrl",
    "Secret",
    "SiteConfig",
    "StateConfig",
    "WebSocketConfig",
    "WebhookConfig",
    "ZoomConfig",
    "changed_summary",
    "config_from_mapping",
    "load_config",
    "redacted_summary",
]

_REDACTED = "<secret>"
# Keys whose values are secrets: never echoed in an error; `KEY_file` reads them from a file.
_MULTI_SECRET_KEYS = ("webhook_secret_token",)
_SINGLE_SECRET_KEYS = ("client_secret", "hash_key", "participant_id_hash_key", "password")
# `headers` (OTLP) carry credentials too: their values are never echoed in an error either.
_SECRET_KEYS = frozenset((*_MULTI_SECRET_KEYS, *_SINGLE_SECRET_KEYS, "headers"))
_INSECURE = "insecure_skip_verification"
_BASE_DIR = "base_dir"  # validation context: where relative file paths start
_MISSING_SECRET = (
    "missing (give webhook_secret_token or webhook_secret_token_file, "
    "or set webhook.insecure_skip_verification for local testing)"
)
_WEBSOCKET_CREDENTIALS = (
    "needs the account's client_id and client_secret (the WebSocket connects with a Server-to-Server OAuth token)"
)


class Secret:
    """A secret string that never shows itself: `repr`, `str` and serialisation all give `<secret>`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; call it only where the secret is used (HMAC, OAuth)."""
        return self._value

    def __repr__(self) -> str:
        return _REDACTED

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        serializer = core_schema.plain_serializer_function_ser_schema(lambda _: _REDACTED)
        return core_schema.no_info_plain_validator_function(cls._validate, serialization=serializer)

    @classmethod
    def _validate(cls, value: object) -> Secret:
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str):
            raise problems_error([((), f"expected a string, got {_loading.describe(value, secret=True)}")])
        # Surrounding whitespace is never part of a Zoom token; it is a stray newline from `echo` or a file.
        if not value.strip():
            raise PydanticCustomError(_loading.SECRET_EMPTY_ERROR, "must not be empty")
        return cls(value.strip())


_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


@dataclass(frozen=True, slots=True)
class HostPort:
    """A listen address; `host` has no brackets (ready for bind), `str()` gives `host:port` / `[v6]:port`."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> HostPort:
        """Parse `host:port`; raises ValueError naming what is wrong."""
        host, colon, port = text.rpartition(":")
        if not colon:
            raise ValueError(f"expected host:port (e.g. 0.0.0.0:8080), got {text!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            if not _is_ip(host, ipaddress.IPv6Address):
                raise ValueError(f"{host!r} in brackets is not an IPv6 address, got {text!r}")
        elif ":" in host:
            raise ValueError(f"put an IPv6 host in brackets (e.g. [::]:8080), got {text!r}")
        elif not host:
            raise ValueError(f"host is empty (use 0.0.0.0:PORT for all interfaces), got {text!r}")
        elif re.fullmatch(r"[0-9.]+", host) and not _is_ip(host, ipaddress.IPv4Address):
            raise ValueError(f"{host!r} is not an IPv4 address, got {text!r}")
        elif not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{host!r} is not an IP address or host name, got {text!r}")
        if not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
            raise ValueError(f"port must be 0-65535, got {text!r}")
        return cls(host, int(port))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        serializer = core_schema.plain_serializer_function_ser_schema(str)
        return core_schema.no_info_plain_validator_function(cls._validate, serialization=serializer)

    @classmethod
    def _validate(cls, value: object) -> HostPort:
        if isinstance(value, HostPort):
            return value
        if not isinstance(value, str):
            raise problems_error([((), f"expected a string host:port, got {_loading.describe(value)}")])
        try:
            return cls.parse(value)
        except ValueError as exc:
            raise problems_error([((), str(exc))]) from None


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """A `redis://` or `rediss://` URL, parsed; `str()` shows it with any password as `<secret>`."""

    tls: bool
    host: str  # no brackets (ready to connect)
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: Secret | None = None

    def __str__(self) -> str:
        user = urllib.parse.quote(self.username, safe="") if self.username else ""
        userinfo = f"{user}:{_REDACTED}@" if self.password is not None else f"{user}@" if user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{userinfo}{host}:{self.port}/{self.db}"

    @classmethod
    def parse(cls, text: str) -> RedisUrl:
        """Parse a Redis URL; raises ValueError naming what is wrong, never echoing a password."""
        try:
            parts = urllib.parse.urlsplit(text.strip())
            port = parts.port
        except ValueError:
            raise ValueError(f"not a URL with a valid port, got {_without_userinfo(text)!r}") from None
        shown = _without_userinfo(text)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"expected a redis:// or rediss:// (TLS) URL, got {shown!r}")
        if not parts.hostname:
            raise ValueError(f"the URL names no host, got {shown!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"URL query options are not supported (use the state.redis keys), got {shown!r}")
        path = parts.path.strip("/")
        if path and not re.fullmatch(r"[0-9]{1,5}", path):
            raise ValueError(f"the URL path is the database number (e.g. /0), got {shown!r}")
        username = urllib.parse.unquote(parts.username) if parts.username else None
        password = urllib.parse.unquote(parts.password) if parts.password else None
        return cls(
            parts.scheme == "rediss",
            parts.hostname,
            port if port is not None else 6379,
            int(path or 0),
            username,
            Secret(password) if password else None,
        )

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        serializer = core_schema.plain_serializer_function_ser_schema(str)
        return core_schema.no_info_plain_validator_function(cls._validate, serialization=serializer)

    @classmethod
    def _validate(cls, value: object) -> RedisUrl:
        if isinstance(value, RedisUrl):
            return value
        if not isinstance(value, str):
            raise problems_error([((), f"expected a redis:// URL string, got {_loading.describe(value)}")])
        try:
            return cls.parse(value)
        except ValueError as exc:
            raise problems_error([((), str(exc))]) from None


def _without_userinfo(text: str) -> str:
    """`text` with everything between `//` and the last `@` shown as `<secret>`: a URL's password, even one
    holding an unencoded `/` or `@`, never reaches a message."""
    return re.sub(r"//.*@", f"//{_REDACTED}@", text, flags=re.DOTALL)


def _is_ip(text: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------ field types & checks


def _check(predicate: Callable[[Any], object], message: str) -> AfterValidator:
    """An AfterValidator failing with `message, got <value>` when `predicate(value)` is false."""

    def validate(value: Any) -> Any:
        if not predicate(value):
            raise problems_error([((), f"{message}, got {_loading.describe(value)}")])
        return value

    return AfterValidator(validate)


_LABEL_SAFE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
_LabelSafeName = Annotated[
    str,
    _check(
        _LABEL_SAFE.fullmatch,
        "must be 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit",
    ),
]
# Zoom account ids are 22 URL-safe base64 characters; a declared sub-account id is also its `account` label.
_ZoomAccountId = Annotated[
    str,
    _check(re.compile(r"[A-Za-z0-9_-]{1,64}").fullmatch, "must be a Zoom account id (1-64 letters, digits, '_', '-')"),
]
_HttpUrl = Annotated[
    str,
    _check(lambda url: re.fullmatch(r"https?://[^/\s?#]+(/\S*)?", url) is not None, "expected an http(s) URL"),
    AfterValidator(lambda url: url.rstrip("/")),  # callers append "/path"
    # The start-up log's configuration summary: a password in the URL must not show.
    PlainSerializer(redact_url, return_type=str, when_used="json"),
]
_Seconds = Annotated[int, Field(gt=0)]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(value: object) -> IPNetwork:
    if not isinstance(value, str):
        raise problems_error([((), f"expected a CIDR string, got {_loading.describe(value)}")])
    try:
        return ipaddress.ip_network(value.strip(), strict=False)  # 10.20.1.5/16 means 10.20.0.0/16
    except ValueError:
        raise problems_error([((), f"not an IPv4 or IPv6 network, got {value!r}")]) from None


def _as_secret_list(value: object) -> object:
    if isinstance(value, str | Secret):
        return [value]
    if not isinstance(value, list | tuple):
        message = f"expected a string or a list of strings, got {_loading.describe(value, secret=True)}"
        raise problems_error([((), message)])
    return value


def _headers_from_text(value: object) -> object:
    """`otlp.headers` may also be written as OTEL_EXPORTER_OTLP_HEADERS is: `key1=value1,key2=value2`,
    values percent-encoded. A malformed entry is reported by its position only: values are credentials."""
    if not isinstance(value, str):
        return value
    headers: dict[str, str] = {}
    problems: list[Problem] = []
    for index, item in enumerate(value.split(",")):
        key, sep, text = item.partition("=")
        if sep and key.strip():
            headers[key.strip()] = unquote(text.strip())
        elif item.strip():
            problems.append(
                ((), f"entry {index + 1} is not key=value (the entry is not shown: it may be a credential)")
            )
    if problems:
        raise problems_error(problems)
    return headers


def _check_buckets(buckets: tuple[float, ...]) -> tuple[float, ...]:
    problems: list[Problem] = [
        ((index,), f"must be greater than the bucket before it ({buckets[index - 1]!r}), got {bound!r}")
        for index, bound in enumerate(buckets)
        if index and bound <= buckets[index - 1]
    ]
    if problems:
        raise problems_error(problems)
    return buckets


def _unique(items: tuple[Any, ...], attribute: str, section: str) -> list[Problem]:
    first: dict[Any, int] = {}
    problems: list[Problem] = []
    for index, item in enumerate(items):
        value = getattr(item, attribute)
        if value in first:
            problems.append(((index, attribute), f"duplicate of {section}[{first[value]}].{attribute} ({value!r})"))
        first.setdefault(value, index)
    return problems


def _unique_subscriptions(accounts: tuple[AccountConfig, ...]) -> list[Problem]:
    """One live connection per subscription: two accounts must not share a WebSocket subscription id."""
    first: dict[str, int] = {}
    problems: list[Problem] = []
    for index, account in enumerate(accounts):
        if account.websocket is None:
            continue
        subscription = account.websocket.subscription_id
        if subscription in first:
            where = f"accounts[{first[subscription]}].websocket.subscription_id"
            problems.append(((index, "websocket", "subscription_id"), f"duplicate of {where} ({subscription!r})"))
        first.setdefault(subscription, index)
    return problems


_WebhookSecrets = Annotated[tuple[Secret, ...], BeforeValidator(_as_secret_list), Field(min_length=1)]
_FamilyName = Annotated[
    str, _check(re.compile(r"zoom_qss_[a-zA-Z0-9_]+").fullmatch, "expected a zoom_qss_ metric name")
]
_Buckets = Annotated[
    tuple[Annotated[float, Field(allow_inf_nan=False)], ...], Field(min_length=1), AfterValidator(_check_buckets)
]
_Network = Annotated[IPNetwork, PlainValidator(_network), PlainSerializer(str, return_type=str, when_used="json")]


# ----------------------------------------------------------------------------------------- models


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class ListenConfig(_Section):
    """Where the two HTTP listeners bind; port 0 picks a free port (tests)."""

    webhook: HostPort = HostPort("0.0.0.0", 8080)
    metrics: HostPort = HostPort("0.0.0.0", 9877)
    # An exporter-toolkit web configuration file (TLS, basic auth) for the metrics listener;
    # relative to the working directory; `--web.config.file` overrides it.
    metrics_web_config_file: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _separate(self) -> Self:
        a, b = self.webhook, self.metrics
        wildcard = {"0.0.0.0", "::"}
        if a.port and a.port == b.port and (a.host == b.host or a.host in wildcard or b.host in wildcard):
            raise problems_error([(("metrics",), f"conflicts with listen.webhook ({a}); use another port")])
        return self


_ListenerSeconds = Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]


class WebhookConfig(_Section):
    """The Zoom-facing webhook endpoint."""

    path: Annotated[
        str, _check(lambda path: re.fullmatch(r"/[^\s?#]*", path), "must start with '/' and hold no spaces, '?' or '#'")
    ] = "/zoom/webhook"
    timestamp_tolerance_seconds: _Seconds = 300
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    insecure_skip_verification: bool = False
    # The listener's admission limits (server/guard.py, docs/security.md).
    header_timeout_seconds: _ListenerSeconds = 5.0
    body_timeout_seconds: _ListenerSeconds = 5.0
    idle_timeout_seconds: _ListenerSeconds = 75.0
    max_header_bytes: Annotated[int, Field(ge=1024, le=1_048_576)] = 16_384
    max_headers: Annotated[int, Field(ge=16, le=10_000)] = 100
    max_connections: Annotated[int, Field(ge=16)] = 4096
    max_buffered_body_bytes: Annotated[int, Field(ge=1024)] = 67_108_864
    shed_after_seconds: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = 1.0

    @model_validator(mode="after")
    def _buffers_hold_a_body(self) -> Self:
        if self.max_buffered_body_bytes < self.max_body_bytes:
            message = f"must be at least max_body_bytes ({self.max_body_bytes}), got {self.max_buffered_body_bytes}"
            raise problems_error([(("max_buffered_body_bytes",), message)])
        return self


_WsSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_WsUrl = Annotated[
    str,
    _check(lambda url: re.fullmatch(r"wss?://[^/\s?#]+(/[^\s#]*)?", url) is not None, "expected a ws:// or wss:// URL"),
    PlainSerializer(redact_url, return_type=str, when_used="json"),
]


class WebSocketConfig(_Section):
    """Settings shared by every account's Zoom WebSocket (docs/websocket.md); each account opts in."""

    heartbeat_interval_seconds: _WsSeconds = 30.0
    max_frame_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    connect_timeout_seconds: _WsSeconds = 10.0
    reconnect_min_seconds: _WsSeconds = 1.0
    reconnect_max_seconds: _WsSeconds = 60.0
    reconnect_on_token_expiry: bool = True
    readyz_requires_connection: bool = False

    @model_validator(mode="after")
    def _backoff_range(self) -> Self:
        if self.reconnect_max_seconds < self.reconnect_min_seconds:
            message = f"must be at least reconnect_min_seconds ({self.reconnect_min_seconds:g})"
            raise problems_error([(("reconnect_max_seconds",), f"{message}, got {self.reconnect_max_seconds:g}")])
        return self


class AccountWebSocketConfig(_Section):
    """One account's WebSocket event subscription; needs the account's client_id and client_secret."""

    subscription_id: Annotated[str, Field(min_length=1)]
    url: _WsUrl = "wss://ws.zoom.us/ws"
    grant_type: Literal["auto", "account_credentials", "client_credentials"] = "auto"


class AccountConfig(_Section):
    """One Zoom account / app; `name` is its `account` label."""

    name: _LabelSafeName
    account_id: Annotated[str, Field(min_length=1)]
    webhook_secret_token: _WebhookSecrets = ()
    webhook_secret_token_file: Path | None = None  # informational: load_config has read it into the above
    client_id: Annotated[str, Field(min_length=1)] | None = None
    client_secret: Secret | None = None
    client_secret_file: Path | None = None
    websocket: AccountWebSocketConfig | None = None
    sub_accounts: tuple[_ZoomAccountId, ...] = ()
    undeclared_sub_accounts: Literal["refuse", "master"] = "refuse"

    @model_validator(mode="after")
    def _complete(self, info: ValidationInfo) -> Self:
        problems: list[Problem] = []
        if self.client_secret is not None and self.client_id is None:
            problems.append((("client_id",), "missing (client_secret is set; give both or neither)"))
        if self.client_id is not None and self.client_secret is None:
            problems.append((("client_secret",), "missing (client_id is set; give both or neither)"))
        if self.websocket is not None and self.client_id is None and self.client_secret is None:
            problems.append((("websocket",), _WEBSOCKET_CREDENTIALS))
        # load_config passes the webhook section's flag so each account is checked on its own;
        # without it, Config checks all accounts once every section is valid.
        # An account that receives its events over the WebSocket needs no webhook secret.
        if (
            info.context
            and info.context.get(_INSECURE) is False
            and not self.webhook_secret_token
            and self.websocket is None
        ):
            problems.append((("webhook_secret_token",), _MISSING_SECRET))
        if problems:
            raise problems_error(problems)
        return self


class ZoomConfig(_Section):
    """Zoom's REST and OAuth endpoints (override for a proxy or a fake in tests)."""

    api_base_url: _HttpUrl = "https://api.zoom.us/v2"
    oauth_token_url: _HttpUrl = "https://zoom.us/oauth/token"


_DataCentreCode = Annotated[
    str,
    _check(re.compile(r"[A-Za-z0-9]{1,4}").fullmatch, "must be a data-centre code of 1-4 letters or digits"),
    AfterValidator(str.upper),
]


class LabelsConfig(_Section):
    """Optional enrichment labels on the QoS metric families."""

    network_type: bool = True
    site: bool = True
    data_center: bool = False
    client_os: bool = False
    client_version: bool = False
    extra_data_centers: tuple[_DataCentreCode, ...] = ()


class SiteConfig(_Section):
    """A named office: participants whose IP falls in `cidrs` get `site=name`."""

    name: _LabelSafeName
    cidrs: Annotated[tuple[_Network, ...], Field(min_length=1)]


class PipelineConfig(_Section):
    """Windows and bounds of the dedupe and enrichment state."""

    activity_window_seconds: _Seconds = 180
    dedupe_window_seconds: Annotated[
        int,
        _check(lambda seconds: seconds >= 7200, "must be at least 7200 (Zoom retries deliveries for about 85 minutes)"),
    ] = 7_200
    dedupe_max_entries: Annotated[int, Field(ge=1000)] = 10_000_000
    enrichment_ttl_seconds: _Seconds = 7_200
    enrichment_max_entries: Annotated[int, Field(ge=100)] = 500_000


class LimitsConfig(_Section):
    """Bounds that protect the process from unbounded cardinality."""

    max_series: Annotated[int, Field(ge=100)] = 200_000
    series_ttl_seconds: _Seconds = 86_400


class HistogramsConfig(_Section):
    """Per-family bucket overrides; the metric layer checks that each family exists."""

    buckets: Annotated[
        Mapping[_FamilyName, _Buckets],
        AfterValidator(lambda buckets: MappingProxyType(dict(buckets))),
        PlainSerializer(dict),
    ] = Field(default_factory=lambda: MappingProxyType({}))


class LogConfig(_Section):
    """Log verbosity and line format."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["plain", "json"] = "plain"


_HeaderName = Annotated[
    str,
    _check(re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+").fullmatch, "expected an HTTP header name"),
    AfterValidator(str.lower),  # gRPC metadata keys must be lower case; HTTP does not care
]
_PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class OtlpLogsConfig(_Section):
    """Optional OTLP log records, one per real-time QoS record (drill-down; off by default)."""

    enabled: bool = False
    participant_id: Literal["hashed", "plain", "omit"] = "hashed"
    participant_id_hash_key: Secret | None = None
    participant_id_hash_key_file: Path | None = None  # informational: load_config has read it into the key
    max_queue: Annotated[int, Field(ge=100)] = 10_000


class OtlpConfig(_Section):
    """OTLP push of the metric store (and optional logs). Unset keys fall back to the OTEL_* variables."""

    enabled: bool = False
    protocol: Literal["grpc", "http/protobuf"] | None = None
    endpoint: _HttpUrl | None = None
    headers: Annotated[
        Mapping[_HeaderName, Secret],
        BeforeValidator(_headers_from_text),
        AfterValidator(lambda headers: MappingProxyType(dict(headers))),
        PlainSerializer(lambda headers: dict.fromkeys(headers, _REDACTED)),
    ] = Field(default_factory=lambda: MappingProxyType({}))
    timeout_seconds: _PositiveSeconds | None = None
    compression: Literal["gzip", "none"] | None = None
    certificate_file: Path | None = None
    client_certificate_file: Path | None = None
    client_key_file: Path | None = None
    interval_seconds: _PositiveSeconds | None = None
    temporality: Literal["cumulative", "delta"] | None = None
    histograms: Literal["explicit", "exponential"] = "explicit"
    exponential_scale: Annotated[int, Field(ge=-10, le=20)] = 3
    resource_attributes: Annotated[
        Mapping[Annotated[str, Field(min_length=1)], str],
        AfterValidator(lambda attributes: MappingProxyType(dict(attributes))),
        PlainSerializer(dict),
    ] = Field(default_factory=lambda: MappingProxyType({}))
    logs: OtlpLogsConfig = Field(default_factory=OtlpLogsConfig)

    @model_validator(mode="after")
    def _logs_complete(self) -> Self:
        problems: list[Problem] = []
        logs = self.logs
        if logs.enabled and not self.enabled:
            problems.append((("logs", "enabled"), "needs otlp.enabled: true (logs use the same connection)"))
        if logs.enabled and logs.participant_id == "hashed" and logs.participant_id_hash_key is None:
            problems.append(
                (
                    ("logs", "participant_id_hash_key"),
                    "missing (hashed participant ids need a key; or set participant_id: omit)",
                )
            )
        if (self.client_certificate_file is None) != (self.client_key_file is None):
            missing = "client_key_file" if self.client_key_file is None else "client_certificate_file"
            problems.append(((missing,), "missing (mutual TLS needs both client_certificate_file and client_key_file)"))
        if problems:
            raise problems_error(problems)
        return self


class PollerConfig(_Section):
    """The REST QoS-summary poller (docs/poller.md): off unless enabled; polls accounts with client credentials."""

    enabled: bool = False
    state_dir: Path = Path("/var/lib/qss-exporter")
    settle_seconds: _Seconds = 300
    idle_seconds: _Seconds = 1800
    not_ended_retry_seconds: _Seconds = 900
    lookback_hours: Annotated[int, Field(ge=0, le=720)] = 0
    sweep_interval_seconds: Annotated[int, Field(ge=60)] = 3600
    heavy_per_second: Annotated[int, Field(ge=1)] = 10
    resource_intensive_per_minute: Annotated[int, Field(ge=1)] = 10
    daily_budget: Annotated[int, Field(ge=1)] = 10_000
    max_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    request_timeout_seconds: _PositiveSeconds = 30.0


_HASHED_ENTRY = re.compile(r"hmac:[0-9a-f]{16}")


def _allowlist_entry(value: str) -> str:
    value = value.strip()
    if value.lower().startswith("hmac:") and not _HASHED_ENTRY.fullmatch(value.lower()):
        raise problems_error([((), "a hashed entry is hmac: and 16 hex digits (qss-exporter lookup prints it)")])
    return value.lower() if value.lower().startswith("hmac:") else value


class DetailPlainConfig(_Section):
    """Plain (unhashed) detail labels, each an explicit opt-in; everything else is a keyed hash."""

    meeting_number: bool = False
    topic: bool = False
    participant_name: bool = False


class DetailWorstConfig(_Section):
    """The worst N participants and meetings by `score`, re-ranked every `interval_seconds`."""

    participants: Annotated[int, Field(ge=0)] = 0
    meetings: Annotated[int, Field(ge=0)] = 0
    score: Literal["audio_loss", "video_loss", "audio_latency", "audio_jitter", "quality"] = "audio_loss"
    interval_seconds: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 60.0


class DetailConfig(_Section):
    """Per-meeting and per-participant series (docs/detail.md): off by default, selected, capped, hashed."""

    enabled: bool = False
    hash_key: Secret | None = None
    hash_key_file: Path | None = None  # informational: load_config has read it into hash_key
    allowlist: Annotated[
        tuple[Annotated[str, Field(min_length=1), AfterValidator(_allowlist_entry)], ...],
        # Plain entries are personal data: the start-up log shows only the hashed ones.
        PlainSerializer(lambda entries: [e if e.startswith("hmac:") else "<plain entry>" for e in entries]),
    ] = ()
    worst: DetailWorstConfig = Field(default_factory=DetailWorstConfig)
    plain: DetailPlainConfig = Field(default_factory=DetailPlainConfig)
    max_series: Annotated[int, Field(ge=1)] = 10_000

    @model_validator(mode="after")
    def _usable(self) -> Self:
        problems: list[Problem] = []
        if self.enabled and self.hash_key is None:
            problems.append((("hash_key",), "missing (detail labels are keyed hashes: give hash_key or hash_key_file)"))
        if self.enabled and not self.allowlist and not self.worst.participants and not self.worst.meetings:
            problems.append(
                (("enabled",), "selects nobody: give allowlist entries, worst.participants or worst.meetings")
            )
        if problems:
            raise problems_error(problems)
        return self


def _readable(path: Path, info: ValidationInfo) -> Path:
    """A file the agent can read; a relative path is taken from the configuration file's directory."""
    base = info.context.get(_BASE_DIR) if info.context else None
    if base is not None:
        path = base / path
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise problems_error([((), f"cannot read {path}: {exc.strerror or type(exc).__name__}")]) from None
    return path


_ReadableFile = Annotated[Path, AfterValidator(_readable)]
_ShortSeconds = Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)]


class RedisConfig(_Section):
    """How to reach Redis when `state.backend` is `redis` (docs/config.md); qss_exporter/redis_client.py connects."""

    url: RedisUrl = RedisUrl(tls=False, host="localhost")
    username: Annotated[str, Field(min_length=1)] | None = None
    password: Secret | None = None
    password_file: Path | None = None  # informational: load_config has read it into password
    ca_file: _ReadableFile | None = None
    cert_file: _ReadableFile | None = None
    key_file: _ReadableFile | None = None
    key_prefix: Annotated[
        str,
        _check(re.compile(r"[A-Za-z0-9_.:-]{1,64}").fullmatch, "must be 1-64 letters, digits, '_', '.', ':' or '-'"),
    ] = "qss:"
    # Small on purpose: a webhook must never wait long on Redis (its 3 s budget belongs to Zoom).
    connect_timeout_seconds: _ShortSeconds = 1.0
    command_timeout_seconds: _ShortSeconds = 0.25
    # The shared pipeline state (shared_state.py): a webhook waits this long for Redis, then decides locally.
    call_timeout_ms: Annotated[int, Field(ge=1, le=1000)] = 50
    sync_seconds: Annotated[float, Field(ge=0.1, le=60, allow_inf_nan=False)] = 5.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[Problem] = []
        if self.password is not None and self.url.password is not None:
            problems.append((("password",), "the url holds a password already; give it in one place"))
        if self.username is not None and self.url.username is not None:
            problems.append((("username",), "the url names a user already; give it in one place"))
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            problems.append(((missing,), "missing (a client certificate needs both cert_file and key_file)"))
        if not self.url.tls:
            problems += [
                ((name,), "needs a rediss:// url (TLS)")
                for name in ("ca_file", "cert_file", "key_file")
                if getattr(self, name) is not None
            ]
        if problems:
            raise problems_error(problems)
        return self

    @property
    def effective_username(self) -> str | None:
        return self.username if self.username is not None else self.url.username

    @property
    def effective_password(self) -> Secret | None:
        return self.password if self.password is not None else self.url.password


class LeaderConfig(_Section):
    """The lease that picks the one replica running the poller and each WebSocket (docs/deploy.md)."""

    lease_seconds: Annotated[float, Field(ge=1, le=300, allow_inf_nan=False)] = 15.0
    renew_seconds: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 5.0

    @model_validator(mode="after")
    def _renewals_fit(self) -> Self:
        # Two renewals must fail before the holder steps down, with a renewal interval to spare for stopping.
        if self.renew_seconds * 3 > self.lease_seconds:
            message = f"must be at most a third of lease_seconds ({self.lease_seconds:g}), got {self.renew_seconds:g}"
            raise problems_error([(("renew_seconds",), message)])
        return self


class StateConfig(_Section):
    """Where state shared between replicas lives: `local` (one replica, memory) or `redis`; and `dir`, where
    the pipeline's state is saved over restarts (persistence.py) and the poller keeps its progress."""

    backend: Literal["local", "redis"] = "local"
    dir: Path | None = None
    checkpoint_interval_seconds: Annotated[float, Field(ge=1, le=3600, allow_inf_nan=False)] = 30.0
    redis: RedisConfig = Field(default_factory=RedisConfig)
    leader: LeaderConfig = Field(default_factory=LeaderConfig)

    @model_validator(mode="after")
    def _timeouts_fit(self) -> Self:
        redis, renew = self.redis, self.leader.renew_seconds
        if self.backend == "redis" and redis.connect_timeout_seconds + redis.command_timeout_seconds >= renew:
            message = (
                f"connect_timeout_seconds + command_timeout_seconds must be below state.leader.renew_seconds "
                f"({renew:g}), got {redis.connect_timeout_seconds + redis.command_timeout_seconds:g}"
            )
            raise problems_error([(("redis", "command_timeout_seconds"), message)])
        return self


class Config(_Section):
    """The whole configuration. Build it with `load_config` or `config_from_mapping`."""

    listen: ListenConfig = Field(default_factory=ListenConfig)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    websocket: WebSocketConfig = Field(default_factory=WebSocketConfig)
    accounts: Annotated[tuple[AccountConfig, ...], Field(min_length=1)]
    zoom: ZoomConfig = Field(default_factory=ZoomConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    sites: tuple[SiteConfig, ...] = ()
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    histograms: HistogramsConfig = Field(default_factory=HistogramsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    otlp: OtlpConfig = Field(default_factory=OtlpConfig)
    detail: DetailConfig = Field(default_factory=DetailConfig)
    poller: PollerConfig = Field(default_factory=PollerConfig)
    state: StateConfig = Field(default_factory=StateConfig)

    @field_validator("accounts")
    @classmethod
    def _unique_accounts(cls, accounts: tuple[AccountConfig, ...]) -> tuple[AccountConfig, ...]:
        if problems := (
            _unique(accounts, "name", "accounts")
            + _unique(accounts, "account_id", "accounts")
            + _unique_subscriptions(accounts)
        ):
            raise problems_error(problems)
        return accounts

    @field_validator("sites")
    @classmethod
    def _unique_sites(cls, sites: tuple[SiteConfig, ...]) -> tuple[SiteConfig, ...]:
        if problems := _unique(sites, "name", "sites"):
            raise problems_error(problems)
        return sites

    @model_validator(mode="after")
    def _one_state_dir(self) -> Self:
        # state.dir is the one directory; poller.state_dir, given explicitly, still wins (deprecated).
        poller = self.poller
        if self.state.dir is not None and "state_dir" not in poller.model_fields_set:
            moved = poller.model_copy(update={"state_dir": self.state.dir})
            # Still "not given": validation.py warns only about a poller.state_dir the operator wrote.
            object.__setattr__(moved, "__pydantic_fields_set__", set(poller.model_fields_set))
            object.__setattr__(self, "poller", moved)
        return self

    @model_validator(mode="after")
    def _poller_has_credentials(self) -> Self:
        if self.poller.enabled and not any(account.client_id is not None for account in self.accounts):
            message = "needs at least one account with client_id and client_secret (the poller's OAuth credentials)"
            raise problems_error([(("poller", "enabled"), message)])
        return self

    @model_validator(mode="after")
    def _sub_accounts_have_one_owner(self) -> Self:
        """A sub-account is polled by one master account, and is not a configured account itself."""
        owner = {account.account_id: f"accounts[{i}].account_id" for i, account in enumerate(self.accounts)}
        problems: list[Problem] = []
        for index, account in enumerate(self.accounts):
            for position, sub in enumerate(account.sub_accounts):
                if sub in owner:
                    problems.append(
                        (("accounts", index, "sub_accounts", position), f"duplicate of {owner[sub]} ({sub!r})")
                    )
                else:
                    owner[sub] = f"accounts[{index}].sub_accounts[{position}]"
        if problems:
            raise problems_error(problems)
        return self

    @model_validator(mode="after")
    def _secrets_present(self) -> Self:
        if not self.webhook.insecure_skip_verification and (
            problems := [
                (("accounts", index, "webhook_secret_token"), _MISSING_SECRET)
                for index, account in enumerate(self.accounts)
                if not account.webhook_secret_token and account.websocket is None
            ]
        ):
            raise problems_error(problems)
        return self


# -------------------------------------------------------------------------------------- loading

_BOOL: TypeAdapter[bool] = TypeAdapter(bool)


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate a YAML config file; raises ConfigError listing every problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"], source=source) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{source}: not UTF-8 text"], source=source) from None
    data, problem = _loading.parse_yaml(text, source)
    if problem is not None:
        raise ConfigError([problem], source=source)
    return config_from_mapping({} if data is None else data, source, environ, path.absolute().parent)


def config_from_mapping(
    data: Mapping[str, Any],
    source: str = "<config>",
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Validate an already-parsed config; relative `*_file` paths resolve against `base_dir` (cwd)."""
    if not isinstance(data, Mapping):
        raise ConfigError([f"top level: expected a mapping, got {_loading.describe(data)}"], source=source)
    environ = os.environ if environ is None else environ
    raw, problems, references = _loading.interpolate_tree(data, environ, _SECRET_KEYS)
    explained = {loc for loc, _ in problems}

    def add(found: list[Problem]) -> None:
        # A value already reported (an unset variable, an unreadable file) is not reported twice.
        problems.extend(problem for problem in found if not any(problem[0][: len(k)] == k for k in explained))

    file_problems, file_explained = _loading.resolve_secret_files(
        raw, base_dir or Path.cwd(), _MULTI_SECRET_KEYS, _SINGLE_SECRET_KEYS
    )
    add(file_problems)
    explained |= file_explained
    config: Config | None = None
    try:
        context = {_INSECURE: _insecure_flag(raw), _BASE_DIR: base_dir or Path.cwd()}
        config = Config.model_validate(raw, context=context)
    except ValidationError as exc:
        found = _loading.validation_problems(exc, Config, raw, _SECRET_KEYS, references)
        add(found)
        if not problems:  # never reject a config without saying why
            problems += found
    if problems or config is None:
        problems.sort(key=lambda problem: _loading.document_order(problem[0], raw))
        lines = [f"{_loading.render_path(loc, raw)[0]}: {message}" for loc, message in problems]
        raise ConfigError(list(dict.fromkeys(lines)), source=source)
    return config


def _insecure_flag(raw: Mapping[str, Any]) -> bool | None:
    """`webhook.insecure_skip_verification` as validation will read it, or None if it is invalid."""
    webhook = raw.get("webhook", {})
    if not isinstance(webhook, Mapping):
        return None
    try:
        return _BOOL.validate_python(webhook.get(_INSECURE, False))
    except ValidationError:
        return None


def redacted_summary(config: Config) -> dict[str, Any]:
    """The effective config as JSON-ready data for the start-up log; every secret is `<secret>`.

    Secret keys serialise as `<secret>`, URL keys without user-info or query values; and any other
    string that holds a URL with user-info (a key added later, say a Redis URL) loses it here too.
    """

    def scrub(node: Any) -> Any:
        if isinstance(node, str):
            return redact_urls_in(node)
        if isinstance(node, dict):
            return {key: scrub(value) for key, value in node.items()}
        if isinstance(node, list):
            return [scrub(item) for item in node]
        return node

    summary: dict[str, Any] = scrub(config.model_dump(mode="json"))
    return summary


def changed_summary(config: Config) -> dict[str, Any]:
    """`redacted_summary` cut down to the keys not at their defaults: what a one-line start-up log can carry.

    The values are taken from `redacted_summary` itself, so they are redacted exactly as it redacts them;
    the defaults only decide which keys stay.
    """
    return cast(dict[str, Any], _pick(redacted_summary(config), config.model_dump(mode="json", exclude_defaults=True)))


def _pick(full: Any, changed: Any) -> Any:
    if isinstance(full, dict) and isinstance(changed, dict):
        return {key: _pick(full[key], value) for key, value in changed.items() if key in full}
    if isinstance(full, list) and isinstance(changed, list) and len(full) == len(changed):
        return [_pick(whole, part) for whole, part in zip(full, changed, strict=True)]
    return full
