"""Every SQL statement about subscribers: the rest of the code asks here.

Rows are never deleted: deliveries point at them, and an unsubscribed row is the
record that this person must not get mail again. Each function runs inside the
caller's transaction (`with engine.begin() as conn:`), so a command that reads
and then writes sees one consistent ledger.

State rules, because consent is the point: an existing address changes state
only when the caller asks (`reactivate=True`); an import never reactivates,
never unsubscribes and never touches the name of someone who left.

Sign-up over the web is double opt-in (UWG §7, BGH I ZR 164/09): `request_subscription`
records the consent (time, source, IP, the exact text shown) on a pending row and
says whether a confirmation mail may go out (at most one per address and hour);
`confirm` activates. `unsubscribe` is what the one-click link does; `erase` deletes
a person's data (GDPR art. 17) while the row keeps its deliveries and their counts.

Languages: `lang` is the reader's language (None: the campaign's default, so a change of
the default reaches them). Every door that creates a subscriber takes `lang`; the consent
record keeps the language they signed up in (`consent_lang`), and each later change
records when and by whom (`lang_changed_at`, `lang_changed_by`: `reader`, `cli`,
`import`, `api:<token>`). Whether a language is one the campaign offers is the caller's
check (it knows the campaign); the ledger refuses only what no campaign can offer.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dispatcher.i18n import LANGUAGES
from dispatcher.ledger.subscriber_csv import Row
from dispatcher.ledger.tables import SubscriberState, deliveries, subscribers
from dispatcher.mail.addresses import clean_name, normalise

BATCH = 500  #: rows per statement: below SQLite's and PostgreSQL's parameter limits
INACTIVE = frozenset({SubscriberState.UNSUBSCRIBED, SubscriberState.BOUNCED})
CONFIRMATION_INTERVAL = dt.timedelta(hours=1)  #: at most one confirmation mail per address
ERASED_DOMAIN = "invalid"  #: RFC 2606: can never be a real mailbox
BounceKind = Literal["hard", "soft", "complaint"]
#: What `record_bounce` did: the address is unknown; it was suppressed at once (hard
#: bounce, complaint); a soft bounce was counted; the count reached the limit and it
#: was suppressed; the subscriber had already left or bounced, nothing changed.
BounceOutcome = Literal["unknown", "bounced", "complained", "soft", "suppressed", "unchanged"]
MAX_REASON = 500  #: characters of a provider's bounce reason kept in `last_error`
#: `lang_changed_by` when the reader changed their language (the unsubscribe page).
BY_READER = "reader"


@dataclass(frozen=True)
class SubscriberRow:
    id: int
    email: str
    name: str | None
    state: SubscriberState
    created_at: dt.datetime
    updated_at: dt.datetime
    source: str | None
    last_error: str | None = None
    # The consent record (UWG §7, GDPR art. 7(1)); None for rows that predate it.
    consent_at: dt.datetime | None = None
    consent_source: str | None = None
    consent_ip: str | None = None
    consent_text: str | None = None
    confirmation_sent_at: dt.datetime | None = None
    confirmed_at: dt.datetime | None = None
    unsubscribed_at: dt.datetime | None = None
    erased_at: dt.datetime | None = None
    soft_bounces: int = 0  #: consecutive soft bounces reported by the bounce webhook
    lang: str | None = None  #: the reader's language; None: the campaign's default
    consent_lang: str | None = None  #: the language they signed up in (consent record)
    lang_changed_at: dt.datetime | None = None  #: the last change of `lang` since sign-up
    lang_changed_by: str | None = None  #: who made it: `reader`, `cli`, `import`, `api:<token>`

    @property
    def erased(self) -> bool:
        return self.erased_at is not None

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> SubscriberRow:
        m = row._mapping
        return cls(
            id=m["id"],
            email=m["email"],
            name=m["name"],
            state=SubscriberState(m["state"]),
            created_at=m["created_at"],
            updated_at=m["updated_at"],
            source=m["source"],
            last_error=m["last_error"],
            consent_at=m["consent_at"],
            consent_source=m["consent_source"],
            consent_ip=m["consent_ip"],
            consent_text=m["consent_text"],
            confirmation_sent_at=m["confirmation_sent_at"],
            confirmed_at=m["confirmed_at"],
            unsubscribed_at=m["unsubscribed_at"],
            erased_at=m["erased_at"],
            soft_bounces=m["soft_bounces"],
            lang=m["lang"],
            consent_lang=m["consent_lang"],
            lang_changed_at=m["lang_changed_at"],
            lang_changed_by=m["lang_changed_by"],
        )


@dataclass(frozen=True)
class Consent:
    """What a person agreed to, where and from which address (time is the caller's `now`)."""

    source: str  #: e.g. "web:/subscribe; referer=www.clusterplattform.de"
    ip: str | None  #: as configured: truncated, full or None
    text: str  #: the exact sentence shown next to the checkbox


@dataclass(frozen=True)
class Requested:
    """A web sign-up as its confirmation link carries it: applied only when the link is used."""

    name: str | None  #: None: keep the stored name
    consent: Consent
    at: dt.datetime  #: when it was requested
    lang: str | None = None  #: the language chosen with the request; None: keep the stored one


@dataclass(frozen=True)
class ImportReport:
    created: int = 0
    updated: int = 0  #: existing and active or pending; name changed
    unchanged: int = 0  #: existing; nothing to change, or they left (no reactivation)
    merged_duplicates: int = 0  #: later rows with an address seen earlier in the input

    @property
    def imported(self) -> int:
        """Distinct addresses now known to the ledger from this input."""
        return self.created + self.updated + self.unchanged


def check_language(lang: str | None) -> str | None:
    """`lang` when the ledger can store it: None, or a language with catalogues.

    Callers check against the campaign's `locales` first, with a message naming those;
    this is the last guard, so a typo cannot reach the ledger through a new door.
    """
    if lang is not None and lang not in LANGUAGES:
        raise ValueError(f'unknown language "{lang}" (use one of {", ".join(LANGUAGES)})')
    return lang


def _insert(conn: sa.Connection) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, for ON CONFLICT DO NOTHING: a concurrent add is not an error."""
    match conn.dialect.name:
        case "postgresql":
            return postgresql.insert(subscribers)
        case "sqlite":
            return sqlite.insert(subscribers)
        case other:
            raise NotImplementedError(f"the ledger supports SQLite and PostgreSQL, not {other}")


def _select(conn: sa.Connection, address: str) -> SubscriberRow | None:
    row = conn.execute(sa.select(subscribers).where(subscribers.c.email == address)).first()
    return None if row is None else SubscriberRow.from_row(row)


def get(conn: sa.Connection, email: str) -> SubscriberRow | None:
    """The subscriber with this address in any spelling; raises InvalidAddress."""
    return _select(conn, normalise(email))


def add(
    conn: sa.Connection,
    email: str,
    name: str | None = None,
    *,
    state: SubscriberState = SubscriberState.ACTIVE,
    source: str,
    now: dt.datetime,
    reactivate: bool = False,
    lang: str | None = None,
) -> tuple[int, bool]:
    """(id, created). An existing address keeps its id and state; its name and, when one
    is given, its language are updated (the change recorded as made by `source`).

    Someone who unsubscribed or bounced stays so unless `reactivate`: putting a
    person back on the list needs their fresh consent, which only the operator
    can vouch for. `reactivate` sets any existing row to `state`.
    Raises InvalidAddress, InvalidName or ValueError (a language no campaign offers).
    """
    address, name, lang = normalise(email), clean_name(name), check_language(lang)
    existing = _select(conn, address)
    if existing is None:
        statement = (
            _insert(conn)
            .values(email=address, name=name, state=state.value, source=source)
            .values(created_at=now, updated_at=now, lang=lang)
            .on_conflict_do_nothing(index_elements=[subscribers.c.email])
            .returning(subscribers.c.id)
        )
        new_id = conn.execute(statement).scalar_one_or_none()
        if new_id is not None:
            return int(new_id), True
        existing = _select(conn, address)  # another process added it just now
        assert existing is not None
    changes: dict[str, object] = {}
    if reactivate and existing.state is not state:
        changes.update(state=state.value, last_error=None)
    elif existing.state in INACTIVE:
        return existing.id, False
    if name is not None and name != existing.name:
        changes["name"] = name
    if lang is not None and lang != existing.lang:
        changes.update(lang=lang, lang_changed_at=now, lang_changed_by=source)
    if changes:
        conn.execute(
            subscribers.update()
            .where(subscribers.c.id == existing.id)
            .values(**changes, updated_at=now)
        )
    return existing.id, False


def import_rows(
    conn: sa.Connection,
    rows: Iterable[Row],
    *,
    source: str,
    now: dt.datetime,
    state: SubscriberState = SubscriberState.ACTIVE,
) -> ImportReport:
    """Add many rows with `add`'s rules, in batches; importing twice creates nothing new.

    A new row gets its own `state` when the file has one (an export), else `state`.
    A row's language (`lang` column) is stored on a new row and changes an active or
    pending one (an empty cell changes nothing). Rows must come from `parse_csv` (or
    carry a `normalise`d email and a checked `lang`).
    """
    first: dict[str, Row] = {}
    merged = 0
    for row in rows:
        if row.email in first:
            merged += 1
        else:
            first[row.email] = row
    unique = list(first.values())
    created = updated = 0
    for start in range(0, len(unique), BATCH):
        c, u = _import_batch(conn, unique[start : start + BATCH], source, now, state)
        created, updated = created + c, updated + u
    return ImportReport(created, updated, len(unique) - created - updated, merged)


def _import_batch(
    conn: sa.Connection,
    batch: list[Row],
    source: str,
    now: dt.datetime,
    state: SubscriberState,
) -> tuple[int, int]:
    columns = (
        subscribers.c.id,
        subscribers.c.email,
        subscribers.c.name,
        subscribers.c.state,
        subscribers.c.lang,
    )
    existing = {
        r.email: r
        for r in conn.execute(
            sa.select(*columns).where(subscribers.c.email.in_([row.email for row in batch]))
        )
    }
    new = [
        {
            "email": row.email,
            "name": row.name,
            "state": (row.state or state).value,
            "source": source,
            "created_at": now,
            "updated_at": now,
            "lang": row.lang,
        }
        for row in batch
        if row.email not in existing
    ]
    created = 0
    if new:
        statement = (
            _insert(conn)
            .on_conflict_do_nothing(index_elements=[subscribers.c.email])
            .returning(subscribers.c.id)
        )
        created = len(conn.execute(statement, new).all())
    renamed: set[int] = set()
    renames = []
    relanguages = []
    for row in batch:
        r = existing.get(row.email)
        if r is None or r.state in INACTIVE:
            continue
        if row.name is not None and row.name != r.name:
            renames.append({"b_id": r.id, "b_name": row.name, "b_now": now})
            renamed.add(r.id)
        if row.lang is not None and row.lang != r.lang:
            relanguages.append({"b_id": r.id, "b_lang": row.lang, "b_now": now, "b_by": source})
            renamed.add(r.id)
    if renames:
        conn.execute(
            subscribers.update()
            .where(subscribers.c.id == sa.bindparam("b_id"))
            .values(name=sa.bindparam("b_name"), updated_at=sa.bindparam("b_now")),
            renames,
        )
    if relanguages:
        conn.execute(
            subscribers.update()
            .where(subscribers.c.id == sa.bindparam("b_id"))
            .values(
                lang=sa.bindparam("b_lang"),
                lang_changed_at=sa.bindparam("b_now"),
                lang_changed_by=sa.bindparam("b_by"),
                updated_at=sa.bindparam("b_now"),
            ),
            relanguages,
        )
    return created, len(renamed)


def remove(conn: sa.Connection, email: str, *, now: dt.datetime) -> bool:
    """Unsubscribe; False when the address is unknown or already unsubscribed.

    The row stays: deliveries reference it, and it is the proof that this person
    said no. Raises InvalidAddress.
    """
    result = conn.execute(
        subscribers.update()
        .where(subscribers.c.email == normalise(email))
        .where(subscribers.c.state != SubscriberState.UNSUBSCRIBED.value)
        .values(state=SubscriberState.UNSUBSCRIBED.value, unsubscribed_at=now, updated_at=now)
    )
    return result.rowcount > 0


def get_by_id(conn: sa.Connection, subscriber_id: int) -> SubscriberRow | None:
    row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return None if row is None else SubscriberRow.from_row(row)


def unsubscribe(conn: sa.Connection, subscriber_id: int, *, now: dt.datetime) -> bool:
    """The one-click unsubscribe: True when this call unsubscribed them.

    Idempotent: an unknown id or someone already unsubscribed gives False and
    changes nothing (the first `unsubscribed_at` stays). A pending or bounced
    subscriber becomes unsubscribed too: that is what they asked for. The next
    claim of a delivery skips them, because sending checks the state at send time.
    """
    result = conn.execute(
        subscribers.update()
        .where(subscribers.c.id == subscriber_id)
        .where(subscribers.c.state != SubscriberState.UNSUBSCRIBED.value)
        .values(state=SubscriberState.UNSUBSCRIBED.value, unsubscribed_at=now, updated_at=now)
    )
    return result.rowcount > 0


def request_subscription(
    conn: sa.Connection,
    email: str,
    name: str | None,
    *,
    consent: Consent,
    now: dt.datetime,
    lang: str | None = None,
    source: str = "web",
) -> tuple[SubscriberRow, bool]:
    """A sign-up with double opt-in, from the form or the API (`source`: "web", "api"):
    (the row, whether to send a confirmation mail now).

    - new address: a pending row with the consent record and `lang` (the language chosen
      in the form: the reader's language and, in the consent record, `consent_lang`); send.
    - active: nothing changes, no mail (the caller shows the same page: no enumeration).
    - pending, unsubscribed or bounced: state, name and consent record stay as they
      are — anyone can type an address into the form — and a mail goes out unless one
      went to this address less than an hour ago. The requested name, language and
      consent travel in the confirmation link and are applied by `confirm(requested=…)`.

    The hourly limit is one conditional UPDATE of `confirmation_sent_at` (nothing else,
    not even `updated_at`), so two simultaneous requests cannot both win. Raises
    InvalidAddress, InvalidName or ValueError (a language no campaign offers).
    """
    address, name, lang = normalise(email), clean_name(name), check_language(lang)
    record = {
        "lang": lang,
        "consent_lang": lang,
        "consent_at": now,
        "consent_source": consent.source[:200],
        "consent_ip": consent.ip,
        "consent_text": consent.text,
        "confirmation_sent_at": now,
    }
    existing = _select(conn, address)
    if existing is None:
        statement = (
            _insert(conn)
            .values(email=address, name=name, state=SubscriberState.PENDING.value, source=source)
            .values(created_at=now, updated_at=now, **record)
            .on_conflict_do_nothing(index_elements=[subscribers.c.email])
            .returning(subscribers.c.id)
        )
        if conn.execute(statement).scalar_one_or_none() is not None:
            created = _select(conn, address)
            assert created is not None
            return created, True
        existing = _select(conn, address)  # another request added it just now
        assert existing is not None
    if existing.state is SubscriberState.ACTIVE:
        return existing, False
    result = conn.execute(
        subscribers.update()
        .where(subscribers.c.id == existing.id)
        .where(subscribers.c.state != SubscriberState.ACTIVE.value)
        .where(
            sa.or_(
                subscribers.c.confirmation_sent_at.is_(None),
                subscribers.c.confirmation_sent_at <= now - CONFIRMATION_INTERVAL,
            )
        )
        .values(confirmation_sent_at=now)
    )
    current = get_by_id(conn, existing.id)
    assert current is not None
    return current, result.rowcount > 0


def confirmation_not_sent(conn: sa.Connection, subscriber_id: int, *, sent_at: dt.datetime) -> None:
    """The confirmation mail recorded at `sent_at` did not go out: lift the hourly limit again."""
    conn.execute(
        subscribers.update()
        .where(subscribers.c.id == subscriber_id)
        .where(subscribers.c.confirmation_sent_at == sent_at)
        .values(confirmation_sent_at=None)
    )


def confirm(
    conn: sa.Connection,
    subscriber_id: int,
    *,
    now: dt.datetime,
    issued_at: dt.datetime | None = None,
    requested: Requested | None = None,
) -> SubscriberRow | None:
    """Double opt-in confirmed: the subscriber becomes active. The row, or None when it
    cannot be.

    Already active: the row unchanged (a second click is a success, not an error).
    None for an unknown or erased id, and when `issued_at` (the link's issue time) lies
    before the subscriber left: a link from before an unsubscribe (or, for a bounced
    address, from before the bounce) must not put them back. A pending row is activated
    by any such link; an unsubscribed or bounced one only by a link that carries a new
    request (`requested`): its name (if any), language (if any) and consent record are
    applied now. The consent record's `consent_lang` is the request's language (or, when
    it carries none, the stored one); a changed `lang` is recorded as the reader's change.
    """
    row = get_by_id(conn, subscriber_id)
    if row is None or row.erased:
        return None
    if row.state is SubscriberState.ACTIVE:
        return row
    returning = requested is not None and row.state is SubscriberState.UNSUBSCRIBED
    if row.state is SubscriberState.PENDING or returning:
        left = row.unsubscribed_at
    elif requested is not None and row.state is SubscriberState.BOUNCED:
        left = row.updated_at  # when it bounced: requests do not touch updated_at
    else:
        return None
    if (
        issued_at is not None
        and left is not None
        and issued_at < left.replace(second=0, microsecond=0)
    ):
        return None
    changes: dict[str, object] = {}
    if requested is not None:
        changes = {
            "consent_at": requested.at,
            "consent_source": requested.consent.source[:200],
            "consent_ip": requested.consent.ip,
            "consent_text": requested.consent.text,
            # The language of this consent: the one chosen with it, else the one they have.
            "consent_lang": check_language(requested.lang) or row.lang,
        }
        if requested.name is not None:
            changes["name"] = clean_name(requested.name)
        if requested.lang is not None and requested.lang != row.lang:
            changes.update(lang=requested.lang, lang_changed_by=BY_READER)
            changes["lang_changed_at"] = requested.at
    conn.execute(
        subscribers.update()
        .where(subscribers.c.id == subscriber_id)
        .where(subscribers.c.state == row.state.value)
        .values(
            **changes,
            state=SubscriberState.ACTIVE.value,
            confirmed_at=now,
            last_error=None,
            soft_bounces=0,
            updated_at=now,
        )
    )
    return get_by_id(conn, subscriber_id)


def erased_address(subscriber_id: int) -> str:
    return f"erased-{subscriber_id}@{ERASED_DOMAIN}"


def erase(conn: sa.Connection, email: str, *, now: dt.datetime) -> bool:
    """Delete the person's data (GDPR art. 17); False when the address is unknown.

    The row stays with its id, so deliveries keep pointing at it and every count
    is unchanged; the address becomes `erased-<id>@invalid`, name and consent
    record are emptied and the state is unsubscribed. The address is also cut
    out of delivery error texts (an SMTP reply often quotes it).
    Raises InvalidAddress.
    """
    address = normalise(email)
    existing = _select(conn, address)
    if existing is None:
        return False
    conn.execute(
        subscribers.update()
        .where(subscribers.c.id == existing.id)
        .values(
            email=erased_address(existing.id),
            name=None,
            state=SubscriberState.UNSUBSCRIBED.value,
            last_error=None,
            consent_at=None,
            consent_source=None,
            consent_ip=None,
            consent_text=None,
            consent_lang=None,
            lang=None,
            lang_changed_at=None,
            lang_changed_by=None,
            unsubscribed_at=existing.unsubscribed_at or now,
            erased_at=now,
            updated_at=now,
        )
    )
    errors = conn.execute(
        sa.select(deliveries.c.id, deliveries.c.last_error)
        .where(deliveries.c.subscriber_id == existing.id)
        .where(deliveries.c.last_error.is_not(None))
    ).all()
    pattern = re.compile(re.escape(address), re.IGNORECASE)
    for delivery_id, text in errors:
        if pattern.search(text):
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id == delivery_id)
                .values(last_error=pattern.sub("[gelöscht]", text))
            )
    return True


def set_state(
    conn: sa.Connection,
    subscriber_id: int,
    state: SubscriberState,
    *,
    now: dt.datetime,
    reason: str | None = None,
) -> None:
    """Record a state change and why (e.g. the bounce reply); `reason` replaces the old one.

    Raises LookupError for an unknown id: a caller holding a stale id has a bug.
    """
    result = conn.execute(
        subscribers.update()
        .where(subscribers.c.id == subscriber_id)
        .values(state=state.value, last_error=reason, updated_at=now)
    )
    if result.rowcount == 0:
        raise LookupError(f"no subscriber with id {subscriber_id}")


def set_language(
    conn: sa.Connection,
    subscriber_id: int,
    lang: str | None,
    *,
    now: dt.datetime,
    by: str = BY_READER,
) -> SubscriberRow | None:
    """Change a subscriber's language (None: back to the campaign's default); the row after.

    None for an unknown or erased id (the caller answers as for an unknown token). Any
    other state may change it: someone who left may come back, and then in their
    language. The change is part of the consent record: `lang_changed_at` and
    `lang_changed_by` (`by`: `reader` for the unsubscribe page, else `cli`, `import`,
    `api:<token>`); choosing the language one has already changes nothing. The caller
    checks `lang` against the campaign's locales. Raises ValueError for a language no
    campaign can offer.
    """
    lang = check_language(lang)
    conn.execute(
        subscribers.update()
        .where(subscribers.c.id == subscriber_id)
        .where(subscribers.c.erased_at.is_(None))
        .where(subscribers.c.lang.is_distinct_from(lang))
        .values(lang=lang, lang_changed_at=now, lang_changed_by=by[:200], updated_at=now)
    )
    row = get_by_id(conn, subscriber_id)
    return None if row is None or row.erased else row


def record_bounce(
    conn: sa.Connection,
    email: str,
    kind: BounceKind,
    reason: str,
    *,
    limit: int,
    now: dt.datetime,
) -> BounceOutcome:
    """A bounce or complaint a provider reported (the bounce webhook); returns what it did.

    - `hard` (the mailbox does not exist) and `complaint` (the reader pressed "spam")
      suppress the address at once: state `bounced`, the reason in `last_error`
      (`hard bounce: …` / `complaint: …`).
    - `soft` (mailbox full, greylisting that gave up, …) counts; the `limit`-th
      consecutive one suppresses the address (`reset_soft_bounces` starts the
      count again after a delivery that went through).

    Only active and pending subscribers change: someone who unsubscribed keeps
    that record of their choice, and an erased row is "unknown". The count is
    one conditional UPDATE, so two reports at once both count.
    Raises InvalidAddress.
    """
    existing = _select(conn, normalise(email))
    if existing is None or existing.erased:
        return "unknown"
    reason = " ".join(reason.split())[:MAX_REASON]
    live = subscribers.c.state.in_([SubscriberState.ACTIVE.value, SubscriberState.PENDING.value])
    where = sa.and_(subscribers.c.id == existing.id, live)
    if kind in ("hard", "complaint"):
        label = "hard bounce" if kind == "hard" else "complaint"
        result = conn.execute(
            subscribers.update()
            .where(where)
            .values(
                state=SubscriberState.BOUNCED.value,
                last_error=f"{label}: {reason}" if reason else label,
                updated_at=now,
            )
        )
        if result.rowcount == 0:
            return "unchanged"
        return "bounced" if kind == "hard" else "complained"
    count = conn.execute(
        subscribers.update()
        .where(where)
        .values(soft_bounces=subscribers.c.soft_bounces + 1, updated_at=now)
        .returning(subscribers.c.soft_bounces)
    ).scalar_one_or_none()
    if count is None:
        return "unchanged"
    text = f"soft bounce {count}/{limit}" + (f": {reason}" if reason else "")
    suppress = count >= limit
    conn.execute(
        subscribers.update()
        .where(where)
        .values(
            last_error=text,
            **({"state": SubscriberState.BOUNCED.value} if suppress else {}),
        )
    )
    return "suppressed" if suppress else "soft"


def reset_soft_bounces(conn: sa.Connection, subscriber_ids: Iterable[int]) -> int:
    """A delivery to these subscribers went through: their soft-bounce counts start again.

    For the pipeline, once per recorded batch; touches only rows with a count. Returns
    how many rows changed.
    """
    ids = list(subscriber_ids)
    changed = 0
    for start in range(0, len(ids), BATCH):
        result = conn.execute(
            subscribers.update()
            .where(subscribers.c.id.in_(ids[start : start + BATCH]))
            .where(subscribers.c.soft_bounces > 0)
            .values(soft_bounces=0)
        )
        changed += result.rowcount
    return changed


def list_(conn: sa.Connection, *, state: SubscriberState | None = None) -> Iterator[SubscriberRow]:
    """Subscribers in id order, fetched in pages by id (keyset).

    Paging by id rather than holding one cursor open keeps memory flat for any
    list size, needs no server-side cursor, and lets the caller write on the same
    connection while iterating.
    """
    after = 0
    while True:
        statement = (
            sa.select(subscribers)
            .where(subscribers.c.id > after)
            .order_by(subscribers.c.id)
            .limit(BATCH)
        )
        if state is not None:
            statement = statement.where(subscribers.c.state == state.value)
        page = [SubscriberRow.from_row(row) for row in conn.execute(statement)]
        yield from page
        if len(page) < BATCH:
            return
        after = page[-1].id


def count_by_state(conn: sa.Connection) -> dict[str, int]:
    """Every state, zero included, in SubscriberState's order."""
    counts = {state.value: 0 for state in SubscriberState}
    statement = sa.select(subscribers.c.state, sa.func.count()).group_by(subscribers.c.state)
    for state, count in conn.execute(statement):
        counts[state] = count
    return counts
