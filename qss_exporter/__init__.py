"""qss-exporter: Zoom QSS data as Prometheus and OpenTelemetry metrics."""

__version__ = "0.1.0"
