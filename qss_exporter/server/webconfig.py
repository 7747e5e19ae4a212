"""The exporter-toolkit web configuration file (`--web.config.file`) for the metrics listener.

The keys and their meaning follow prometheus/exporter-toolkit's docs/web-configuration.md, so one
file serves this exporter and the Go exporters next to it:

    tls_server_config:       cert_file, key_file, client_ca_file, client_auth_type, client_allowed_sans,
                             min_version, max_version, cipher_suites, prefer_server_cipher_suites
    http_server_config:      headers (the five the toolkit allows), http2 (accepted; HTTP/1.1 is served)
    basic_auth_users:        user: bcrypt hash
    rate_limit:              interval, burst (token bucket; 429 beyond it)

What Python's TLS cannot do the same way is refused with the key's path: client_auth_type
RequestClientCert and RequireAnyClientCert (a certificate requested but not verified),
curve_preferences, and the inline cert / key / client_ca (give the *_file keys). Unknown keys are
refused too, as the toolkit's strict YAML decoding does. Relative paths are relative to the file.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qss_exporter.errors import ConfigError

__all__ = ["AuthSettings", "TlsSettings", "WebConfig", "load_web_config"]

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# Go's names of the cipher suites crypto/tls offers for TLS 1.0-1.2, and OpenSSL's names for them.
_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}
# The response headers exporter-toolkit lets a web configuration set, and their allowed values.
_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_BCRYPT = re.compile(r"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")
_DURATION = re.compile(r"((?:\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth_type",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
)
_TLS_REFUSED = {
    "cert": "inline certificates are not supported: give cert_file",
    "key": "inline keys are not supported: give key_file",
    "client_ca": "inline CA certificates are not supported: give client_ca_file",
    "curve_preferences": "not supported (Python's TLS uses OpenSSL's default curves)",
}


@dataclass(frozen=True, slots=True)
class TlsSettings:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    client_allowed_sans: tuple[str, ...] = ()
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    ciphers: tuple[str, ...] = ()  # OpenSSL names; empty: OpenSSL's defaults
    prefer_server_ciphers: bool = True


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """What the metrics listener's HTTP wrapper applies to every request."""

    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: tuple[tuple[bytes, bytes], ...] = ()
    rate_interval: float = 0.0  # seconds between requests on average; 0: no rate limit
    rate_burst: int = 0


@dataclass(frozen=True, slots=True)
class WebConfig:
    path: Path
    tls: TlsSettings | None
    auth: AuthSettings


class _Problems:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.found: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.found.append(f"{self.path}: {key}: {message}")


def _mapping(value: Any, key: str, problems: _Problems) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(name, str) for name in value):
        problems.add(key, f"expected a mapping, got {type(value).__name__}")
        return {}
    return value


def _unknown(section: dict[str, Any], allowed: tuple[str, ...], prefix: str, problems: _Problems) -> None:
    for name in section:
        if name not in allowed:
            problems.add(f"{prefix}{name}", f"unknown key (allowed: {', '.join(allowed)})")


def _duration(text: Any) -> float | None:
    """A Go / Prometheus duration ("1s", "100ms", "1m30s") in seconds; None if it is not one."""
    if not isinstance(text, str) or not _DURATION.fullmatch(text):
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))


def _file(value: Any, key: str, base: Path, problems: _Problems) -> Path | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        problems.add(key, f"expected a file name, got {type(value).__name__}")
        return None
    path = base / value
    if not path.is_file():
        problems.add(key, f"cannot read {path}")
        return None
    return path


