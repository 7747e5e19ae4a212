"""The values inside Zoom's events: numbers in units within plausible ranges, words, ids and free text.

A number is kept only when it parses in its field's unit and lies in the field's plausible range;
any other value is refused with a reason (`unparsable`, `out_of_range`) and never observed, so one
absurd number cannot poison a histogram's `_sum` for good. Ids and free text are length-bounded.
Pure, apart from a bounded parse cache.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from qss_exporter.zoom.records import ParseError
from qss_exporter.zoom.units import (
    DBM,
    FPS,
    KBPS,
    MILLISECONDS,
    PERCENT,
    PLAIN,
    Unit,
    UnitError,
    UnitRangeError,
    parse_quantity,
    parse_resolution_height,
)

__all__ = [
    "CACHE_MAX_CHARS",
    "FIELDS",
    "FREE_TEXT_MAX",
    "ID_MAX",
    "INT_ID_LIMIT",
    "MALFORMED",
    "OUT_OF_RANGE",
    "PARSE_ERRORS",
    "QOS_MALFORMED",
    "QOS_TOO_MANY",
    "REASONS",
    "TEXT_FIELDS",
    "TOO_MANY_ENTRIES",
    "UNPARSABLE",
    "Fields",
    "cached_strings",
    "free_text",
    "height_of",
    "identifier",
    "parse_cache",
    "quantity",
    "resolution_height",
    "text_of",
    "timestamp_seconds",
    "timestamp_text",
    "value_of",
]

# Why a value (or an entry, or a whole event) was refused: the `reason` label of zoom_qss_parse_errors_total.
UNPARSABLE: Final = "unparsable"  # not a number in the field's unit, or not one of the field's words
OUT_OF_RANGE: Final = "out_of_range"  # a number no client can have measured (negative latency, 10^18 ms)
MALFORMED: Final = "malformed"  # a part of the event of the wrong shape: the entry or the event is dropped
TOO_MANY_ENTRIES: Final = "too_many_entries"  # more entries than Zoom can send in one event
REASONS: Final = (UNPARSABLE, OUT_OF_RANGE, MALFORMED, TOO_MANY_ENTRIES)
QOS_MALFORMED: Final = ("qos", MALFORMED)
QOS_TOO_MANY: Final = ("qos", TOO_MANY_ENTRIES)

# The plausible range of each kind of value, in base units (inclusive). Wide enough for anything a
# client can measure, narrow enough that a forged or corrupt value cannot dwarf a day of real ones.
_DELAY = (MILLISECONDS, 0.0, 60.0)  # latency, jitter: up to a minute
_RATIO = (PERCENT, 0.0, 1.0)  # packet loss, CPU: 0-100 %
_BITRATE = (KBPS, 0.0, 1.25e9)  # up to 10 Gbit/s, in bytes/s
_FRAME_RATE = (FPS, 0.0, 240.0)
_RSSI = (DBM, -120.0, 0.0)  # Wi-Fi signal strength
_MOS = (PLAIN, 1.0, 5.0)  # Mean Opinion Score, 1-5 by definition
# Zoom documents no scale for quality_score; its examples (2.41-4.12) look MOS-like. 0 is allowed
# because Zoom's other quality scores (Video SDK network quality) use 0 for "unknown".
_SCORE = (PLAIN, 0.0, 5.0)
_HEIGHT_MAX = 8640.0  # 16K video

FIELDS: Final[dict[str, tuple[Unit, float, float]]] = {
    "bitrate": _BITRATE,
    "avg_bitrate": _BITRATE,
    "max_bitrate": _BITRATE,
    "latency": _DELAY,
    "avg_latency": _DELAY,
    "max_latency": _DELAY,
    "network_delay": _DELAY,
    "jitter": _DELAY,
    "avg_jitter": _DELAY,
    "max_jitter": _DELAY,
    "avg_loss": _RATIO,
    "max_loss": _RATIO,
    "frame_rate": _FRAME_RATE,
    "zoom_avg_cpu_usage": _RATIO,
    "zoom_max_cpu_usage": _RATIO,
    "system_max_cpu_usage": _RATIO,
    "avg_rssi": _RSSI,
    "quality_score": _SCORE,
    "mos": _MOS,
}
"""Every numeric `details` field the decoder reads: its unit and plausible range (base units)."""

# Fields holding one of a few words (read with Fields.text); anything else is `unparsable`.
TEXT_FIELDS: Final = ("quality", "rssi_unit", "network_notification")
_TEXT_MAX = 64  # Zoom's longest word here is "internet connection unstable"

# The parts of an event that are refused whole when missing or of the wrong shape (the event, or the
# entry, is dropped).
_STRUCTURE = (
    "envelope",
    "event",
    "payload",
    "plainToken",
    "account_id",
    "object",
    "uuid",
    "session_id",
    "participant",
    "user",
    "user_id",
    "participant_id",
    "id",
    "qos",
    "details",
    "type",
    "data",
    "call_id",
    "call_qos",
    "call_qos.type",
    "qos.type",
    "participants",
    "users",
)
PARSE_ERRORS: Final[tuple[ParseError, ...]] = (
    *((field, UNPARSABLE) for field in (*FIELDS, "resolution", *TEXT_FIELDS)),
    *((field, OUT_OF_RANGE) for field in (*FIELDS, "resolution")),
    *((field, MALFORMED) for field in _STRUCTURE),
    *((field, TOO_MANY_ENTRIES) for field in ("qos", "call_qos", "data")),
)
"""Every (field, reason) a decoded record or an InvalidEvent can report: a closed label set."""

# Zoom's value strings repeat endlessly ("0 ms", "41 kbps", "0.0%"): remembering each string's parse
# made decoding ~2x faster (bench/hotpath.py). One cache per (unit, range), cleared when full, and only
# for short strings (Zoom's are under 16 characters), so that it holds at most ~1.5 MiB each whatever
# is sent: a megabyte-long value is parsed (and refused) but never kept.
_CACHE_LIMIT = 16_384
CACHE_MAX_CHARS: Final = 32
_MISSING = object()
_Kind = tuple[Unit, float, float]
_Cache = dict[str, float | str | None]
_CACHES: dict[_Kind, _Cache] = {kind: {} for kind in set(FIELDS.values())}
# Field name -> (its cache, its kind): one lookup by an interned string per value on the hot path.
_BY_FIELD: dict[str, tuple[_Cache, _Kind]] = {key: (_CACHES[kind], kind) for key, kind in FIELDS.items()}
_HEIGHTS: _Cache = {}


def _parse(raw: object, kind: _Kind) -> float | str | None:
    """The value in base units, None for no value, or the reason it is refused."""
    unit, low, high = kind
    try:
        value = parse_quantity(raw, unit)
    except UnitRangeError:
        return OUT_OF_RANGE
    except UnitError:
        return UNPARSABLE
    # An exact 0 always passes: whether it is a measurement is the decoder's call (zoom/measured.py).
    if value is None or low <= value <= high or value == 0.0:
        return value
    return OUT_OF_RANGE


def _remember(cache: _Cache, raw: str, value: float | str | None) -> None:
    if len(raw) <= CACHE_MAX_CHARS:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[raw] = value


def parse_cache(key: str) -> dict[str, float | str | None]:
    """The parse cache of a FIELDS key or of "resolution", for lookups inlined on the typed fast path.

    Only read there: a miss, a None or a refusal goes through `value_of` / `height_of`, which fill it.
    """
    return _HEIGHTS if key == "resolution" else _BY_FIELD[key][0]


def cached_strings() -> set[str]:
    """Every string the parse caches hold now (for tests of their bound)."""
    return {raw for cache in (*_CACHES.values(), _HEIGHTS) for raw in cache}


def quantity(details: dict[str, Any], key: str, errors: list[ParseError]) -> float | None:
    """details[key] (a FIELDS key) in base units; None when absent, empty or refused (the reason joins errors)."""
    return value_of(details.get(key), key, errors)


def value_of(raw: object, key: str, errors: list[ParseError]) -> float | None:
    """A raw value of the FIELDS key `key` in base units, as `quantity` reads it (zoom/typed.py shares it)."""
    if raw is None:
        return None
    cache, kind = _BY_FIELD[key]
    if raw.__class__ is str:
        value = cache.get(raw, _MISSING)
        if value is _MISSING:
            value = _parse(raw, kind)
            _remember(cache, raw, value)
    else:
        value = _parse(raw, kind)
    if value.__class__ is str:
        errors.append((key, value))
        return None
    return value  # type: ignore[return-value]  # float | None once a reason is ruled out


def resolution_height(details: dict[str, Any], errors: list[ParseError]) -> float | None:
    """The height of `resolution` ("1280*720" -> 720.0, "0*0" -> 0.0); "" is no value."""
    return height_of(details.get("resolution"), errors)


def height_of(raw: object, errors: list[ParseError]) -> float | None:
    """A raw `resolution` value's height, as `resolution_height` reads it."""
    if raw is None:
        return None
    value = _HEIGHTS.get(raw, _MISSING) if raw.__class__ is str else _MISSING
    if value is _MISSING:
        try:
            height = parse_resolution_height(raw)
            value = OUT_OF_RANGE if height is not None and height > _HEIGHT_MAX else height
        except UnitRangeError:
            value = OUT_OF_RANGE
        except UnitError:
            value = UNPARSABLE
        if raw.__class__ is str:
            _remember(_HEIGHTS, raw, value)
    if value.__class__ is str:
        errors.append(("resolution", value))
        return None
    return value  # type: ignore[return-value]


