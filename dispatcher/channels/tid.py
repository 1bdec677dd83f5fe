"""AT Protocol TIDs ("timestamp identifiers"): the record keys of `app.bsky.feed.post`.

A post's record key must be a valid TID or the PDS refuses the write (`Invalid TID string`).
We choose the key ourselves, before the first request, so that a retried write lands on the
same key and cannot create a second post; the key is therefore computed, not random: from the
planned send time and a clock id derived from the delivery (see `bluesky.delivery_key`).

Layout (atproto `packages/common-web/src/tid.ts`, spec atproto.com/specs/tid): a 64-bit integer
with the top bit 0, then 53 bits of microseconds since the Unix epoch, then a 10-bit clock id;
written in "base32-sortable" (`234567abcdefghijklmnopqrstuvwxyz`), 13 characters, so that the
string order is the time order. Pure functions only.
"""

from __future__ import annotations

import datetime as dt
import re

ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
LENGTH = 13
CLOCK_ID_BITS = 10
MAX_CLOCK_ID = (1 << CLOCK_ID_BITS) - 1  #: 1023
MAX_MICROS = (1 << 53) - 1  #: about the year 2255
PATTERN = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_INDEX = {ch: i for i, ch in enumerate(ALPHABET)}


def encode(micros: int, clock_id: int) -> str:
    """The TID for `micros` since the epoch and `clock_id` (0..1023)."""
    if not 0 <= micros <= MAX_MICROS:
        raise ValueError(f"TID timestamp out of range: {micros} µs")
    if not 0 <= clock_id <= MAX_CLOCK_ID:
        raise ValueError(f"TID clock id must be 0..{MAX_CLOCK_ID}, got {clock_id}")
    value = (micros << CLOCK_ID_BITS) | clock_id
    chars = []
    for _ in range(LENGTH):
        value, digit = divmod(value, 32)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def decode(tid: str) -> tuple[int, int]:
    """`(micros, clock_id)` of a valid TID; `ValueError` otherwise."""
    if not is_valid(tid):
        raise ValueError(f"not a valid TID: {tid!r}")
    value = 0
    for ch in tid:
        value = value * 32 + _INDEX[ch]
    return value >> CLOCK_ID_BITS, value & MAX_CLOCK_ID


def is_valid(tid: str) -> bool:
    """The syntax the PDS checks: 13 base32-sortable characters, top bit clear."""
    return bool(PATTERN.fullmatch(tid))


def micros_since_epoch(when: dt.datetime) -> int:
    """Exact integer microseconds (no float rounding), so equal times give equal TIDs."""
    if when.tzinfo is None:
        raise ValueError("a TID needs an aware datetime; a naive one has no defined instant")
    return (when - _EPOCH) // dt.timedelta(microseconds=1)


def from_datetime(when: dt.datetime, clock_id: int) -> str:
    """The TID for an aware datetime."""
    return encode(micros_since_epoch(when), clock_id)
