"""Every SQL statement about subscribers: the rest of the code asks here.

Rows are never deleted: deliveries point at them, and an unsubscribed row is the
record that this person must not get mail again. Each function runs inside the
caller's transaction (`with engine.begin() as conn:`), so a command that reads
and then writes sees one consistent ledger.

State rules, because consent is the point: an existing address changes state
only when the caller asks (`reactivate=True`); an import never reactivates,
never unsubscribes and never touches the name of someone who left.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dispatcher.addresses import Row, clean_name, normalise
from dispatcher.ledger.tables import SubscriberState, subscribers

BATCH = 500  #: rows per statement: below SQLite's and PostgreSQL's parameter limits
INACTIVE = frozenset({SubscriberState.UNSUBSCRIBED, SubscriberState.BOUNCED})


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
        )


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
) -> tuple[int, bool]:
    """(id, created). An existing address keeps its id and state; its name is updated.

    Someone who unsubscribed or bounced stays so unless `reactivate`: putting a
    person back on the list needs their fresh consent, which only the operator
    can vouch for. `reactivate` sets any existing row to `state`.
    Raises InvalidAddress or InvalidName.
    """
    address, name = normalise(email), clean_name(name)
    existing = _select(conn, address)
    if existing is None:
        statement = (
            _insert(conn)
            .values(email=address, name=name, state=state.value, source=source)
            .values(created_at=now, updated_at=now)
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
    Rows must come from `parse_csv` (or carry a `normalise`d email).
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
    columns = (subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.state)
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
    renames = [
        {"b_id": r.id, "b_name": row.name, "b_now": now}
        for row in batch
        if (r := existing.get(row.email)) is not None
        and r.state not in INACTIVE
        and row.name is not None
        and row.name != r.name
    ]
    if renames:
        conn.execute(
            subscribers.update()
            .where(subscribers.c.id == sa.bindparam("b_id"))
            .values(name=sa.bindparam("b_name"), updated_at=sa.bindparam("b_now")),
            renames,
        )
    return created, len(renames)


def remove(conn: sa.Connection, email: str, *, now: dt.datetime) -> bool:
    """Unsubscribe; False when the address is unknown or already unsubscribed.

    The row stays: deliveries reference it, and it is the proof that this person
    said no. Raises InvalidAddress.
    """
    result = conn.execute(
        subscribers.update()
        .where(subscribers.c.email == normalise(email))
        .where(subscribers.c.state != SubscriberState.UNSUBSCRIBED.value)
        .values(state=SubscriberState.UNSUBSCRIBED.value, updated_at=now)
    )
    return result.rowcount > 0


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
