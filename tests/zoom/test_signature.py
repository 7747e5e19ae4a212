from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qss_exporter.errors import SignatureError
from qss_exporter.zoom.signature import check_headers, sign, url_validation_token, verify
from tests.samples import load_sample

NOW = 1761317463.0
SECRET_TOKEN = "a-secret-token"


def test_shared_test_vector() -> None:
    vector = load_sample("webhook.signature_test_vector")
    body = vector["raw_body"].encode()
    timestamp = vector["headers"]["x-zm-request-timestamp"]
    assert sign(vector["secret_token"], timestamp, body) == vector["expected_signature"]
    assert (
        verify([vector["secret_token"]], timestamp, vector["expected_signature"], body, NOW, 300)
        == vector["secret_token"]
    )


def test_url_validation_sample() -> None:
    vector = load_sample("webhook.signature_test_vector")
    request = load_sample("endpoint.url_validation.request")
    response = load_sample("endpoint.url_validation.response")
    assert url_validation_token(vector["secret_token"], request["payload"]["plainToken"]) == response["encryptedToken"]


def test_rotation_returns_the_secret_that_verified() -> None:
    body = b'{"event":"x"}'
    signature = sign("new-secret", "1761317463", body)
    assert verify(["old-secret", "new-secret"], "1761317463", signature, body, NOW, 300) == "new-secret"


@pytest.mark.parametrize(
    ("timestamp", "signature", "reason"),
    [
        (None, "v0=00", "missing_signature"),
        ("1761317463", None, "missing_signature"),
        ("", "", "missing_signature"),
        ("1761317000", None, "missing_signature"),
        ("abc", "v0=00", "stale_timestamp"),
        ("1761316000", "v0=00", "stale_timestamp"),  # 24 min old
        ("1761320000", "v0=00", "stale_timestamp"),  # 42 min in the future
        ("1761317463", "v1=00", "bad_signature"),
        ("1761317463", "v0=" + "0" * 64, "bad_signature"),
        ("1761317463", "v0=é", "bad_signature"),
    ],
)
def test_rejections(timestamp: str | None, signature: str | None, reason: str) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(["secret"], timestamp, signature, b"{}", NOW, 300)
    assert caught.value.reason == reason


def test_body_must_be_the_exact_bytes_signed() -> None:
    signature = sign("secret", "1761317463", b'{"a": 1}')
    with pytest.raises(SignatureError):
        verify(["secret"], "1761317463", signature, b'{"a":1}', NOW, 300)


def test_signature_is_checked_against_the_timestamp_header() -> None:
    signature = sign("secret", "1761317463", b"{}")
    with pytest.raises(SignatureError):
        verify(["secret"], "1761317464", signature, b"{}", NOW, 300)


@given(timestamp=st.one_of(st.none(), st.text()), signature=st.one_of(st.none(), st.text()))
def test_header_checks_raise_only_signature_errors(timestamp: str | None, signature: str | None) -> None:
    reason = ""
    try:
        stamp, sig = check_headers(timestamp, signature, NOW, 300)
    except SignatureError as error:
        reason = error.reason
    if reason:
        assert reason in {"missing_signature", "stale_timestamp", "bad_signature"}
    else:  # what passes is exactly what Zoom sends
        assert stamp.isascii()
        assert stamp.isdigit()
        assert abs(int(stamp) - NOW) <= 300
        assert re.fullmatch(r"v0=[0-9a-fA-F]{64}", sig)


@pytest.mark.parametrize(
    "timestamp",
    ["\u0661\u0667\u0666\u0661", "\uff11\uff17\uff16\uff11", "1_761_317_463", " 1761317463", "+1761317463", "9" * 13],
)
def test_timestamps_that_int_would_take_are_stale(timestamp: str) -> None:
    with pytest.raises(SignatureError) as caught:
        verify([SECRET_TOKEN], timestamp, "v0=" + "a" * 64, b"{}", NOW, 300)
    assert caught.value.reason == "stale_timestamp"
