"""Verifying strictpy's webhook deliveries.

strictpy signs each delivery with the header

    Strictpy-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

While the server rotates its secret the header carries one ``v1=`` per
active secret; a receiver accepts the delivery when any of them matches any
of its own secrets. Verify the raw bytes as received, before parsing JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Sequence

from .errors import WebhookVerificationError
from .models import Job

SIGNATURE_HEADER = "Strictpy-Signature"
"""The header that carries the signature."""

DEFAULT_TOLERANCE = 300
"""Seconds a delivery's timestamp may be away from the receiver's clock."""

Secrets = str | bytes | Sequence[str | bytes]
"""One secret, or several (during a rotation)."""


def _secret_list(secrets: Secrets) -> list[bytes]:
    items: Iterable[str | bytes] = [secrets] if isinstance(secrets, (str, bytes)) else secrets
    out = [s.encode() if isinstance(s, str) else bytes(s) for s in items]
    if not out or any(not s for s in out):
        raise ValueError("at least one non-empty webhook secret is needed")
    return out


def _sign(secret: bytes, timestamp: int, raw_body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + raw_body, hashlib.sha256).hexdigest()


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """The timestamp and the ``v1`` signatures of a ``Strictpy-Signature``
    header. Raises :class:`WebhookVerificationError` when it is malformed."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not value.isdigit() or timestamp is not None:
                raise WebhookVerificationError("the signature header has a bad timestamp")
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value.lower())
        # Other schemes (a future v2) are ignored, so a receiver keeps
        # working while the server sends both.
    if timestamp is None:
        raise WebhookVerificationError("the signature header has no timestamp")
    if not signatures:
        raise WebhookVerificationError("the signature header has no v1 signature")
    return timestamp, signatures


def verify_signature(
    raw_body: bytes,
    header: str | None,
    secrets: Secrets,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> int:
    """Verifies a delivery and returns its timestamp.

    Raises :class:`WebhookVerificationError` when the header is missing or
    malformed, the timestamp is more than ``tolerance`` seconds away from now
    (a replay), or no ``v1`` signature matches any of ``secrets``. Every
    comparison is constant-time (``hmac.compare_digest``).
    """
    if not header:
        raise WebhookVerificationError(f"no {SIGNATURE_HEADER} header")
    if not isinstance(raw_body, (bytes, bytearray, memoryview)):
        raise TypeError("verify the raw request body (bytes), not parsed JSON")
    body = bytes(raw_body)
    keys = _secret_list(secrets)
    timestamp, signatures = parse_signature_header(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError(
            f"the signature timestamp is {abs(current - timestamp):.0f} s away from now "
            f"(tolerance {tolerance} s): a replay or a wrong clock"
        )
    matched = False
    # Compare every pair rather than stopping at the first match, so the
    # time taken does not tell which secret or signature matched.
    for key in keys:
        expected = _sign(key, timestamp, body)
        for candidate in signatures:
            if hmac.compare_digest(expected, candidate):
                matched = True
    if not matched:
        raise WebhookVerificationError("no signature matches: wrong secret or a tampered body")
    return timestamp


def verify_webhook(
    raw_body: bytes,
    header: str | None,
    secrets: Secrets,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> Job:
    """Verifies a delivery (see :func:`verify_signature`) and returns the
    job it reports."""
    verify_signature(raw_body, header, secrets, tolerance, now=now)
    return Job.from_dict(json.loads(raw_body))


def signature_header(raw_body: bytes, secrets: Secrets, *, timestamp: int | None = None) -> str:
    """A ``Strictpy-Signature`` header for ``raw_body``, one ``v1`` per
    secret, as the server makes it: for testing a receiver."""
    t = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={t}"] + [f"v1={_sign(k, t, bytes(raw_body))}" for k in _secret_list(secrets)]
    return ",".join(parts)
