"""Effective OTLP settings: config keys over OTEL_* variables over the specification's defaults;
the resource, TLS files, and the names of families missing from the table."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from qss_exporter import __version__
from qss_exporter.config import OtlpConfig
from qss_exporter.errors import ConfigError
from qss_exporter.outputs.otlp_names import otlp_name
from qss_exporter.outputs.otlp_settings import build_log_exporter, build_resource, resolve_settings
from qss_exporter.outputs.otlp_transport import build_metric_transport


def config(**keys: Any) -> OtlpConfig:
    return OtlpConfig.model_validate({"enabled": True, **keys})


def test_defaults_follow_the_specification() -> None:
    settings = resolve_settings(config(), {})
    assert settings.protocol == "http/protobuf"
    assert settings.endpoint == "http://localhost:4318/v1/metrics"
    assert (settings.timeout, settings.interval, settings.compression) == (10.0, 60.0, "none")
    assert settings.temporality == "cumulative"
    assert dict(settings.headers) == {}
    grpc = resolve_settings(config(protocol="grpc"), {})
    assert (grpc.endpoint, grpc.insecure) == ("http://localhost:4317", True)
    assert resolve_settings(config(), {}, "logs").endpoint == "http://localhost:4318/v1/logs"


ENV = {
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4317",
    "OTEL_EXPORTER_OTLP_HEADERS": "api-key=generic,x-team=ops%2Fuc",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "api-key=metrics",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
    "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "gzip",
    "OTEL_METRIC_EXPORT_INTERVAL": "15000",
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "Delta",
    "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ca.pem",
}


def test_environment_variables_are_honoured_with_milliseconds_and_signal_specific_first() -> None:
    settings = resolve_settings(config(), ENV)
    assert settings.protocol == "grpc"
    assert (settings.endpoint, settings.insecure) == ("https://collector.example:4317", False)
    # OTEL_EXPORTER_OTLP_METRICS_HEADERS replaces the generic variable as a whole, as the spec says.
    assert dict(settings.headers) == {"api-key": "metrics"}
    assert (settings.timeout, settings.interval, settings.compression) == (2.5, 15.0, "gzip")
    assert settings.temporality == "delta"
    assert settings.certificate_file == Path("/etc/ca.pem")
    logs = resolve_settings(config(), ENV, "logs")
    assert dict(logs.headers) == {"api-key": "generic", "x-team": "ops/uc"}
    assert logs.compression == "none"


def test_explicit_configuration_wins_over_the_environment() -> None:
    settings = resolve_settings(
        config(
            protocol="http/protobuf",
            endpoint="http://otel:4318/",
            headers={"API-Key": "from-config"},
            timeout_seconds=3,
            compression="none",
            interval_seconds=5,
            temporality="cumulative",
        ),
        ENV,
    )
    assert settings.endpoint == "http://otel:4318/v1/metrics"
    assert dict(settings.headers) == {"api-key": "from-config"}
    assert (settings.timeout, settings.interval, settings.compression) == (3, 5, "none")
    assert settings.temporality == "cumulative"
    assert "from-config" not in repr(settings)
    assert "from-config" not in settings.describe()


def test_signal_endpoint_is_used_as_it_is_and_bare_grpc_hosts_mean_tls() -> None:
    env = {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://gw:9000/otlp/metrics", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}
    assert resolve_settings(config(), env).endpoint == "http://gw:9000/otlp/metrics"
    bare = {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert resolve_settings(config(), bare).endpoint == "https://collector:4317"
    plain = bare | {"OTEL_EXPORTER_OTLP_INSECURE": "true"}
    assert resolve_settings(config(), plain).endpoint == "http://collector:4317"


def test_a_password_in_the_endpoint_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    http = resolve_settings(config(protocol="http/protobuf", endpoint="https://user:URL-PASSWORD@otel:4318"), {})
    assert http.endpoint == "https://user:URL-PASSWORD@otel:4318/v1/metrics"  # HTTP sends it as basic auth
    assert "URL-PASSWORD" not in http.describe()
    with caplog.at_level(logging.WARNING):
        grpc = resolve_settings(config(protocol="grpc", endpoint="https://user:URL-PASSWORD@otel:4317"), {})
    # The gRPC exporter names its endpoint in every failure line, and gRPC has no use for user-info.
    assert grpc.endpoint == "https://otel:4317"
    assert "gRPC does not use the user-info" in caplog.text
    assert "URL-PASSWORD" not in caplog.text


def test_invalid_variables_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "udp",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "soon",
        "OTEL_METRIC_EXPORT_INTERVAL": "-5",
        "OTEL_EXPORTER_OTLP_HEADERS": "secret-value-without-key",
    }
    with caplog.at_level(logging.WARNING):
        settings = resolve_settings(config(), env)
    assert (settings.protocol, settings.timeout, settings.interval) == ("http/protobuf", 10.0, 60.0)
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in caplog.text
    assert "OTEL_METRIC_EXPORT_INTERVAL" in caplog.text
    assert "secret-value-without-key" not in caplog.text


def test_resource_defaults_environment_and_config_in_that_order() -> None:
    resource = build_resource(config(), {}, instance_id="fixed")
    assert dict(resource.attributes) == {
        "service.name": "qss-exporter",
        "service.version": __version__,
        "service.instance.id": "fixed",
    }
    env = {"OTEL_RESOURCE_ATTRIBUTES": "service.name=a,k8s.pod.name=pod%201", "OTEL_SERVICE_NAME": "b"}
    resource = build_resource(config(resource_attributes={"k8s.pod.name": "pod-2"}), env)
    assert resource.attributes["service.name"] == "b"
    assert resource.attributes["k8s.pod.name"] == "pod-2"
    assert build_resource(config(), {}).attributes["service.instance.id"] != resource.attributes["service.instance.id"]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_unreadable_tls_file_fails_the_start_naming_the_key(tmp_path: Path, protocol: str) -> None:
    settings = resolve_settings(
        config(protocol=protocol, endpoint="https://c:4317", certificate_file=str(tmp_path / "no.pem")), {}
    )
    with pytest.raises(ConfigError, match=r"otlp.certificate_file: cannot read .*no.pem: No such file or directory"):
        build_metric_transport(settings)
    with pytest.raises(ConfigError, match=r"otlp.certificate_file: cannot read .*no.pem: No such file or directory"):
        build_log_exporter(
            resolve_settings(config(protocol=protocol, certificate_file=str(tmp_path / "no.pem")), {}, "logs")
        )


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("zoom_qss_future_requests_total", "counter", ("zoom.qss.future_requests", "")),
        ("zoom_qss_poll_duration_seconds", "histogram", ("zoom.qss.poll_duration", "s")),
        ("zoom_qss_ws_bitrate_bytes_per_second", "gauge", ("zoom.qss.ws_bitrate", "By/s")),
        ("zoom_qss_thing_ratio", "gauge", ("zoom.qss.thing_ratio", "1")),
        ("zoom_qss_media_latency_seconds", "histogram", ("zoom.qss.media.latency", "s")),
    ],
)
def test_families_not_in_the_table_get_a_derived_name(name: str, kind: Any, expected: tuple[str, str]) -> None:
    assert otlp_name(name, kind) == expected
