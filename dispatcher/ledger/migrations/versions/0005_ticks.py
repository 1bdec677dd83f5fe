"""ticks: the latest clock a tick ran at, per campaign (a clock far ahead is refused)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatcher.ledger.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ticks",
        sa.Column("campaign_id", sa.String(100), nullable=False),
        sa.Column("last_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_ticks")),
    )
    # A ledger in use is protected from its first tick after the upgrade: the latest
    # dispatch creation is the latest tick known to have run.
    op.execute(
        "INSERT INTO ticks (campaign_id, last_at) "
        "SELECT campaign_id, MAX(created_at) FROM dispatches GROUP BY campaign_id"
    )


def downgrade() -> None:
    op.drop_table("ticks")
