"""desk: editors, one-time sign-in links, sessions, iCal feed tokens, audit log

Revision ID: 0008
Revises: 0007

The editors' desk (docs/desk.md). Links, sessions and feed tokens are stored as the SHA-256
of the token only; the audit log keeps who did what and when, also for removed editors.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatcher.ledger.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _token_table(name: str, *columns: sa.Column[object]) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("editor_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(
            ["editor_id"],
            ["editors.id"],
            name=op.f(f"fk_{name}_editor_id_editors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
        sa.UniqueConstraint("token_hash", name=op.f(f"uq_{name}_token_hash")),
    )


def upgrade() -> None:
    op.create_table(
        "editors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_editors")),
        sa.UniqueConstraint("email", name=op.f("uq_editors_email")),
    )
    _token_table(
        "editor_sign_in_links",
        sa.Column("next_path", sa.String(500), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
    )
    _token_table(
        "editor_sessions",
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
    )
    _token_table(
        "editor_feed_tokens",
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "desk_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("editor_id", sa.Integer(), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["editor_id"],
            ["editors.id"],
            name=op.f("fk_desk_audit_editor_id_editors"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_audit")),
    )
    op.create_index("ix_desk_audit_at", "desk_audit", ["at"])


def downgrade() -> None:
    op.drop_index("ix_desk_audit_at", table_name="desk_audit")
    op.drop_table("desk_audit")
    op.drop_table("editor_feed_tokens")
    op.drop_table("editor_sessions")
    op.drop_table("editor_sign_in_links")
    op.drop_table("editors")
