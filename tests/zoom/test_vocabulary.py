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


@given(st.one_of(st.text(), st.sampled_from(["Wired", "WIFI", "3G", "Others", "ethernet", " ppp "]), st.none()))
def test_network_type_returns_a_value_of_its_closed_set(raw: str | None) -> None:
    assert vocab.network_type(raw) in (*vocab.NETWORK_TYPES, None)


@given(st.one_of(st.text(), st.sampled_from(["Windows", "WIN", "Mac", "iOS", "H.323/SIP", "web"]), st.none()))
def test_client_os_returns_a_value_of_its_closed_set(raw: str | None) -> None:
    assert vocab.client_os(raw) in (*vocab.CLIENT_OS_VALUES, None)


@given(st.one_of(st.text(), st.sampled_from(["Network bandwidth low", " internet connection unstable "])))
def test_notification_returns_a_value_of_its_closed_set(raw: str) -> None:
    assert vocab.notification(raw) in vocab.NOTIFICATIONS


def test_the_closed_sets_are_what_the_functions_can_return() -> None:
    assert {"wired", "wifi", "cellular", "ppp", "other"} == vocab.NETWORK_TYPES
    assert {vocab.client_os(word) for word in ("Windows", "Mac", "iOS", "Android", "Linux", "ChromeOS")} < (
        vocab.CLIENT_OS_VALUES
    )
    assert len(vocab.CLIENT_OS_VALUES) == 10
    assert {"network_bandwidth_low", "internet_connection_unstable", "other"} == vocab.NOTIFICATIONS


@pytest.mark.parametrize(
    ("kind", "media"),
    [
        ("audio_input", "audio"),
        ("video_device_to_rwg", "video"),
        ("as_output", "share"),
        ("audio_quality", "audio"),
        ("video_quality", "video"),
        ("as_quality", "share"),
        ("share_quality", None),  # Zoom says `as_`, not `share_`
        ("audio_input_quality", None),
        ("cpu_usage", None),
        ("_quality", None),
        ("", None),
        (None, None),
        (["audio_input"], None),
    ],
)
def test_media_of_type(kind: object, media: str | None) -> None:
    assert vocab.media_of_type(kind) == media


@given(st.text(max_size=30))
def test_media_of_type_is_the_table(kind: str) -> None:
    """The table the typed path reads inline answers exactly as the function, for any text."""
    assert vocab.MEDIA_OF_TYPE.get(kind) == vocab.media_of_type(kind)
    expected: str | None = vocab.STREAM_TYPES[kind][0] if kind in vocab.STREAM_TYPES else None
    if expected is None and kind.endswith("_quality"):
        expected = {"audio": "audio", "video": "video", "as": "share"}.get(kind.removesuffix("_quality"))
    assert vocab.media_of_type(kind) == expected
