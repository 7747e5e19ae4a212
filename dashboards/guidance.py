"""The quality thresholds that dashboards and alert rules share, each with where it comes from.

One definition per number, so that a threshold line on a panel and the alert that pages on it can never
disagree. docs/dashboards.md lists the same values with their sources; change both together.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CPU_HIGH",
    "JITTER",
    "LATENCY",
    "MIN_SITE_STREAMS",
    "PACKET_LOSS",
    "PHONE_MIN_ACTIVE_CALLS",
    "PHONE_MOS_POOR",
    "PHONE_MOS_POOR_SHARE",
    "QUALITY_SLO",
    "RSSI_WEAK",
    "Threshold",
]


@dataclass(frozen=True, slots=True)
class Threshold:
    """A value beyond which quality is worse than the guidance, in the metric's base unit."""

    value: float
    source: str


# Zoom's network guidance for meetings and Zoom Phone (one-way latency, jitter, average packet loss).
LATENCY = Threshold(0.150, "Zoom network guidance: latency of 150 ms or less")
JITTER = Threshold(0.040, "Zoom network guidance: jitter of 40 ms or less")
PACKET_LOSS = Threshold(0.02, "Zoom network guidance: packet loss of 2 % or less")
# Zoom Phone grades a call leg poor when its MOS is below 3.5 (MOS 1-5, also used for meeting quality scores).
PHONE_MOS_POOR = Threshold(3.5, "Zoom Phone: MOS below 3.5 is poor")

# Not Zoom's: common practice, documented as such.
RSSI_WEAK = Threshold(-67.0, "Wi-Fi design practice for voice and video: -67 dBm or stronger")
CPU_HIGH = Threshold(0.8, "no Zoom guidance; 80 % is the conventional saturation mark")

# Alerting choices of this project (docs/runbook.md explains them).
QUALITY_SLO = 0.99  # objective: 99 % of graded audio participant time is good or fair
PHONE_MOS_POOR_SHARE = 0.10  # alert when more than 10 % of an account's phone MOS samples are poor
PHONE_MIN_ACTIVE_CALLS = 3  # ... and at least this many calls are active (one bad call is not an incident)
# A site or data centre is only judged with at least 6 media streams at once (6 stream-seconds per second of
# zoom_qss_media_time_seconds_total, i.e. 6 participant-stream-minutes a minute).
MIN_SITE_STREAMS = 6
