"""Zoom's words mapped onto the exporter's small, fixed label vocabularies.

Every function here returns a value from a closed set (or None), so that whatever Zoom sends,
enrichment labels cannot grow without bound.
"""

from __future__ import annotations

from typing import Final

from qss_exporter.zoom.records import Media, Quality

__all__ = [
    "CLIENT_OS_VALUES",
    "DATA_CENTERS",
    "MEDIA_OF_TYPE",
    "NETWORK_TYPES",
    "NOTIFICATIONS",
    "PHONE_DIRECTIONS",
    "PHONE_LEGS",
    "QUALITIES",
    "STREAM_TYPES",
    "client_os",
    "client_version",
    "data_center",
    "media_of_type",
    "network_type",
    "notification",
]

_MEDIA: Final[dict[str, Media]] = {"audio": "audio", "video": "video", "as": "share"}


def _stream_types() -> dict[str, tuple[Media, str, str]]:
    types: dict[str, tuple[Media, str, str]] = {}
    for prefix, media in _MEDIA.items():
        types[f"{prefix}_input"] = (media, "input", "client")
        types[f"{prefix}_output"] = (media, "output", "client")
        for path in ("crc", "rwg"):
            types[f"{prefix}_device_from_{path}"] = (media, "from", path)
            types[f"{prefix}_device_to_{path}"] = (media, "to", path)
    return types


# QoS `type` -> (media, direction, path): the 18 media types of REFERENCE.md §1.6.
STREAM_TYPES: Final = _stream_types()

# QoS `type` -> the media it speaks about, for every type that has one (media_of_type, read inline).
MEDIA_OF_TYPE: Final[dict[str, Media]] = {
    **{kind: stream[0] for kind, stream in STREAM_TYPES.items()},
    **{f"{prefix}_quality": media for prefix, media in _MEDIA.items()},
}

QUALITIES: Final[dict[str, Quality]] = {"good": "good", "fair": "fair", "poor": "poor", "bad": "bad"}
PHONE_LEGS: Final = frozenset({"caller", "callee"})
PHONE_DIRECTIONS: Final = frozenset({"sending", "receiving"})


def media_of_type(kind: object) -> Media | None:
    """The media a QoS entry type speaks about: `audio_quality` and `audio_input` -> audio."""
    return MEDIA_OF_TYPE.get(kind) if isinstance(kind, str) else None


_NETWORK_TYPES: Final = {
    "wired": "wired",
    "ethernet": "wired",
    "wifi": "wifi",
    "wi-fi": "wifi",
    "cellular": "cellular",
    "3g": "cellular",
    "4g": "cellular",
    "5g": "cellular",
    "lte": "cellular",
    "ppp": "ppp",
    "others": "other",
    "other": "other",
}


# Every value network_type() can return (its closed label set).
NETWORK_TYPES: Final = frozenset(_NETWORK_TYPES.values())


def network_type(raw: object) -> str | None:
    """`Wired`, `Wifi`, `Cellular`, `3G`, `PPP`, `Others` -> wired, wifi, cellular, ppp, other."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    return _NETWORK_TYPES.get(raw.strip().lower(), "other")


_CLIENT_OS: Final = {
    "windows": "windows",
    "win": "windows",
    "mac": "macos",
    "macos": "macos",
    "ios": "ios",
    "ipados": "ios",
    "android": "android",
    "linux": "linux",
    "chromeos": "chromeos",
    "phone": "phone",
    "h.323/sip": "h323_sip",
    "web": "web",
}


# Every value client_os() can return, `other` included.
CLIENT_OS_VALUES: Final = frozenset({*_CLIENT_OS.values(), "other"})


def client_os(raw: object) -> str | None:
    """Zoom's join `device` (`Windows`, `WIN`, `Mac`, `iOS`, `H.323/SIP`, ...) as a small enum."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    return _CLIENT_OS.get(raw.strip().lower(), "other")


def client_version(raw: object) -> str | None:
    """Major.minor of a client version ("6.2.5.41632" -> "6.2"): patch builds would explode cardinality.

    Each part has at most two digits (Zoom's clients are 5.x and 6.x, its SDKs 1.x and 2.x); anything
    else is "other". The enrichment directory also bounds how many distinct versions it labels.
    """
    if not isinstance(raw, str) or not raw.strip():
        return None
    parts = raw.strip()[:64].split(".")
    if len(parts) >= 2 and all(p.isascii() and p.isdigit() and len(p) <= 2 for p in parts[:2]):
        return f"{int(parts[0])}.{int(parts[1])}"
    return "other"


# Zoom's data-centre codes as its documents show them. Zoom publishes no complete list of the site
# codes that `data_center` carries, so this is the union of:
# * the data-centre region codes of the `data_center_regions` meeting setting (Zoom API reference,
#   which points to the "Datacenter abbreviation list" support article 360059254691): AU, LA, CA,
#   CN, DE, HK, IN, IE, TY, MX, NL, SG, US;
# * the site codes in Zoom's QSS and Dashboard examples: "FR (Sub)", "AMS (Sub)", "DV (Sub)" in the
#   `*_data` events, "Germany (FR Top)" in the Dashboard's `data_center`, and the "SC (Sub)" form
#   REFERENCE.md 1.8 describes (SC: San Jose, Zoom's home site);
# * NY (New York), which the bundled demo's simulated organisation uses; no Zoom document we found
#   confirms it, and it does no harm if Zoom never sends it.
# Other codes become "other" unless the operator lists them in `labels.extra_data_centers`.
DATA_CENTERS: Final = frozenset(
    {"AU", "LA", "CA", "CN", "DE", "HK", "IN", "IE", "TY", "MX", "NL", "SG", "US", "FR", "AMS", "DV", "SC", "NY"}
)
_CODE_MAX = 4


def _code(text: str) -> str | None:
    code = text.strip().upper()
    return code if 0 < len(code) <= _CODE_MAX and code.isascii() and code.isalnum() else None


def data_center(raw: object) -> str | None:
    """The data-centre code in Zoom's `data_center`: "FR (Sub)" and "Germany (FR Top)" both give "FR".

    Returns an upper-case code of at most four letters or digits, documented or not (the enrichment
    directory closes the set against DATA_CENTERS and the operator's extra codes), or "other" for
    text that holds no such code.
    """
    if not isinstance(raw, str) or not raw.strip():
        return None
    outer, _, inner = raw[:64].partition("(")
    found = _code(outer)
    if found is None and inner:
        words = inner.partition(")")[0].split()
        found = _code(words[0]) if words else None
    return found or "other"


_NOTIFICATIONS: Final = {
    "network bandwidth low": "network_bandwidth_low",
    "internet connection unstable": "internet_connection_unstable",
}


# Every value notification() can return, `other` included.
NOTIFICATIONS: Final = frozenset({*_NOTIFICATIONS.values(), "other"})


def notification(raw: str) -> str:
    """Zoom's `network_notification` text as a label value; unknown texts become "other"."""
    return _NOTIFICATIONS.get(raw.strip().lower(), "other")
