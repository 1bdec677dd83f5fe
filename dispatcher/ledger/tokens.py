"""Bearer tokens of the HTTP API (docs/api.md): who may call it, and for what.

A token is a random secret its holder (the platform's CMS, the helpdesk's tool) sends as
`Authorization: Bearer …`. Like the desk's links and sessions (`ledger.editors`), the ledger
keeps only its SHA-256: a copy of the database (a backup, a pasted `tokens list --json`)
authorises nobody, and the token is shown once, when it is made (`dispatcher tokens create`).

Each token carries its scopes (`SCOPES`); an endpoint needs one of them. A revoked token
keeps its row, so `tokens list` still says which integration had access and until when.
`last_used_at` is written at most once a minute per token (`USE_RESOLUTION`): enough to see
which tokens are still in use, without a write (and SQLite's write lock) on every request.

All functions take a connection and commit nothing themselves (`engine.begin()` around them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from dispatcher.ledger.tables import UTCDateTime, metadata

#: What a token may do. Reading a subscriber is personal data, writing one sends mail,
#: and `dispatch:control` stops sending: each is granted on its own.
SCOPES = ("subscribers:read", "subscribers:write", "plan:read", "dispatch:control")
PREFIX = "cwd_"  #: marks a string as ours, so secret scanners and people recognise a leak
TOKEN_BYTES = 32  #: 256 bits of randomness
NAME_LENGTH = 100
USE_RESOLUTION = dt.timedelta(minutes=1)  #: `last_used_at` is this precise

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(NAME_LENGTH), nullable=False),  # who holds it, e.g. "cms"
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex
    sa.Column("scopes", sa.String(200), nullable=False),  # space-separated, from SCOPES
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_used_at", UTCDateTime),
    sa.Column("revoked_at", UTCDateTime),
)


@dataclass(frozen=True)
class TokenRow:
    id: int
    name: str
    scopes: tuple[str, ...]  #: in `SCOPES` order
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def new_token() -> str:
    """A fresh token: the holder's secret, never stored."""
    return PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the ledger keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes in `SCOPES` order, each once; ValueError naming an unknown one or none."""
    wanted = set(scopes)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope {', '.join(unknown)}; scopes: {', '.join(SCOPES)}")
    if not wanted:
        raise ValueError(f"a token needs at least one scope: {', '.join(SCOPES)}")
    return tuple(scope for scope in SCOPES if scope in wanted)


def _row(row: sa.Row[tuple[object, ...]]) -> TokenRow:
    m = row._mapping
    return TokenRow(
        id=m["id"],
        name=m["name"],
        scopes=tuple(str(m["scopes"]).split()),
        created_at=m["created_at"],
        last_used_at=m["last_used_at"],
        revoked_at=m["revoked_at"],
    )


def create(
    connection: sa.Connection, name: str, scopes: Iterable[str], *, now: dt.datetime
) -> tuple[TokenRow, str]:
    """A new token: its row and the token itself, which exists nowhere else from here on.

    ValueError for an empty or over-long name and for unknown or no scopes."""
    name = " ".join(name.split())
    if not name or len(name) > NAME_LENGTH:
        raise ValueError(f"a token's name must be 1 to {NAME_LENGTH} characters")
    granted = check_scopes(scopes)
    token = new_token()
    token_id = connection.execute(
        api_tokens.insert()
        .values(
            name=name,
            token_hash=token_hash(token),
            scopes=" ".join(granted),
            created_at=now,
            last_used_at=None,
            revoked_at=None,
        )
        .returning(api_tokens.c.id)
    ).scalar_one()
    row = get(connection, token_id)
    assert row is not None
    return row, token


def get(connection: sa.Connection, token_id: int) -> TokenRow | None:
    row = connection.execute(api_tokens.select().where(api_tokens.c.id == token_id)).first()
    return None if row is None else _row(row)


def all_tokens(connection: sa.Connection) -> list[TokenRow]:
    """Every token, revoked ones too, oldest first."""
    return [_row(row) for row in connection.execute(api_tokens.select().order_by(api_tokens.c.id))]


def revoke(
    connection: sa.Connection, token_id: int, *, now: dt.datetime
) -> tuple[TokenRow, bool] | None:
    """End the token at once: its row and whether this call revoked it; None for an unknown id.

    Revoking twice keeps the first `revoked_at`: it is when access ended."""
    result = connection.execute(
        api_tokens.update()
        .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    row = get(connection, token_id)
    return None if row is None else (row, result.rowcount == 1)


def authenticate(connection: sa.Connection, token: str) -> TokenRow | None:
    """The token in force whose secret this is, or None (unknown or revoked). Only reads.

    The lookup is by the token's SHA-256, never by the secret itself: what a lookup's time
    could tell is something about a hash, which brings nobody closer to a valid token. The
    stored hash is compared once more in constant time, so no database collation or index
    quirk decides alone."""
    digest = token_hash(token)
    row = connection.execute(
        api_tokens.select().where(
            api_tokens.c.token_hash == digest, api_tokens.c.revoked_at.is_(None)
        )
    ).first()
    if row is None or not hmac.compare_digest(str(row._mapping["token_hash"]), digest):
        return None
    return _row(row)


def due_for_use(row: TokenRow, now: dt.datetime) -> bool:
    """Whether `mark_used` would change `last_used_at` (at most once per `USE_RESOLUTION`),
    so a caller opens a write transaction only then (on SQLite it takes the write lock)."""
    return row.last_used_at is None or row.last_used_at <= now - USE_RESOLUTION


def mark_used(connection: sa.Connection, token_id: int, *, now: dt.datetime) -> None:
    """Record a use, unless one was recorded within `USE_RESOLUTION` (one conditional
    UPDATE: two processes at once write it once)."""
    connection.execute(
        api_tokens.update()
        .where(
            api_tokens.c.id == token_id,
            sa.or_(
                api_tokens.c.last_used_at.is_(None),
                api_tokens.c.last_used_at <= now - USE_RESOLUTION,
            ),
        )
        .values(last_used_at=now)
    )
