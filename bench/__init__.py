"""Benchmarks of qss-exporter, each measured against a baseline in the same run (ratios hold on noisy machines)."""
