"""channel_outages: a channel that refused the whole session, and when to try it again

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatcher.ledger.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_outages",
        sa.Column("channel", sa.String(50), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("retry_at", UTCDateTime(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_channel_outages")),
    )


def downgrade() -> None:
    op.drop_table("channel_outages")
