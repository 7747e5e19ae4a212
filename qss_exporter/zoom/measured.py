"""Which zeros in Zoom's values are measurements, and which only say "not measured" (issue 12 point 4).

Zoom writes `"0 ms"` of latency on output streams whose bitrate is not zero, `"0 kbps"` and
`"0 fps"` for a camera that is off, `"0%"` of CPU for clients that cannot read it. Observing those
zeros would drag every percentile towards a value nobody measured. The rule, field by field:

* latency (`latency`, `avg_latency`, `max_latency`, phone `network_delay`): one-way network delay is
  never exactly 0: not measured;
* jitter: 0 is a smooth path at Zoom's 1 ms resolution, a measurement, unless the same entry's
  latency was not measured either (then nothing about that path was measured);
* bitrate, frame rate and a `0*0` resolution: no media flowed (muted, camera off, nothing shared):
  not measured;
* packet loss: 0 % is the healthy value, counted from sequence numbers: always a measurement;
* MOS and `quality_score`: 0 is below the 1-5 scale (Zoom's Video SDK scores use 0 for "unknown");
* RSSI: 0 dBm is not a Wi-Fi signal a client receives;
* CPU: a running client's maximum over a record is never 0 % (web clients cannot read CPU, which is
  why Zoom added CPU pressure levels); an average of 0 % beside a maximum above 0 is a rounded
  small value and is kept.

Each zero that is not a measurement becomes None and its field is listed, to be counted in
`zoom_qss_unmeasured_values_total{field}`. Pure functions.
"""

from __future__ import annotations

from typing import Final

from qss_exporter.zoom.records import CpuUsage, PhoneSample

__all__ = ["UNMEASURED_FIELDS", "cpu", "phone", "rssi", "score", "stream", "summary_stream"]

UNMEASURED_FIELDS: Final = (
    "latency",
    "jitter",
    "bitrate",
    "frame_rate",
    "resolution",
    "avg_latency",
    "max_latency",
    "avg_jitter",
    "max_jitter",
    "avg_bitrate",
    "max_bitrate",
    "network_delay",
    "mos",
    "quality_score",
    "avg_rssi",
    "zoom_avg_cpu_usage",
    "zoom_max_cpu_usage",
    "system_max_cpu_usage",
)
"""The `field` label values of zoom_qss_unmeasured_values_total: a closed set, present from start."""

_Values = tuple[float | None, float | None, float | None, float | None, float | None]


def stream(
    bitrate: float | None,
    latency: float | None,
    jitter: float | None,
    frame_rate: float | None,
    height: float | None,
    unmeasured: list[str],
) -> _Values:
    """An active real-time stream's (bitrate, latency, jitter, frame rate, height) with its zeros sorted out."""
    if latency == 0.0:
        latency = None
        unmeasured.append("latency")
    if jitter == 0.0 and latency is None:
        jitter = None
        unmeasured.append("jitter")
    if bitrate == 0.0:
        bitrate = None
        unmeasured.append("bitrate")
    if frame_rate == 0.0:
        frame_rate = None
        unmeasured.append("frame_rate")
    if height == 0.0:
        height = None
        unmeasured.append("resolution")
    return bitrate, latency, jitter, frame_rate, height


_Summary = tuple[float | None, float | None, float | None, float | None, float | None, float | None]


def summary_stream(
    avg_bitrate: float | None,
    max_bitrate: float | None,
    avg_latency: float | None,
    max_latency: float | None,
    avg_jitter: float | None,
    max_jitter: float | None,
    unmeasured: list[str],
) -> _Summary:
    """A summarised stream's (avg/max bitrate, avg/max latency, avg/max jitter) with its zeros sorted out."""
    if avg_latency == 0.0:
        avg_latency = None
        unmeasured.append("avg_latency")
    if max_latency == 0.0:
        max_latency = None
        unmeasured.append("max_latency")
    if avg_latency is None and max_latency is None:
        if avg_jitter == 0.0:
            avg_jitter = None
            unmeasured.append("avg_jitter")
        if max_jitter == 0.0:
            max_jitter = None
            unmeasured.append("max_jitter")
    if avg_bitrate == 0.0:
        avg_bitrate = None
        unmeasured.append("avg_bitrate")
    if max_bitrate == 0.0:
        max_bitrate = None
        unmeasured.append("max_bitrate")
    return avg_bitrate, max_bitrate, avg_latency, max_latency, avg_jitter, max_jitter


def score(value: float | None, unmeasured: list[str]) -> float | None:
    """`quality_score`: 0 is Zoom's "unknown"."""
    if value == 0.0:
        unmeasured.append("quality_score")
        return None
    return value


def rssi(value: float | None, unmeasured: list[str]) -> float | None:
    """`avg_rssi`: 0 dBm is no Wi-Fi signal."""
    if value == 0.0:
        unmeasured.append("avg_rssi")
        return None
    return value


def cpu(usage: CpuUsage, unmeasured: list[str]) -> CpuUsage:
    """Client CPU: a maximum of 0 % is not measured, an average of 0 % only when the maximum is not above 0."""
    zoom_avg, zoom_max, system_max = usage
    if zoom_avg == 0.0 and not zoom_max:
        zoom_avg = None
        unmeasured.append("zoom_avg_cpu_usage")
    if zoom_max == 0.0:
        zoom_max = None
        unmeasured.append("zoom_max_cpu_usage")
    if system_max == 0.0:
        system_max = None
        unmeasured.append("system_max_cpu_usage")
    return CpuUsage(zoom_avg, zoom_max, system_max)


def phone(sample: PhoneSample, unmeasured: list[str]) -> PhoneSample:
    """A Zoom Phone sample: MOS, network delay and bitrate of 0 are not measured; jitter as for media."""
    mos, latency, jitter, bitrate = sample.mos, sample.latency, sample.jitter, sample.bitrate
    if mos == 0.0:
        mos = None
        unmeasured.append("mos")
    if latency == 0.0:
        latency = None
        unmeasured.append("network_delay")
    if jitter == 0.0 and latency is None:
        jitter = None
        unmeasured.append("jitter")
    if bitrate == 0.0:
        bitrate = None
        unmeasured.append("bitrate")
    return sample._replace(mos=mos, latency=latency, jitter=jitter, bitrate=bitrate)
