"""Tests of the demo's simulated organisation."""
