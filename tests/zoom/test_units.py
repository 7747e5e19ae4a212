from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

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

# Every literal form REFERENCE.md §1.7 documents, with the exact base-unit number it must become.
DOCUMENTED = [
    ("63 kbps", KBPS, 7875.0),
    ("27.15kbps", KBPS, 3393.75),
    ("27.15 Kbps", KBPS, 3393.75),
    ("6 kbps", KBPS, 750.0),
    ("391 kbps", KBPS, 48875.0),
    ("6", KBPS, 750.0),  # phone: no unit
    ("134 ms", MILLISECONDS, 0.134),
    ("0 ms", MILLISECONDS, 0.0),
    ("0ms", MILLISECONDS, 0.0),
    ("126 ms", MILLISECONDS, 0.126),
    ("8", MILLISECONDS, 0.008),  # phone jitter
    ("0.0%", PERCENT, 0.0),
    ("0.03%", PERCENT, 0.0003),
    ("0.4%", PERCENT, 0.004),
    ("1.4%", PERCENT, 0.014),
    ("0.0", PERCENT, 0.0),  # phone loss
    ("12 fps", FPS, 12.0),
    ("0 fps", FPS, 0.0),
    ("1%", PERCENT, 0.01),
    ("23%", PERCENT, 0.23),
    ("3.65", PLAIN, 3.65),
    ("4.5", PLAIN, 4.5),
    ("-56", DBM, -56.0),
    (-69, DBM, -69.0),
    ("-63 dBm", DBM, -63.0),
    (" 63  KBPS ", KBPS, 7875.0),
    (41, KBPS, 5125.0),
    (0.5, PERCENT, 0.005),
]


@pytest.mark.parametrize(("raw", "unit", "expected"), DOCUMENTED)
def test_documented_literals_convert_exactly(raw: object, unit: Unit, expected: float) -> None:
    assert parse_quantity(raw, unit) == expected


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_empty_is_no_value(raw: object) -> None:
    assert parse_quantity(raw, MILLISECONDS) is None


@pytest.mark.parametrize(
    "raw",
    [
        "abc",
        "12 kbps",
        "nan",
        "inf",
        "1e3",
        "1_000",
        "--5",
        "٣",
        "1.2.3",
        "-",
        ".",
        "ms",
        True,
        [],
        {},
        math.inf,
        math.nan,
    ],
)
def test_unparsable_raises(raw: object) -> None:
    with pytest.raises(UnitError):
        parse_quantity(raw, MILLISECONDS)


@pytest.mark.parametrize(
    ("raw", "height"),
    [
        ("1280*720", 720.0),
        ("640*360", 360.0),
        ("1920 * 1080", 1080.0),
        ("1280x720", 720.0),
        ("0*0", 0.0),  # idle: the decoder counts it as not measured (zoom/measured.py)
        ("", None),
        (None, None),
    ],
)
def test_resolution(raw: object, height: float | None) -> None:
    assert parse_resolution_height(raw) == height


@pytest.mark.parametrize("raw", ["1280", "a*b", "1280*", "*720", 720, "1280*720*3"])
def test_bad_resolution_raises(raw: object) -> None:
    with pytest.raises(UnitError):
        parse_resolution_height(raw)


UNITS = [KBPS, MILLISECONDS, PERCENT, FPS, DBM, PLAIN]


@given(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.lists(st.integers())),
    st.sampled_from(UNITS),
)
def test_never_raises_anything_but_unit_error(raw: object, unit: Unit) -> None:
    try:
        value = parse_quantity(raw, unit)
    except UnitError:
        return
    assert value is None or math.isfinite(value)


@given(
    st.decimals(min_value=-(10**6), max_value=10**6, places=3, allow_nan=False, allow_infinity=False),
    st.sampled_from(UNITS),
    st.sampled_from(["", " ", "  "]),
    st.booleans(),
)
def test_any_decimal_with_unit_matches_float_of_scaled_text(
    number: object, unit: Unit, space: str, upper: bool
) -> None:
    text = f"{number}{space}{unit.suffix.upper() if upper else unit.suffix}"
    expected = float(f"{number}e{unit.decimal_exponent}") * unit.factor
    assert parse_quantity(text, unit) == expected


@given(
    st.integers(min_value=1, max_value=8000),
    st.integers(min_value=1, max_value=8000),
    st.sampled_from(["*", "x", " * "]),
)
def test_resolution_height_property(width: int, height: int, separator: str) -> None:
    assert parse_resolution_height(f"{width}{separator}{height}") == float(height)


@pytest.mark.parametrize(
    "raw", ["9" * 400, 10**5000, 10**400, "1*" + "9" * 5000], ids=["400 digits", "int 1e5000", "int 1e400", "1*9..."]
)
def test_numbers_too_large_to_be_true_raise_the_range_error(raw: object) -> None:
    is_resolution = isinstance(raw, str) and "*" in raw
    with pytest.raises(UnitRangeError):
        parse_resolution_height(raw) if is_resolution else parse_quantity(raw, MILLISECONDS)