def _tls(raw: dict[str, Any], base: Path, problems: _Problems) -> TlsSettings | None:
    prefix = "tls_server_config."
    for name, reason in _TLS_REFUSED.items():
        if raw.get(name):
            problems.add(prefix + name, reason)
    _unknown({k: v for k, v in raw.items() if k not in _TLS_REFUSED}, _TLS_KEYS, prefix, problems)
    if not any(raw.get(name) for name in ("cert_file", "key_file", "client_ca_file", "client_auth_type")):
        return None  # the toolkit's "TLS config is not present": plain HTTP
    cert = _file(raw.get("cert_file"), prefix + "cert_file", base, problems)
    key = _file(raw.get("key_file"), prefix + "key_file", base, problems)
    if raw.get("cert_file") in (None, ""):
        problems.add(prefix + "cert_file", "missing (TLS needs cert_file and key_file)")
    if raw.get("key_file") in (None, ""):
        problems.add(prefix + "key_file", "missing (TLS needs cert_file and key_file)")
    client_ca = _file(raw.get("client_ca_file"), prefix + "client_ca_file", base, problems)
    auth_name = raw.get("client_auth_type") or "NoClientCert"
    client_auth = _CLIENT_AUTH.get(auth_name) if isinstance(auth_name, str) else None
    if auth_name in _UNVERIFIED_CLIENT_AUTH:
        problems.add(
            prefix + "client_auth_type",
            f"{auth_name} is not supported (Python's TLS cannot ask for a certificate without verifying it); "
            "use VerifyClientCertIfGiven or RequireAndVerifyClientCert",
        )
    elif client_auth is None:
        problems.add(prefix + "client_auth_type", f"must be one of {', '.join(_CLIENT_AUTH)}, got {auth_name!r}")
    elif client_auth != ssl.CERT_NONE and client_ca is None and raw.get("client_ca_file") in (None, ""):
        problems.add(prefix + "client_ca_file", f"missing (client_auth_type {auth_name} verifies against it)")
    elif client_auth == ssl.CERT_NONE and client_ca is not None:
        problems.add(prefix + "client_auth_type", "client CAs have been configured without a client auth policy")
    sans = raw.get("client_allowed_sans") or []
    if not isinstance(sans, list) or not all(isinstance(san, str) for san in sans):
        problems.add(prefix + "client_allowed_sans", "expected a list of strings")
        sans = []
    if sans and client_auth != ssl.CERT_REQUIRED:
        problems.add(prefix + "client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert")
    versions = []
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        value = raw.get(name) or default
        version = _TLS_VERSIONS.get(value) if isinstance(value, str) else None
        if version is None:
            problems.add(prefix + name, f"must be one of {', '.join(_TLS_VERSIONS)}, got {value!r}")
            version = _TLS_VERSIONS[default]
        versions.append(version)
    if versions[0] > versions[1]:
        problems.add(prefix + "max_version", "must not be lower than min_version")
    suites = raw.get("cipher_suites") or []
    ciphers = []
    for index, name in enumerate(suites if isinstance(suites, list) else [suites]):
        if name not in _CIPHERS:
            problems.add(f"{prefix}cipher_suites[{index}]", f"unknown cipher suite {name!r}")
        else:
            ciphers.append(_CIPHERS[name])
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        problems.add(prefix + "prefer_server_cipher_suites", "expected true or false")
        prefer = True
    if cert is None or key is None or client_auth is None:
        return None
    return TlsSettings(cert, key, client_ca, client_auth, tuple(sans), versions[0], versions[1], tuple(ciphers), prefer)


def _auth(raw: dict[str, Any], problems: _Problems) -> AuthSettings:
    users: dict[str, bytes] = {}
    for user, hashed in _mapping(raw.get("basic_auth_users"), "basic_auth_users", problems).items():
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed):
            problems.add(f"basic_auth_users.{user}", "not a bcrypt hash ($2y$10$... from htpasswd -nBC 10)")
        else:
            users[user] = hashed.encode()
    http = _mapping(raw.get("http_server_config"), "http_server_config", problems)
    _unknown(http, ("headers", "http2"), "http_server_config.", problems)
    if not isinstance(http.get("http2", True), bool):
        problems.add("http_server_config.http2", "expected true or false")
    headers = []
    for name, value in _mapping(http.get("headers"), "http_server_config.headers", problems).items():
        key = f"http_server_config.headers.{name}"
        if name not in _HEADERS:
            problems.add(key, f"can not be configured (allowed: {', '.join(_HEADERS)})")
        elif not isinstance(value, str) or (_HEADERS[name] and value not in _HEADERS[name]):
            problems.add(key, f"must be one of {', '.join(_HEADERS[name])}, got {value!r}")
        elif value and value.isprintable():
            headers.append((name.lower().encode(), value.encode("latin-1", "replace")))
    rate = _mapping(raw.get("rate_limit"), "rate_limit", problems)
    _unknown(rate, ("interval", "burst"), "rate_limit.", problems)
    interval = _duration(rate.get("interval", "0s"))
    if interval is None:
        problems.add("rate_limit.interval", f"expected a duration such as 1s or 100ms, got {rate.get('interval')!r}")
        interval = 0.0
    burst = rate.get("burst", 0)
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 0 or (interval and burst < 1):
        problems.add("rate_limit.burst", f"expected a whole number of requests of at least 1, got {burst!r}")
        burst = 1
    return AuthSettings(users, tuple(headers), interval, burst)


def load_web_config(path: str | Path) -> WebConfig:
    """Read and check the file; every problem together in one ConfigError (`FILE: key.path: what`)."""
    path = Path(path)
    problems = _Problems(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{path}: not valid YAML{where}"]) from None
    top = _mapping(raw, "top level", problems)
    _unknown(top, _TOP_KEYS, "", problems)
    tls = _tls(_mapping(top.get("tls_server_config"), "tls_server_config", problems), path.parent, problems)
    auth = _auth(top, problems)
    if problems.found:
        raise ConfigError(problems.found)
    return WebConfig(path, tls, auth)
