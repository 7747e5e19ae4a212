"""Keyed hashing of identifiers (qss_exporter/identity.py): canonical forms, stability, the OpenSSL recipe."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from qss_exporter.identity import LABEL_HEX_CHARS, HashedLabels, keyed_hash, lookup, normalise

KEY = b"operator-key"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (" Dana.Okafor@Example.COM\n", "dana.okafor@example.com"),
        ("845 2173 6902", "84521736902"),
        ("845-2173-6902", "84521736902"),
        ("84521736902", "84521736902"),
        ("Fh2kLmN8QeWbT5cR1xYzAg", "Fh2kLmN8QeWbT5cR1xYzAg"),  # account user ids are case-sensitive
        ("kT9w2Qx+Rj6pLm0sVbN4hA==", "kT9w2Qx+Rj6pLm0sVbN4hA=="),
    ],
)
def test_normalise(raw: str, canonical: str) -> None:
    assert normalise(raw) == canonical


def test_keyed_hash_is_hmac_sha256_as_openssl_prints_it() -> None:
    # printf %s "$VALUE" | openssl dgst -sha256 -hmac "$KEY"
    expected = hmac.new(KEY, b"16782336", hashlib.sha256).hexdigest()
    assert keyed_hash(KEY, "16782336") == expected
    assert len(expected) == 64


def test_labels_are_the_first_64_bits_of_the_hmac_of_the_canonical_value() -> None:
    assert LABEL_HEX_CHARS == 16
    full = keyed_hash(KEY, "dana.okafor@example.com")
    assert lookup(KEY, "Dana.Okafor@example.com") == full[:16]
    assert HashedLabels(KEY)("dana.okafor@example.com") == full[:16]


def test_labels_are_stable_across_instances_and_differ_by_key() -> None:
    assert lookup(KEY, "a@example.com") == HashedLabels(KEY)("a@example.com")  # restarts, replicas
    assert lookup(KEY, "a@example.com") != lookup(b"another-key", "a@example.com")
    assert lookup(KEY, "a@example.com") != lookup(KEY, "b@example.com")


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        HashedLabels(b"")
