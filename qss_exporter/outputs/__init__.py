"""Renderings of the metric store: Prometheus / OpenMetrics text and the metrics HTTP listener."""
