"""Keyed hashing of personal and meeting identifiers: the only form in which they may leave the agent.

One function, `keyed_hash` (HMAC-SHA256 under an operator-set key), serves both the detail-mode labels
(truncated to LABEL_HEX_CHARS) and the OTLP log attribute (full length), so that support can compute
either with `lookup` or `openssl dgst -sha256 -hmac KEY`. Pure: no I/O, no clock, no globals.
"""

from __future__ import annotations

import hmac
import re

__all__ = ["LABEL_HEX_CHARS", "HashedLabels", "keyed_hash", "lookup", "normalise"]

# 64 bits: collision-free in practice for the labels of one organisation (the birthday bound for a
# million distinct identities is ~3e-8) while keeping every detail series' label text short. The
# privacy does not come from the length but from the key: without it no length can be reversed.
LABEL_HEX_CHARS = 16

_MEETING_NUMBER = re.compile(r"[0-9][0-9 -]*[0-9]")


def normalise(value: str) -> str:
    """The canonical form that gets hashed: emails case-folded, meeting numbers without spaces or dashes.

    `Jane.Doe@Example.com ` and `jane.doe@example.com` are one person; `812 3456 7890` (as Zoom shows
    it) and `81234567890` (as events carry it) are one meeting. Everything else is only stripped.
    """
    value = value.strip()
    if "@" in value:
        return value.lower()
    if _MEETING_NUMBER.fullmatch(value):
        return value.replace(" ", "").replace("-", "")
    return value


def keyed_hash(key: bytes, value: str, hex_chars: int = 64) -> str:
    """Hex HMAC-SHA256 of `value` (as given, not normalised) under `key`, truncated to `hex_chars`."""
    # hmac.digest is the one-shot C implementation: ~4x faster than hmac.new(...).hexdigest().
    return hmac.digest(key, value.encode(), "sha256").hex()[:hex_chars]


def lookup(key: bytes, value: str) -> str:
    """The label a given email, account user id or meeting number gets in detail mode."""
    return keyed_hash(key, normalise(value), LABEL_HEX_CHARS)


class HashedLabels:
    """`lookup` bound to one key. Deliberately without a memo: callers hash an identity once and keep it."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the hash key must not be empty")
        self._key = key

    def __call__(self, value: str) -> str:
        return lookup(self._key, value)