class Fields:
    """One `details` object and the list its refused values are reported to."""

    __slots__ = ("details", "errors")

    def __init__(self, details: dict[str, Any], errors: list[ParseError]) -> None:
        self.details = details
        self.errors = errors

    def get(self, key: str) -> float | None:
        return quantity(self.details, key, self.errors)

    def height(self) -> float | None:
        return resolution_height(self.details, self.errors)

    def text(self, key: str) -> str | None:
        """A word (`quality`, `rssi_unit`, `network_notification`), stripped; None when absent or unusable."""
        raw = self.details.get(key)
        if raw.__class__ is dict:
            # Zoom's webinar schema nests a `quality` object inside `quality`: one level is read, never more.
            raw = raw.get(key)
        return text_of(raw, key, self.errors)


def text_of(raw: object, key: str, errors: list[ParseError]) -> str | None:
    """A raw word as `Fields.text` reads it (after its one level of nesting): stripped, bounded, or refused."""
    if raw.__class__ is str and len(raw) <= _TEXT_MAX:
        return raw.strip() or None
    if raw is not None:
        errors.append((key, UNPARSABLE))
    return None


FREE_TEXT_MAX: Final = 128  # characters of a name, email, topic or meeting number kept for detail mode


def free_text(value: object, limit: int = FREE_TEXT_MAX) -> str:
    """A string field kept as text: stripped, cut to `limit` characters, control characters made spaces.

    Anything that is not a string is "". These values can become detail-mode labels (plain topic or
    name), so they are bounded here, once, whatever a sender puts in them.
    """
    if value.__class__ is not str:
        return ""
    text = value[: limit * 2].strip()[:limit]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else " " for c in text)
    return text


