"""The one narrow interface every channel implements, and its error type.

A channel sends one rendered message for one delivery and either returns a
`Receipt` or raises `ChannelError`. It knows its provider's API and decides
what is permanent for it; it knows nothing of the ledger. The pipeline maps a
`ChannelError` to a delivery state in one place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from dispatcher.clock import Clock
from dispatcher.i18n import SOURCE_LANGUAGE


@dataclass(frozen=True)
class Envelope:
    """An email ready for the wire: sender, one recipient, the exact bytes to send."""

    mail_from: str  #: bare address for MAIL FROM
    rcpt_to: str  #: bare address for RCPT TO
    data: bytes  #: the RFC 5322 message, CRLF line ends


@dataclass(frozen=True)
class Receipt:
    """What the provider said on success, kept in the ledger as `provider_id`."""

    provider_id: str
    details: dict[str, str] = field(default_factory=dict)


class ErrorKind(StrEnum):
    """What a failed send means for the delivery — one kind per error, decided by the channel
    that knows its provider; `retrying.decide` turns it into a delivery state."""

    TEMPORARY = "temporary"  #: try again later (with backoff, or after `retry_after`)
    PERMANENT = "permanent"  #: retrying cannot help (5xx, invalid recipient, bad request)
    BOUNCED = "bounced"  #: permanent, and the address does not exist: suppress the subscriber
    AMBIGUOUS = "ambiguous"  #: the provider may have acted (a timeout after sending)
    UNAVAILABLE = "unavailable"  #: the channel cannot work now (down, login refused): no verdict


class ChannelError(Exception):
    """A send did not succeed, and what that means (`kind`).

    `retry_after`: seconds the provider asked us to wait, if it said. `unavailable` errors
    are no verdict on the delivery, which goes back to the queue unchanged until the
    channel recovers; `ambiguous` ones become `unknown` on a channel without idempotency.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind = ErrorKind.TEMPORARY,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.retry_after = retry_after

    @property
    def permanent(self) -> bool:
        return self.kind in (ErrorKind.PERMANENT, ErrorKind.BOUNCED)

    @property
    def ambiguous(self) -> bool:
        return self.kind is ErrorKind.AMBIGUOUS

    @property
    def bounced(self) -> bool:
        return self.kind is ErrorKind.BOUNCED

    @property
    def unavailable(self) -> bool:
        return self.kind is ErrorKind.UNAVAILABLE


class EmailChannel(Protocol):
    """Sends emails; implementations are thread-safe (one connection per thread)."""

    kind: str
    idempotent: bool

    def send(self, envelope: Envelope, *, key: str) -> Receipt: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Post:
    """One social post for one network: exactly what `preview` shows for it.

    `created_at` is fixed per dispatch (its planned send time), so a retried
    request carries the same record, byte for byte.
    """

    network: str  #: "mastodon", "bluesky", "linkedin" or "webhook"
    text: str  #: fitted to the network's limit (LinkedIn: already little-text escaped)
    link: str  #: the reportage URL
    title: str
    description: str  #: the teaser, not shortened (link cards, LinkedIn article)
    hashtags: tuple[str, ...]  #: "#Tag", as they appear in `text`
    image_url: str | None
    image_alt: str | None
    created_at: dt.datetime  #: aware, UTC
    #: the language it is written in (BCP 47, as the campaign's `locales`): Mastodon's
    #: `language`, Bluesky's `langs`; LinkedIn and the webhooks have no field for it
    lang: str = SOURCE_LANGUAGE


class SocialChannel(Protocol):
    """Posts to one social network or webhook target.

    `idempotent`: a retry with the same `key` cannot create a second post
    (Mastodon Idempotency-Key, Bluesky record key, Matrix txnId). Where it is
    False, an outcome the provider may have acted on becomes `unknown`.
    """

    kind: str
    idempotent: bool

    def send(self, post: Post, *, key: str) -> Receipt: ...

    def close(self) -> None: ...


_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._~-]+")


def readable_key(campaign_id: str, day: dt.date, recipient: str, *, max_length: int = 120) -> str:
    """A delivery's key, the same for every retry: `campaign-YYYYMMDD-recipient`.

    ASCII `[A-Za-z0-9._~-]` only (safe in a header and a URL path); when characters had to
    be replaced or the key was cut, a hash of the original keeps it unique. The send time
    is left out on purpose: a rescheduled delivery is still the same post.
    """
    raw = f"{campaign_id}-{day:%Y%m%d}-{recipient}"
    key = _KEY_UNSAFE.sub("_", raw)
    if key != raw or len(key) > max_length:
        digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:12]
        key = f"{key[: max_length - 13]}-{digest}"
    return key


@dataclass(frozen=True)
class SocialTarget:
    """One place a social dispatch posts to: one delivery row in the ledger."""

    channel: str  #: the campaign channel: mastodon, bluesky, linkedin or webhook
    #: the ledger's name for it: what the target *is* (network, host, account, room), never
    #: a token, so renewing a credential keeps it (docs/architecture.md, "Social targets")
    recipient: str
    key: Callable[
        ..., str
    ]  #: the module's `delivery_key(campaign_id=, day=, send_at=, recipient=)`
    #: the real channel (reading rate-limit resets against the given clock, the wall clock
    #: `utc_now` even in a rehearsal), or the outbox
    open: Callable[[Clock], SocialChannel]
    #: names earlier versions gave this target; the ledger's rows under them are renamed
    former: tuple[str, ...] = ()
