"""Signed tokens for unsubscribe and confirmation links — pure, no I/O.

An RFC 8058 one-click POST carries nothing but the URL, so the URL itself must
identify subscriber and list and be hard to forge: an HMAC-SHA256 over the
purpose, subscriber id and campaign id with `SECRET_KEY`, checked in constant
time. Nothing is stored, so a token works for as long as the key is unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

SIGNATURE_BYTES = 16  #: 128 bits: far beyond guessing, keeps URLs short


@dataclass(frozen=True)
class TokenSubject:
    purpose: str  #: "unsubscribe" or "confirm"
    subscriber_id: int
    campaign_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: str, payload: str) -> bytes:
    return hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest()[:SIGNATURE_BYTES]


def sign(subject: TokenSubject, *, key: str) -> str:
    """`<subscriber>.<campaign>.<signature>`, URL-safe."""
    payload = f"{subject.purpose}:{subject.subscriber_id}:{subject.campaign_id}"
    campaign = _b64(subject.campaign_id.encode())
    return f"{subject.subscriber_id}.{campaign}.{_b64(_signature(key, payload))}"


def verify(token: str, *, purpose: str, key: str) -> TokenSubject | None:
    """The subject of a valid token, or None for anything tampered, truncated or foreign.

    A token has exactly one spelling: the one `sign` writes. `int()` and the base64
    decoder forgive a lot (`+1`, `0001`, `١`, `１`, spaces, `=` padding, characters
    outside the alphabet, unused low bits of the last base64 character), so the parsed
    parts are encoded again and must give back the token byte for byte."""
    try:
        subscriber, campaign_b64, signature_b64 = token.split(".")
        subject = TokenSubject(purpose, int(subscriber), _unb64(campaign_b64).decode())
        given = _unb64(signature_b64)
    except (ValueError, UnicodeDecodeError):
        return None
    # A plain comparison: the canonical spelling comes from the caller's own input, so
    # how long it takes tells nothing about the key.
    if token != f"{subject.subscriber_id}.{_b64(subject.campaign_id.encode())}.{_b64(given)}":
        return None
    payload = f"{purpose}:{subject.subscriber_id}:{subject.campaign_id}"
    return subject if hmac.compare_digest(given, _signature(key, payload)) else None
