"""Zoom webhook signatures: verification of `x-zm-signature` and the URL-validation token.

Pure functions: no I/O, no clock (the caller passes `now`), no logging. Zoom signs
`v0:{x-zm-request-timestamp}:{raw body}` with HMAC-SHA256 keyed by the app's secret token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from qss_exporter.errors import SignatureError

__all__ = ["check_headers", "sign", "url_validation_token", "verify"]

_PREFIX = "v0="
# Zoom sends whole seconds; 12 digits reach the year 33658, so anything longer is not a timestamp.
# [0-9], unlike str.isdigit or \d, takes no other script's digits (Arabic-Indic ones, which int() accepts).
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-fA-F]{64}")  # "v0=" and a hex SHA-256


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Return the `x-zm-signature` value Zoom would send for `body` at `timestamp` (seconds)."""
    message = b"v0:" + timestamp.encode("ascii") + b":" + body
    return _PREFIX + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(
    secrets: Sequence[str],
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance_seconds: float,
) -> str:
    """Check a webhook against every configured secret and return the secret that verified it.

    Raises `SignatureError` whose `reason` is `missing_signature`, `stale_timestamp` or
    `bad_signature`. The timestamp is checked before the HMAC so that a replayed old request
    costs no hashing; it is checked in both directions because a clock far in the future is
    as suspicious as one far in the past.
    """
    timestamp, signature = check_headers(timestamp, signature, now, tolerance_seconds)
    received = signature.encode("ascii")
    message = b"v0:" + timestamp.encode("ascii") + b":" + body
    for secret in secrets:
        expected = _PREFIX.encode() + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest().encode()
        # compare_digest takes constant time whatever matches, so a caller learns nothing per byte.
        if hmac.compare_digest(expected, received):
            return secret
    raise SignatureError("bad_signature", "no configured secret token produces this signature")


def check_headers(
    timestamp: str | None, signature: str | None, now: float, tolerance_seconds: float
) -> tuple[str, str]:
    """The checks that need no body: both headers present, the timestamp ASCII digits within the
    tolerance, the signature `v0=` and 64 hex digits. Returns both headers; raises `SignatureError`.

    Cheap enough to run before the body is read, so that unsigned or replayed requests cost nothing.
    """
    if not timestamp or not signature:
        raise SignatureError("missing_signature", "x-zm-request-timestamp and x-zm-signature are both required")
    if _TIMESTAMP.fullmatch(timestamp) is None:
        raise SignatureError("stale_timestamp", "x-zm-request-timestamp is not whole seconds in ASCII digits")
    sent_at = int(timestamp)
    if abs(now - sent_at) > tolerance_seconds:
        raise SignatureError("stale_timestamp", f"timestamp is {now - sent_at:.0f} s from now")
    if not signature.startswith(_PREFIX):
        raise SignatureError("bad_signature", "x-zm-signature does not start with v0=")
    if _SIGNATURE.fullmatch(signature) is None:
        raise SignatureError("bad_signature", "x-zm-signature is not v0= and 64 hex digits")
    return timestamp, signature


def url_validation_token(secret: str, plain_token: str) -> str:
    """The `encryptedToken` for Zoom's `endpoint.url_validation`: hex HMAC-SHA256 of plainToken."""
    return hmac.new(secret.encode("utf-8"), plain_token.encode("utf-8"), hashlib.sha256).hexdigest()
