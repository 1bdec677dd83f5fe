"""Editors of the desk: accounts, one-time sign-in links, sessions, iCal feed tokens, audit log.

The desk (docs/desk.md) is for a handful of people the operator names with `dispatcher
editors add`. Everything here that works like a password — a sign-in link, a session, a
calendar feed URL — is a random token the person holds; the ledger keeps only its SHA-256,
so a copy of the database (a backup, a `status --json` paste) signs nobody in.

* A sign-in link is used once (`used_at`) and expires `SIGN_IN_LINK_TTL` after it was made.
* A session ends at its `expires_at`, on sign-out (`ended_at`), or when its editor is removed.
* A removed editor keeps the row (`removed_at`): the audit log names who did what, also after
  the person left. Adding the address again brings the account back, without its old sessions.
* A feed token works until revoked; an editor has at most one in force.

All functions take a connection and commit nothing themselves (`engine.begin()` around them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from dispatcher.ledger.tables import UTCDateTime, metadata

SIGN_IN_LINK_TTL = dt.timedelta(minutes=15)  #: a sign-in link expires this long after it was sent
KEEP_ENDED = dt.timedelta(days=30)  #: expired sessions and links are deleted this much later
TOKEN_BYTES = 32  #: 256 bits of randomness for every link, session and feed token

editors = sa.Table(
    "editors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),  # normalised
    sa.Column("name", sa.String(200)),
    sa.Column("created_at", UTCDateTime, nullable=False),  # first added
    sa.Column("added_at", UTCDateTime, nullable=False),  # last (re-)added: older sessions are void
    sa.Column("removed_at", UTCDateTime),  # removed: no sign-in, no session, no feed
)

editor_sign_in_links = sa.Table(
    "editor_sign_in_links",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "editor_id", sa.Integer, sa.ForeignKey("editors.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex
    sa.Column("next_path", sa.String(500), nullable=False),  # where the desk opens after sign-in
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime),
)

editor_sessions = sa.Table(
    "editor_sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "editor_id", sa.Integer, sa.ForeignKey("editors.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex
    sa.Column("method", sa.String(16), nullable=False),  # "link" or "header"
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime),  # signed out
)

editor_feed_tokens = sa.Table(
    "editor_feed_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "editor_id", sa.Integer, sa.ForeignKey("editors.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
)

desk_audit = sa.Table(
    "desk_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # NULL: no editor (a sign-in link asked for an address that is none)
    sa.Column("editor_id", sa.Integer, sa.ForeignKey("editors.id", ondelete="SET NULL")),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("action", sa.String(64), nullable=False),  # e.g. "sign_in", "test_send"
    sa.Column("detail", sa.Text, nullable=False),  # e.g. the item id; never a token
)

sa.Index("ix_desk_audit_at", desk_audit.c.at)


@dataclass(frozen=True)
class EditorRow:
    id: int
    email: str
    name: str | None
    created_at: dt.datetime
    added_at: dt.datetime
    removed_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.removed_at is None


@dataclass(frozen=True)
class AuditRow:
    id: int
    editor_id: int | None
    email: str | None  #: the editor's address, None for no editor
    at: dt.datetime
    action: str
    detail: str


def new_token() -> str:
    """A fresh URL-safe random token (the holder's secret)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the ledger keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _editor(row: sa.Row[tuple[object, ...]] | None) -> EditorRow | None:
    if row is None:
        return None
    m = row._mapping
    return EditorRow(
        id=m["id"],
        email=m["email"],
        name=m["name"],
        created_at=m["created_at"],
        added_at=m["added_at"],
        removed_at=m["removed_at"],
    )


# -- accounts --------------------------------------------------------------------------------


def add(
    connection: sa.Connection, email: str, name: str | None, *, now: dt.datetime
) -> tuple[EditorRow, bool]:
    """Add the editor `email` (normalised by the caller), or bring a removed one back.

    Returns the row and whether anything changed (False: already an editor; a given name
    is still stored)."""
    current = get(connection, email)
    if current is None:
        connection.execute(
            editors.insert().values(
                email=email, name=name, created_at=now, added_at=now, removed_at=None
            )
        )
        changed = True
    elif current.removed_at is not None:
        connection.execute(
            editors.update()
            .where(editors.c.id == current.id)
            .values(added_at=now, removed_at=None, name=name if name is not None else current.name)
        )
        changed = True
    else:
        changed = name is not None and name != current.name
        if changed:
            connection.execute(editors.update().where(editors.c.id == current.id).values(name=name))
    row = get(connection, email)
    assert row is not None
    return row, changed


def remove(connection: sa.Connection, email: str, *, now: dt.datetime) -> EditorRow | None:
    """Remove the editor: sessions, links and feed tokens stop working at once.

    None when `email` is no (active) editor."""
    current = get(connection, email)
    if current is None or current.removed_at is not None:
        return None
    connection.execute(editors.update().where(editors.c.id == current.id).values(removed_at=now))
    connection.execute(
        editor_sessions.update()
        .where(editor_sessions.c.editor_id == current.id, editor_sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    )
    connection.execute(
        editor_feed_tokens.update()
        .where(
            editor_feed_tokens.c.editor_id == current.id, editor_feed_tokens.c.revoked_at.is_(None)
        )
        .values(revoked_at=now)
    )
    return get(connection, email)


def get(connection: sa.Connection, email: str) -> EditorRow | None:
    """The editor with this (normalised) address, active or removed."""
    return _editor(connection.execute(editors.select().where(editors.c.email == email)).first())


def get_by_id(connection: sa.Connection, editor_id: int) -> EditorRow | None:
    return _editor(connection.execute(editors.select().where(editors.c.id == editor_id)).first())


def active(connection: sa.Connection, email: str) -> EditorRow | None:
    """The editor with this address, unless removed."""
    row = get(connection, email)
    return row if row is not None and row.active else None


def all_editors(connection: sa.Connection, *, removed: bool = False) -> list[EditorRow]:
    """Every active editor by address (with `removed`: the removed ones too)."""
    query = editors.select().order_by(editors.c.email)
    if not removed:
        query = query.where(editors.c.removed_at.is_(None))
    return [row for row in map(_editor, connection.execute(query)) if row is not None]


# -- one-time sign-in links --------------------------------------------------------------------


def create_sign_in_link(
    connection: sa.Connection, editor_id: int, *, next_path: str, now: dt.datetime
) -> str:
    """A new sign-in token for the editor (only its hash is stored); valid `SIGN_IN_LINK_TTL`."""
    token = new_token()
    connection.execute(
        editor_sign_in_links.insert().values(
            editor_id=editor_id,
            token_hash=token_hash(token),
            next_path=next_path,
            created_at=now,
            expires_at=now + SIGN_IN_LINK_TTL,
            used_at=None,
        )
    )
    return token


@dataclass(frozen=True)
class SignInLink:
    editor: EditorRow
    next_path: str
    expires_at: dt.datetime


def _link_query(token: str, now: dt.datetime) -> sa.Select[tuple[object, ...]]:
    return (
        sa.select(editors, editor_sign_in_links.c.next_path, editor_sign_in_links.c.expires_at)
        .join(editors, editors.c.id == editor_sign_in_links.c.editor_id)
        .where(
            editor_sign_in_links.c.token_hash == token_hash(token),
            editor_sign_in_links.c.used_at.is_(None),
            editor_sign_in_links.c.expires_at > now,
            editors.c.removed_at.is_(None),
        )
    )


def peek_sign_in_link(
    connection: sa.Connection, token: str, *, now: dt.datetime
) -> SignInLink | None:
    """The link's editor if it can still be used — without using it (GET of the link)."""
    row = connection.execute(_link_query(token, now)).first()
    if row is None:
        return None
    editor = _editor(row)
    assert editor is not None
    return SignInLink(editor, row._mapping["next_path"], row._mapping["expires_at"])


def use_sign_in_link(
    connection: sa.Connection, token: str, *, now: dt.datetime
) -> SignInLink | None:
    """Use the link: its editor, once; None when unknown, used, expired or the editor removed.

    The conditional UPDATE makes two simultaneous uses give one session, on SQLite and
    PostgreSQL alike."""
    link = peek_sign_in_link(connection, token, now=now)
    if link is None:
        return None
    result = connection.execute(
        editor_sign_in_links.update()
        .where(
            editor_sign_in_links.c.token_hash == token_hash(token),
            editor_sign_in_links.c.used_at.is_(None),
        )
        .values(used_at=now)
    )
    return link if result.rowcount == 1 else None


# -- sessions ---------------------------------------------------------------------------------


def create_session(
    connection: sa.Connection,
    editor_id: int,
    *,
    method: str,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> str:
    """A new session token for the editor (only its hash is stored).

    Sessions and sign-in links that ended more than `KEEP_ENDED` ago are deleted on the way:
    they sign nobody in any more, and the audit log keeps who signed in when."""
    connection.execute(
        editor_sessions.delete().where(editor_sessions.c.expires_at < now - KEEP_ENDED)
    )
    connection.execute(
        editor_sign_in_links.delete().where(editor_sign_in_links.c.expires_at < now - KEEP_ENDED)
    )
    token = new_token()
    connection.execute(
        editor_sessions.insert().values(
            editor_id=editor_id,
            token_hash=token_hash(token),
            method=method,
            created_at=now,
            expires_at=now + lifetime,
            ended_at=None,
        )
    )
    return token


def session_editor(connection: sa.Connection, token: str, *, now: dt.datetime) -> EditorRow | None:
    """The editor of a session in force: not expired, not signed out, editor not removed,
    and begun after the editor was last added."""
    row = connection.execute(
        sa.select(editors)
        .join(editor_sessions, editors.c.id == editor_sessions.c.editor_id)
        .where(
            editor_sessions.c.token_hash == token_hash(token),
            editor_sessions.c.ended_at.is_(None),
            editor_sessions.c.expires_at > now,
            editor_sessions.c.created_at >= editors.c.added_at,
            editors.c.removed_at.is_(None),
        )
    ).first()
    return _editor(row)


def end_session(connection: sa.Connection, token: str, *, now: dt.datetime) -> bool:
    """Sign out: the session no longer works. False when it was not in force."""
    result = connection.execute(
        editor_sessions.update()
        .where(
            editor_sessions.c.token_hash == token_hash(token), editor_sessions.c.ended_at.is_(None)
        )
        .values(ended_at=now)
    )
    return result.rowcount == 1


# -- iCalendar feed tokens --------------------------------------------------------------------


def create_feed_token(connection: sa.Connection, editor_id: int, *, now: dt.datetime) -> str:
    """A new feed token for the editor; any earlier one is revoked (one feed URL at a time)."""
    revoke_feed_tokens(connection, editor_id, now=now)
    token = new_token()
    connection.execute(
        editor_feed_tokens.insert().values(
            editor_id=editor_id, token_hash=token_hash(token), created_at=now, revoked_at=None
        )
    )
    return token


def feed_token_editor(connection: sa.Connection, token: str) -> EditorRow | None:
    """The active editor whose feed token this is, or None (unknown, revoked, editor removed)."""
    row = connection.execute(
        sa.select(editors)
        .join(editor_feed_tokens, editors.c.id == editor_feed_tokens.c.editor_id)
        .where(
            editor_feed_tokens.c.token_hash == token_hash(token),
            editor_feed_tokens.c.revoked_at.is_(None),
            editors.c.removed_at.is_(None),
        )
    ).first()
    return _editor(row)


def has_feed_token(connection: sa.Connection, editor_id: int) -> bool:
    """Whether the editor has a feed token in force (its value cannot be shown again)."""
    return (
        connection.execute(
            sa.select(editor_feed_tokens.c.id).where(
                editor_feed_tokens.c.editor_id == editor_id,
                editor_feed_tokens.c.revoked_at.is_(None),
            )
        ).first()
        is not None
    )


def revoke_feed_tokens(connection: sa.Connection, editor_id: int, *, now: dt.datetime) -> int:
    """Revoke the editor's feed tokens; how many were in force."""
    result = connection.execute(
        editor_feed_tokens.update()
        .where(
            editor_feed_tokens.c.editor_id == editor_id, editor_feed_tokens.c.revoked_at.is_(None)
        )
        .values(revoked_at=now)
    )
    return result.rowcount


# -- audit log --------------------------------------------------------------------------------


def record(
    connection: sa.Connection,
    editor_id: int | None,
    action: str,
    detail: str = "",
    *,
    now: dt.datetime,
) -> None:
    """One audit row: who (`editor_id`), when (`now`), what (`action`, `detail`)."""
    connection.execute(
        desk_audit.insert().values(
            editor_id=editor_id, at=now, action=action[:64], detail=detail[:2000]
        )
    )


def audit_log(connection: sa.Connection, *, limit: int = 100) -> list[AuditRow]:
    """The newest audit rows first."""
    rows = connection.execute(
        sa.select(desk_audit, editors.c.email)
        .outerjoin(editors, editors.c.id == desk_audit.c.editor_id)
        .order_by(desk_audit.c.at.desc(), desk_audit.c.id.desc())
        .limit(limit)
    )
    return [
        AuditRow(
            id=m["id"],
            editor_id=m["editor_id"],
            email=m["email"],
            at=m["at"],
            action=m["action"],
            detail=m["detail"],
        )
        for m in (row._mapping for row in rows)
    ]
