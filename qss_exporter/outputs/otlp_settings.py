"""Effective OTLP connection settings: the `otlp:` config section over the standard OTEL_* variables.

Precedence for every setting: an explicit config key, then the signal-specific variable
(`OTEL_EXPORTER_OTLP_METRICS_*`), then the generic one (`OTEL_EXPORTER_OTLP_*`), then the
specification's default. Durations in variables are milliseconds, as the specification says. Also
builds the Resource and the SDK's exporter objects; nothing here sends data.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast
from urllib.parse import unquote, urlparse

import grpc  # type: ignore[import-untyped]  # grpcio ships no type hints
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.resources import Resource

from qss_exporter import __version__
from qss_exporter.config import OtlpConfig
from qss_exporter.errors import ConfigError
from qss_exporter.redaction import redact_url

__all__ = [
    "ExportSettings",
    "build_log_exporter",
    "build_resource",
    "grpc_credentials",
    "resolve_settings",
    "tls_files",
    "tls_problems",
]

log = logging.getLogger(__name__)

Signal = Literal["metrics", "logs"]
Warn = Callable[[str], None]
Protocol = Literal["grpc", "http/protobuf"]

_DEFAULT_ENDPOINT = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_INTERVAL_SECONDS = 60.0
_GRPC_COMPRESSION = {"gzip": grpc.Compression.Gzip, "none": grpc.Compression.NoCompression}
_HTTP_COMPRESSION = {"gzip": HttpCompression.Gzip, "none": HttpCompression.NoCompression}


@dataclass(frozen=True)
class ExportSettings:
    """Everything one signal's exporter needs, already resolved (no further environment lookups)."""

    signal: Signal
    protocol: Protocol
    endpoint: str  # gRPC: http(s)://host:port; HTTP: the full URL including /v1/metrics or /v1/logs
    insecure: bool  # gRPC only: plaintext channel
    headers: Mapping[str, str] = field(repr=False)
    timeout: float
    compression: Literal["gzip", "none"]
    certificate_file: Path | None
    client_certificate_file: Path | None
    client_key_file: Path | None
    interval: float
    temporality: Literal["cumulative", "delta", "lowmemory"]
    # Where each TLS file setting came from (`otlp.certificate_file` or the OTEL_* variable that gave it),
    # so that a problem with the file names the place to fix.
    tls_origins: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """A one-line summary for the start-up log (header values and URL user-info are secrets: not shown)."""
        headers = ",".join(sorted(self.headers)) or "none"
        return (
            f"{self.signal} via {self.protocol} to {redact_url(self.endpoint)} every {self.interval:g}s "
            f"(timeout {self.timeout:g}s, {self.temporality}, compression {self.compression}, headers {headers})"
        )


def _log_warning(message: str) -> None:
    log.warning("%s", message)


def _var(environ: Mapping[str, str], *variables: str) -> tuple[str, str] | None:
    """(variable, value) of the first of `variables` that is set and not blank."""
    for variable in variables:
        value = environ.get(variable, "").strip()
        if value:
            return variable, value
    return None


def _env(environ: Mapping[str, str], signal: Signal, name: str) -> tuple[str, str] | None:
    """OTEL_EXPORTER_OTLP_{SIGNAL}_{name}, else OTEL_EXPORTER_OTLP_{name}."""
    return _var(environ, f"OTEL_EXPORTER_OTLP_{signal.upper()}_{name}", f"OTEL_EXPORTER_OTLP_{name}")


def _milliseconds(found: tuple[str, str] | None, warn: Warn) -> float | None:
    if found is None:
        return None
    variable, raw = found
    try:
        value = float(raw) / 1000
    except ValueError:
        value = -1.0
    if value > 0:
        return value
    warn(f"ignoring {variable}={raw!r}: expected a positive number of milliseconds")
    return None


def _choice(found: tuple[str, str] | None, allowed: tuple[str, ...], warn: Warn) -> str | None:
    if found is None:
        return None
    variable, value = found
    if value.lower() in allowed:
        return value.lower()
    warn(f"ignoring {variable}={value!r}: expected one of {', '.join(allowed)}")
    return None