ID_MAX: Final = 128  # Zoom's ids (instance uuids, participant and call ids) are 8-40 characters
INT_ID_LIMIT: Final = 2**64
_STAMP_MAX = 40  # an ISO-8601 date_time, with fractions and an offset


def identifier(value: object) -> str | None:
    """An id Zoom sends as a string or a number, as text; None when absent, empty, huge or of another type."""
    if value.__class__ is str:
        return value if 0 < len(value) <= ID_MAX else None
    if value.__class__ is int and -INT_ID_LIMIT < value < INT_ID_LIMIT:
        return str(value)
    return None


def timestamp_text(value: object) -> str:
    """A `date_time` as sent (it is part of a record's identity), or "" when it is no plausible time."""
    return value if value.__class__ is str and len(value) <= _STAMP_MAX else ""


_SECONDS: dict[str, float | None] = {}


def timestamp_seconds(text: str) -> float | None:
    """A `date_time` ("2025-10-24T14:51:00Z", ISO 8601) as Unix seconds; None when it is not one.

    Without an offset it is read as UTC (Zoom's are). Remembered (a minute's stamps repeat for every
    participant), in a cache cleared when full.
    """
    value = _SECONDS.get(text, _MISSING)
    if value is _MISSING:
        try:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            value = moment.timestamp()
        except (ValueError, OverflowError):
            value = None
        if len(_SECONDS) >= _CACHE_LIMIT:
            _SECONDS.clear()
        _SECONDS[text] = value
    return value  # type: ignore[return-value]  # float | None once _MISSING is ruled out
