"""Zoom's unit-bearing strings ("63 kbps", "27.15Kbps", "134 ms", "0.2%", "1280*720") as base-unit numbers.

Pure functions. "No value" (None) and "unparsable" (UnitError) are kept apart so that the caller can
count the second kind per field without ever recording either as 0. Hand-written rather than a regex:
this runs ~50 times per webhook and the regex version measured ~2x slower (bench/units).
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = [
    "DBM",
    "FPS",
    "KBPS",
    "MILLISECONDS",
    "PERCENT",
    "PLAIN",
    "Unit",
    "UnitError",
    "UnitRangeError",
    "parse_quantity",
    "parse_resolution_height",
]


class Unit(NamedTuple):
    """A unit Zoom writes after a number, and how to reach the base unit from it.

    The power of ten is applied to the decimal text before it becomes a float, so "1.4%" gives
    exactly float("0.014") rather than 1.4 / 100 = 0.013999999999999999.
    """

    suffix: str  # lower-case, as matched against the end of the value
    decimal_exponent: int
    factor: float  # applied after the exponent; only powers of two, so exact


KBPS = Unit("kbps", 3, 0.125)  # kbit/s -> bytes/s: x 1000 / 8
MILLISECONDS = Unit("ms", -3, 1.0)  # -> seconds
PERCENT = Unit("%", -2, 1.0)  # -> ratio 0-1
FPS = Unit("fps", 0, 1.0)
DBM = Unit("dbm", 0, 1.0)
PLAIN = Unit("", 0, 1.0)


class UnitError(ValueError):
    """A value that is present but not a number in the expected unit."""


class UnitRangeError(UnitError):
    """A number too large for a float (or for Python's int -> str limit): surely not a measurement."""


# Beyond this an int is no measurement; it also keeps repr() below Python's 4300-digit limit.
_INT_LIMIT = 10**18


def _plain_decimal(text: str) -> bool:
    # float() also takes "nan", "1e3", "1_000" and non-ASCII digits; Zoom sends none of these, so
    # they are rejected as unparsable instead of being silently accepted.
    digits = text.replace(".", "", 1)
    if digits[:1] in ("-", "+"):
        digits = digits[1:]
    return digits.isascii() and digits.isdigit()


def parse_quantity(raw: object, unit: Unit) -> float | None:
    """Parse a number that may carry `unit` and return it in the base unit.

    Returns the base-unit number, None for no value (missing,
    null or empty/blank string), and raises UnitError for anything else. The unit is optional,
    may be separated by spaces and is matched without regard to case: "63 kbps", "63kbps",
    "63 Kbps" and "63" all give 63.0.
    """
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        suffix = unit.suffix
        if suffix and text[-len(suffix) :].lower() == suffix:
            text = text[: -len(suffix)].rstrip()
        if not _plain_decimal(text):
            raise UnitError(f"{_short(raw)} is not a number in {suffix or 'plain units'}")
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        if isinstance(raw, int) and not -_INT_LIMIT < raw < _INT_LIMIT:
            raise UnitRangeError(f"an integer of {len(str(_INT_LIMIT))} or more digits is out of range")
        if not math.isfinite(raw):
            raise UnitError(f"{raw!r} is not finite")
        text = repr(raw)
        if "e" in text:  # 1e+16: already in exponent form, scale numerically
            scaled = float(raw) * 10.0**unit.decimal_exponent * unit.factor
            if not math.isfinite(scaled):
                raise UnitRangeError(f"{raw!r} is out of range")
            return scaled
    elif raw is None:
        return None
    else:
        raise UnitError(f"{type(raw).__name__} is not a number")
    value = float(f"{text}e{unit.decimal_exponent}") if unit.decimal_exponent else float(text)
    if not math.isfinite(value):  # a few hundred digits overflow to inf
        raise UnitRangeError(f"{_short(raw)} is out of range")
    return value * unit.factor if unit.factor != 1.0 else value


def parse_resolution_height(raw: object) -> float | None:
    """Height in pixels from Zoom's "width*height" ("1280*720" -> 720.0; "x" also accepted).

    "" is no value, Zoom's idle "0*0" a height of 0 (the decoder counts it as not measured); anything
    else that is not two integers raises UnitError.
    """
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise UnitError(f"{type(raw).__name__} is not a resolution")
    text = raw.strip()
    if not text:
        return None
    for separator in ("*", "x", "X"):
        width, found, height = text.partition(separator)
        if found:
            width, height = width.strip(), height.strip()
            if width.isascii() and width.isdigit() and height.isascii() and height.isdigit():
                # float(), not int(): int() refuses more than 4300 digits, float() gives inf.
                value = float(height)
                if not math.isfinite(value):
                    raise UnitRangeError(f"{_short(raw)} is out of range")
                return value
            break
    raise UnitError(f"{_short(raw)} is not width*height")


def _short(raw: object) -> str:
    """The value for an error message, cut short: it may be megabytes long."""
    text = repr(raw) if isinstance(raw, str) else type(raw).__name__
    return text if len(text) <= 40 else f"{text[:37]}..."
