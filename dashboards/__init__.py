"""Grafana dashboards and Prometheus rules for qss-exporter, generated from code (`python -m dashboards.generate`)."""
