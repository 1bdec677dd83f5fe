"""The editors' queue as frozen values: a `Campaign` with its `Item`s.

These types are what every other module works with. They are built only by
`dispatcher.loading` (which validates `config/campaign.yaml` and reports errors
with file:line:col), so any `Campaign` in hand is known to be consistent:
pinned dates are send days, item ids are unique, channels are known.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from zoneinfo import ZoneInfo


class Channel(StrEnum):
    """A kind of output. The value is the key used under `send:` and in the ledger."""

    EMAIL = "email"  #: the daily newsletter to every active subscriber
    MASTODON = "mastodon"  #: a status on a Mastodon (client API) server
    BLUESKY = "bluesky"  #: a post on Bluesky / AT Protocol
    LINKEDIN = "linkedin"  #: a post via LinkedIn's Posts API
    WEBHOOK = "webhook"  #: Slack, Discord, Teams, Matrix or generic JSON endpoints


class ItemStatus(StrEnum):
    """Editorial state of an item; only `ready` items are ever planned or sent."""

    READY = "ready"  #: may be sent
    DRAFT = "draft"  #: still being written
    HOLD = "hold"  #: written, deliberately held back


WEEKDAY_KEYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday names as written in the campaign file; the index is `date.weekday()`."""


@dataclass(frozen=True)
class Item:
    """One reportage in the queue."""

    id: str
    title: str
    teaser: str
    url: str
    initiative: str
    region: str
    image: str | None = None
    image_alt: str | None = None
    tags: tuple[str, ...] = ()
    body: str | None = None
    date: dt.date | None = None  #: pinned send day, if any
    channels: tuple[Channel, ...] | None = None  #: None means every channel under `send:`
    status: ItemStatus = ItemStatus.READY

    def uses(self, channel: Channel) -> bool:
        """Whether this item goes out on `channel` (the campaign must also use it)."""
        return self.channels is None or channel in self.channels


@dataclass(frozen=True)
class Campaign:
    """A campaign window, its send times per channel and its queue of items."""

    id: str
    name: str
    timezone: str
    start: dt.date
    end: dt.date
    weekdays: frozenset[int]  #: `date.weekday()` numbers, Monday = 0
    holidays: str | None  #: "DE" or "DE-SN"; None means no holiday calendar
    skip: frozenset[dt.date] = frozenset()
    locale: str = "de_DE"
    catch_up: dt.timedelta = dt.timedelta(hours=6)
    send: dict[Channel, dt.time] = field(default_factory=dict)  #: local send time per used channel
    items: tuple[Item, ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def channels(self) -> tuple[Channel, ...]:
        """The channels in use, in the order of `Channel` (stable output)."""
        return tuple(c for c in Channel if c in self.send)

    def item(self, item_id: str) -> Item:
        """The item with that id; `KeyError` with the known ids otherwise."""
        for candidate in self.items:
            if candidate.id == item_id:
                return candidate
        known = ", ".join(i.id for i in self.items)
        raise KeyError(f"unknown item {item_id!r}; known items: {known}")
