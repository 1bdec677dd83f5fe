"""The history of desk changes to the campaign file: who changed which item, when, and how.

The campaign file is the source of truth (docs/desk.md), so a desk change is a change of its
text. Each one is kept here with the unified diff a person would read, the file's version
(`campaign.editing.version_of`) before and after, and the whole file text before the change:
from that text "restore" can give an item back exactly as it was, even after later edits.

A removed editor keeps their name on what they did (the row in `editors` stays); should an
editor row ever be deleted, the change stays with no editor (ON DELETE SET NULL).

All functions take a connection and commit nothing themselves (`engine.begin()` around them).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from dispatcher.ledger.editors import editors
from dispatcher.ledger.tables import UTCDateTime, metadata

ACTION_LENGTH = 32  #: "move-down" and its kin fit with room to spare
ITEM_ID_LENGTH = 200
SUMMARY_LENGTH = 500

campaign_changes = sa.Table(
    "campaign_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
    # NULL: no editor (the row of a deleted editor; the command line has none either)
    sa.Column("editor_id", sa.Integer, sa.ForeignKey("editors.id", ondelete="SET NULL")),
    sa.Column("action", sa.String(ACTION_LENGTH), nullable=False),  # e.g. "hold", "move-up"
    sa.Column("item_id", sa.String(ITEM_ID_LENGTH), nullable=False),
    sa.Column("summary", sa.String(SUMMARY_LENGTH), nullable=False),  # one line for people
    sa.Column("version_before", sa.String(64), nullable=False),  # sha256 hex of the file text
    sa.Column("version_after", sa.String(64), nullable=False),
    sa.Column("diff", sa.Text, nullable=False),  # unified diff of the file
    sa.Column("text_before", sa.Text, nullable=False),  # the whole file before: for restore
)

sa.Index("ix_campaign_changes_at", campaign_changes.c.at)
sa.Index("ix_campaign_changes_item_id", campaign_changes.c.item_id)


@dataclass(frozen=True)
class ChangeRow:
    id: int
    at: dt.datetime
    editor_email: str | None  #: None: no editor recorded
    editor_name: str | None
    action: str
    item_id: str
    summary: str
    version_before: str
    version_after: str
    diff: str
    text_before: str


def record_change(
    connection: sa.Connection,
    *,
    editor_id: int | None,
    action: str,
    item_id: str,
    summary: str,
    version_before: str,
    version_after: str,
    diff: str,
    text_before: str,
    now: dt.datetime,
) -> int:
    """Record one desk change; its id.

    An action or item id too long for its column is a programming error and raises
    ValueError — on SQLite too, which would store it whole where PostgreSQL refuses it.
    The summary is prose for people and is cut to fit instead."""
    if len(action) > ACTION_LENGTH:
        raise ValueError(f"action longer than {ACTION_LENGTH} characters")
    if len(item_id) > ITEM_ID_LENGTH:
        raise ValueError(f"item id longer than {ITEM_ID_LENGTH} characters")
    result = connection.execute(
        campaign_changes.insert().values(
            at=now,
            editor_id=editor_id,
            action=action,
            item_id=item_id,
            summary=summary[:SUMMARY_LENGTH],
            version_before=version_before,
            version_after=version_after,
            diff=diff,
            text_before=text_before,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _query() -> sa.Select[tuple[object, ...]]:
    return sa.select(
        campaign_changes,
        editors.c.email.label("editor_email"),
        editors.c.name.label("editor_name"),
    ).outerjoin(editors, editors.c.id == campaign_changes.c.editor_id)


def _row(row: sa.Row[tuple[object, ...]]) -> ChangeRow:
    m = row._mapping
    return ChangeRow(
        id=m["id"],
        at=m["at"],
        editor_email=m["editor_email"],
        editor_name=m["editor_name"],
        action=m["action"],
        item_id=m["item_id"],
        summary=m["summary"],
        version_before=m["version_before"],
        version_after=m["version_after"],
        diff=m["diff"],
        text_before=m["text_before"],
    )


def recent_changes(
    connection: sa.Connection, *, item_id: str | None = None, limit: int = 100
) -> list[ChangeRow]:
    """The newest changes first (of one item, with `item_id`); at most `limit`.

    Changes in the same instant come newest-recorded first (by id)."""
    query = _query().order_by(campaign_changes.c.at.desc(), campaign_changes.c.id.desc())
    if item_id is not None:
        query = query.where(campaign_changes.c.item_id == item_id)
    return [_row(row) for row in connection.execute(query.limit(limit))]


def get_change(connection: sa.Connection, change_id: int) -> ChangeRow | None:
    """One change by id (what a restore starts from), or None."""
    row = connection.execute(_query().where(campaign_changes.c.id == change_id)).first()
    return None if row is None else _row(row)
