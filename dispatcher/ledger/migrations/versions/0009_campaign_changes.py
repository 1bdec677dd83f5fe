"""campaign changes: the history of desk edits to the campaign file

Revision ID: 0009
Revises: 0008

Each desk change of the campaign file (docs/desk.md): editor, time, action, item, a summary,
the file's version before and after, the unified diff, and the whole file text before the
change, from which "restore" gives an item back as it was.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatcher.ledger.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("editor_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("summary", sa.String(500), nullable=False),
        sa.Column("version_before", sa.String(64), nullable=False),
        sa.Column("version_after", sa.String(64), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("text_before", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["editor_id"],
            ["editors.id"],
            name=op.f("fk_campaign_changes_editor_id_editors"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_changes")),
    )
    op.create_index("ix_campaign_changes_at", "campaign_changes", ["at"])
    op.create_index("ix_campaign_changes_item_id", "campaign_changes", ["item_id"])


def downgrade() -> None:
    op.drop_index("ix_campaign_changes_item_id", table_name="campaign_changes")
    op.drop_index("ix_campaign_changes_at", table_name="campaign_changes")
    op.drop_table("campaign_changes")
