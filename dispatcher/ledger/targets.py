"""Deliveries of social dispatches by target: renaming, moving, listing (their SQL's home).

A social delivery's `recipient` is its target's name (docs/architecture.md, "Social
targets"); a network that posts in several languages has one delivery per target *and*
language, the first language's under the target's name, each further one under
`<name>#<lang>` (`recipient_name`, `split_recipient`). `rename` moves rows from a target's
former name to its current one, `move` hands deliveries of a vanished target to a
replacement with their idempotency key, `stranded` finds deliveries whose target is no
longer configured, and `posts` lists every delivery of some dispatches for `status`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from dispatcher.ledger.tables import DeliveryState, DispatchState, deliveries, dispatches

#: states a stranded delivery can be in: it was not (or may not have been) posted
OPEN_STATES = (
    DeliveryState.PENDING,
    DeliveryState.DEFERRED,
    DeliveryState.FAILED,
    DeliveryState.UNKNOWN,
)


#: between a target's name and a further language: no target name has a "#" (host, handle,
#: URN, room ID, `[A-Za-z0-9._-]` names), so the split is unambiguous
LANGUAGE_MARK = "#"
_LANGUAGE_SUFFIX = re.compile(r"(?P<target>.+)#(?P<lang>[a-z]{2,3}(?:-[A-Za-z0-9]{1,8})*)")


def recipient_name(target: str, lang: str | None) -> str:
    """The delivery's name for `target` in `lang`: the target's own name for the network's
    first language (None), so one-language campaigns keep the names they always had."""
    return target if lang is None else f"{target}{LANGUAGE_MARK}{lang}"


def split_recipient(recipient: str) -> tuple[str, str | None]:
    """(target name, further language or None) of a social delivery's `recipient`."""
    found = _LANGUAGE_SUFFIX.fullmatch(recipient)
    return (found["target"], found["lang"]) if found else (recipient, None)


def target_of(recipient: str) -> str:
    """The target a social delivery posts to: its recipient without a language suffix."""
    return split_recipient(recipient)[0]


def _channel_dispatches(channel: str, campaign_id: str | None = None) -> sa.Select[tuple[int]]:
    query = sa.select(dispatches.c.id).where(dispatches.c.channel == channel)
    if campaign_id is not None:
        query = query.where(dispatches.c.campaign_id == campaign_id)
    return query


def rename(
    connection: sa.Connection, channel: str, renames: Mapping[str, str], *, now: dt.datetime
) -> int:
    """Rows of `channel`'s dispatches under a former name (key) get the current name (value),
    except in a dispatch that already has a row under the current name. A further language's
    row (`former#en`) follows its target (`current#en`). Idempotent."""
    pairs = dict(renames)
    suffixed = sa.select(deliveries.c.recipient).where(
        deliveries.c.dispatch_id.in_(_channel_dispatches(channel)),
        deliveries.c.recipient.contains(LANGUAGE_MARK, autoescape=True),
    )
    for (recipient,) in connection.execute(suffixed.distinct()):
        target, lang = split_recipient(recipient)
        if lang is not None and target in renames:
            pairs[recipient] = recipient_name(renames[target], lang)
    renamed = 0
    for former, current in pairs.items():
        if former == current:
            continue
        other = deliveries.alias("other")
        taken = sa.exists().where(
            other.c.dispatch_id == deliveries.c.dispatch_id, other.c.recipient == current
        )
        result = connection.execute(
            deliveries.update()
            .where(
                deliveries.c.dispatch_id.in_(_channel_dispatches(channel)),
                deliveries.c.recipient == former,
                ~taken,
            )
            .values(recipient=current, updated_at=now)
        )
        renamed += result.rowcount
    return renamed


@dataclass(frozen=True)
class Stranded:
    """Deliveries of one dispatch under a target name that is not configured."""

    target: str  #: the target's name (without a language suffix)
    channel: str
    dispatch_id: int
    day: dt.date
    item_id: str
    state: str
    lang: str | None = None  #: a further language's delivery (`target#lang`); None: the first


def stranded(
    connection: sa.Connection, campaign_id: str, configured: Mapping[str, Collection[str]]
) -> list[Stranded]:
    """Deliveries not (or maybe not) posted whose target is not among `configured` (channel →
    target names), oldest day first; a further language's delivery under its target's name."""
    found: list[Stranded] = []
    for channel, names in configured.items():
        query = (
            sa.select(
                deliveries.c.recipient,
                dispatches.c.channel,
                dispatches.c.id,
                dispatches.c.day,
                dispatches.c.item_id,
                deliveries.c.state,
            )
            .join(dispatches, dispatches.c.id == deliveries.c.dispatch_id)
            .where(
                dispatches.c.campaign_id == campaign_id,
                dispatches.c.channel == channel,
                deliveries.c.state.in_(OPEN_STATES),
                deliveries.c.recipient.not_in(list(names)),
            )
            .order_by(dispatches.c.day, deliveries.c.id)
        )
        for recipient, kind, dispatch_id, day, item_id, state in connection.execute(query):
            target, lang = split_recipient(recipient)
            if target not in names:
                found.append(Stranded(target, kind, dispatch_id, day, item_id, state, lang))
    return sorted(found, key=lambda s: (s.day, s.channel, s.target))


