"""zoom/vocabulary.py: Zoom's words mapped onto small label vocabularies, whatever is sent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qss_exporter.zoom import vocabulary as vocab


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("FR (Sub)", "FR"),
        ("AMS (Sub)", "AMS"),
        ("Germany (FR Top)", "FR"),  # the Dashboard's form
        ("sc", "SC"),
        ("United States", "other"),
        ("Germany ()", "other"),
        ("DROP TABLE (x)", "X"),  # code-shaped: the enrichment directory closes the set (X -> other)
        ("x" * 10_000, "other"),
        ("", None),
        (None, None),
        (["FR"], None),
    ],
)
def test_data_center_code(raw: object, code: str | None) -> None:
    assert vocab.data_center(raw) == code


@pytest.mark.parametrize(
    ("raw", "version"),
    [
        ("6.2.5.41632", "6.2"),
        ("5.17", "5.17"),
        ("06.02", "6.2"),
        ("123.4", "other"),  # no Zoom client has a three-digit major version
        ("6.2' OR 1=1", "other"),
        ("6", "other"),
        ("٦.٢", "other"),
        ("9" * 5000 + ".1", "other"),
        ("", None),
    ],
)
def test_client_version(raw: str, version: str | None) -> None:
    assert vocab.client_version(raw) == version


@given(st.text(max_size=80))
def test_label_vocabularies_are_closed_or_short_codes(raw: str) -> None:
    assert vocab.network_type(raw) in {None, "wired", "wifi", "cellular", "ppp", "other"}
    assert vocab.client_os(raw) in {None, "windows", "macos", "ios", "android", "linux", "chromeos", "phone"} | {
        "h323_sip",
        "web",
        "other",
    }
    version = vocab.client_version(raw)
    assert version is None or version == "other" or len(version) <= 5
    code = vocab.data_center(raw)
    assert code is None or code == "other" or (code.isascii() and code.isalnum() and len(code) <= 4)