def _key_values(found: tuple[str, str] | None, warn: Warn) -> dict[str, str]:
    """`key1=value1,key2=value2` with percent-encoded values, the form of the OTEL_* list variables."""
    pairs: dict[str, str] = {}
    if found is None:
        return pairs
    variable, text = found
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            pairs[key.strip()] = unquote(value.strip())
        elif item.strip():
            # The entry is not shown: header values are credentials.
            warn(f"ignoring a malformed entry in {variable} (expected key=value)")
    return pairs


def resolve_settings(
    config: OtlpConfig, environ: Mapping[str, str], signal: Signal = "metrics", warn: Warn | None = None
) -> ExportSettings:
    """Resolve one signal's settings; invalid variables are ignored with a warning, as the spec asks.

    Warnings are logged, or handed to `warn` (check-config collects them to print them).
    """
    warn = warn or _log_warning
    protocol = cast(
        Protocol, config.protocol or _choice(_env(environ, signal, "PROTOCOL"), ("grpc", "http/protobuf"), warn)
    )
    protocol = protocol or "http/protobuf"
    specific = _endpoint(environ, f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", protocol, warn)
    generic = _endpoint(environ, "OTEL_EXPORTER_OTLP_ENDPOINT", protocol, warn)
    path = f"/v1/{signal}"
    if config.endpoint is not None:
        endpoint = config.endpoint if protocol == "grpc" else config.endpoint + path
    elif specific:
        endpoint = specific  # a signal-specific URL is used as it is, path included
    else:
        base = (generic or _DEFAULT_ENDPOINT[protocol]).rstrip("/")
        endpoint = base if protocol == "grpc" else base + path
    if protocol == "grpc" and urlparse(endpoint).scheme not in ("http", "https"):
        # A bare host:port (allowed in the variables): TLS unless OTEL_EXPORTER_OTLP_INSECURE=true.
        plaintext = _choice(_env(environ, signal, "INSECURE"), ("true", "false"), warn) == "true"
        endpoint = f"{'http' if plaintext else 'https'}://{endpoint}"
    if protocol == "grpc" and "@" in urlparse(endpoint).netloc:
        # gRPC has no use for user-info (credentials go in headers), and the SDK's exporter would
        # print it in every failure line ("Failed to export metrics to user:password@host").
        parts = urlparse(endpoint)
        endpoint = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        log.warning("otlp endpoint: gRPC does not use the user-info of the URL; dropped (give credentials in headers)")

    headers = {key.lower(): value for key, value in _key_values(_env(environ, signal, "HEADERS"), warn).items()}
    headers.update({name: secret.reveal() for name, secret in config.headers.items()})

    timeout = config.timeout_seconds or _milliseconds(_env(environ, signal, "TIMEOUT"), warn)
    compression = config.compression or _choice(_env(environ, signal, "COMPRESSION"), ("gzip", "none"), warn)
    compression = compression or "none"

    origins: dict[str, str] = {}

    def path_of(configured: Path | None, key: str, name: str) -> Path | None:
        if configured is not None:
            origins[key] = f"otlp.{key}"
            return configured
        found = _env(environ, signal, name)
        if found is None:
            return None
        origins[key] = found[0]
        return Path(found[1])

    interval = config.interval_seconds or _milliseconds(_var(environ, "OTEL_METRIC_EXPORT_INTERVAL"), warn)
    temporality = config.temporality or _choice(
        _var(environ, "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"), ("cumulative", "delta", "lowmemory"), warn
    )
    return ExportSettings(
        signal=signal,
        protocol=protocol,
        endpoint=endpoint,
        insecure=urlparse(endpoint).scheme == "http",
        headers=headers,
        timeout=timeout or DEFAULT_TIMEOUT_SECONDS,
        compression=cast(Literal["gzip", "none"], compression),
        certificate_file=path_of(config.certificate_file, "certificate_file", "CERTIFICATE"),
        client_certificate_file=path_of(
            config.client_certificate_file, "client_certificate_file", "CLIENT_CERTIFICATE"
        ),
        client_key_file=path_of(config.client_key_file, "client_key_file", "CLIENT_KEY"),
        interval=interval or DEFAULT_INTERVAL_SECONDS,
        temporality=cast(Literal["cumulative", "delta", "lowmemory"], temporality or "cumulative"),
        tls_origins=origins,
    )


# http(s)://host[:port][/path], as the configuration's `otlp.endpoint` must be; gRPC variables may also be
# a bare host:port (the specification's INSECURE variables then say whether it is plaintext).
_URL = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[^/\s?#\[\]:]+)(:[0-9]{1,5})?(/\S*)?")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^/\s?#\[\]:]+):[0-9]{1,5}")


def _endpoint(environ: Mapping[str, str], variable: str, protocol: Protocol, warn: Warn) -> str:
    """An endpoint variable's value, or "" (with a warning) when it is not a URL: the specification's rule
    for an invalid variable, where an unparsable one used to stop the start with a traceback."""
    value = environ.get(variable, "").strip()
    if not value or _URL.fullmatch(value) or (protocol == "grpc" and _HOST_PORT.fullmatch(value)):
        return value
    warn(f"ignoring {variable}={value!r}: expected an http(s):// URL")
    return ""


def build_resource(
    config: OtlpConfig, environ: Mapping[str, str], instance_id: str | None = None, warn: Warn | None = None
) -> Resource:
    """The Resource of everything the agent pushes.

    Built-in defaults (service.name=qss-exporter, service.version, a random service.instance.id per
    process), overridden by OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME, then the config's
    `otlp.resource_attributes`.
    """
    defaults = Resource(
        {
            "service.name": "qss-exporter",
            "service.version": __version__,
            "service.instance.id": instance_id or str(uuid.uuid4()),
        }
    )
    detected = _key_values(_var(environ, "OTEL_RESOURCE_ATTRIBUTES"), warn or _log_warning)
    if service := environ.get("OTEL_SERVICE_NAME", "").strip():
        detected["service.name"] = service
    return defaults.merge(Resource(detected)).merge(Resource(dict(config.resource_attributes)))


_TLS_KEYS = ("certificate_file", "client_certificate_file", "client_key_file")


def _read_tls(settings: ExportSettings) -> tuple[list[bytes | None], list[str]]:
    """The three TLS files' contents (None where not set), and a problem line for each that cannot be read."""
    contents: list[bytes | None] = []
    problems: list[str] = []
    for key in _TLS_KEYS:
        path: Path | None = getattr(settings, key)
        content = None
        if path is not None:
            try:
                content = path.read_bytes()
            except OSError as exc:
                origin = settings.tls_origins.get(key, f"otlp.{key}")
                problems.append(f"{origin}: cannot read {path}: {exc.strerror or type(exc).__name__}")
        contents.append(content)
    return contents, problems


def tls_problems(settings: ExportSettings) -> list[str]:
    """`key: cannot read PATH: reason` for each TLS file the exporter would fail to read (start-up refuses them)."""
    return _read_tls(settings)[1]


def build_log_exporter(settings: ExportSettings) -> LogRecordExporter:
    """The SDK's OTLP log exporter (gRPC or HTTP/protobuf) for these settings.

    Its own retry loop (exponential backoff with jitter, honouring Retry-After / RetryInfo, within
    `timeout`) handles transient failures; TLS files are read here so that a bad path fails the start.
    (Metrics are sent by outputs/otlp_transport.py, with the same behaviour.)
    """
    files = tls_files(settings)
    if settings.protocol == "grpc":
        return GrpcLogExporter(
            endpoint=settings.endpoint,
            insecure=settings.insecure,
            credentials=grpc_credentials(settings, files),
            headers=dict(settings.headers),
            timeout=settings.timeout,
            compression=_GRPC_COMPRESSION[settings.compression],
        )
    return HttpLogExporter(
        endpoint=settings.endpoint,
        certificate_file=_str(settings.certificate_file),
        client_certificate_file=_str(settings.client_certificate_file),
        client_key_file=_str(settings.client_key_file),
        headers=dict(settings.headers),
        timeout=settings.timeout,
        compression=_HTTP_COMPRESSION[settings.compression],
    )


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def tls_files(settings: ExportSettings) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The CA, client certificate and key contents (None where not set); ConfigError naming each unreadable one."""
    (ca, certificate, key), problems = _read_tls(settings)
    if problems:
        raise ConfigError(problems)
    return ca, certificate, key


def grpc_credentials(
    settings: ExportSettings, files: tuple[bytes | None, bytes | None, bytes | None]
) -> grpc.ChannelCredentials | None:
    if settings.insecure:
        return None
    ca, certificate, key = files
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=certificate)