@dataclass(frozen=True)
class Moved:
    dispatch_id: int
    day: dt.date
    item_id: str
    state: str  #: the state it had
    moved: bool  #: False: the dispatch already has a delivery for the new target
    lang: str | None = None  #: a further language's delivery; None: the network's first


def move(
    connection: sa.Connection,
    *,
    campaign_id: str,
    channel: str,
    sources: Collection[str],
    target: str,
    states: Sequence[str],
    dispatch_id: int | None,
    now: dt.datetime,
) -> list[Moved]:
    """Deliveries of `sources` in `states` become pending deliveries of `target`: the same
    row, so the same key (Mastodon Idempotency-Key, Bluesky rkey, Matrix txnId), attempts
    from zero; their dispatches run again. A dispatch with a row for `target` keeps both.
    A source names a target, whose every language moves (`OLD#en` to `target#en`), or one
    language's delivery exactly (`OLD#en`)."""
    named = sa.or_(
        deliveries.c.recipient.in_(list(sources)),
        *(
            deliveries.c.recipient.startswith(source + LANGUAGE_MARK, autoescape=True)
            for source in sources
        ),
    )
    query = (
        sa.select(
            deliveries.c.id,
            deliveries.c.recipient,
            dispatches.c.id,
            dispatches.c.day,
            dispatches.c.item_id,
            deliveries.c.state,
        )
        .join(dispatches, dispatches.c.id == deliveries.c.dispatch_id)
        .where(
            dispatches.c.campaign_id == campaign_id,
            dispatches.c.channel == channel,
            # A cancelled dispatch stays called off: a renamed target does not reopen it.
            dispatches.c.state != DispatchState.CANCELLED,
            named,
            deliveries.c.state.in_(list(states)),
        )
        .order_by(dispatches.c.day, deliveries.c.id)
    )
    if dispatch_id is not None:
        query = query.where(dispatches.c.id == dispatch_id)
    taken = {
        (row[0], row[1])
        for row in connection.execute(
            sa.select(deliveries.c.dispatch_id, deliveries.c.recipient).where(
                deliveries.c.dispatch_id.in_(_channel_dispatches(channel, campaign_id)),
                sa.or_(
                    deliveries.c.recipient == target,
                    deliveries.c.recipient.startswith(target + LANGUAGE_MARK, autoescape=True),
                ),
            )
        )
    }
    result: list[Moved] = []
    for delivery_id, recipient, dispatch, day, item_id, state in connection.execute(query).all():
        source, lang = split_recipient(recipient)
        if recipient not in sources and source not in sources:
            continue  # a name that only starts like a source's
        new_name = recipient_name(target, lang)
        if (dispatch, new_name) in taken:
            result.append(Moved(dispatch, day, item_id, state, moved=False, lang=lang))
            continue
        taken.add((dispatch, new_name))
        connection.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id)
            .values(
                recipient=new_name,
                state=DeliveryState.PENDING,
                attempts=0,
                next_attempt_at=None,
                lease_until=None,
                claimed_by=None,
                doubtful=False,
                updated_at=now,
            )
        )
        connection.execute(
            dispatches.update()
            .where(dispatches.c.id == dispatch)
            .values(state=DispatchState.RUNNING, finished_at=None)
        )
        result.append(Moved(dispatch, day, item_id, state, moved=True, lang=lang))
    return result


@dataclass(frozen=True)
class PostRow:
    """One delivery of a social dispatch, for `status`."""

    dispatch_id: int
    target: str  #: the delivery's name: the target's, `#lang` for a further language
    state: str
    attempts: int
    provider_id: str | None
    provider_url: str | None
    error: str | None
    lang: str | None = None  #: the language it is written in (None: the campaign's default)


def posts(connection: sa.Connection, dispatch_ids: Sequence[int]) -> list[PostRow]:
    """Every delivery of the given (social) dispatches, in fan-out order."""
    if not dispatch_ids:
        return []
    query = (
        sa.select(
            deliveries.c.dispatch_id,
            deliveries.c.recipient,
            deliveries.c.state,
            deliveries.c.attempts,
            deliveries.c.provider_id,
            deliveries.c.provider_url,
            deliveries.c.last_error,
            deliveries.c.lang,
        )
        .where(deliveries.c.dispatch_id.in_(list(dispatch_ids)))
        .order_by(deliveries.c.dispatch_id, deliveries.c.id)
    )
    return [PostRow(*row) for row in connection.execute(query)]
