"""initial ledger: subscribers, dispatches, deliveries

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-26 05:55:18.722752
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatcher.ledger.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "dispatches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(length=100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("item_id", sa.String(length=100), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("send_at", UTCDateTime(), nullable=False),
        sa.Column("fanout_cursor", sa.Integer(), server_default="0", nullable=False),
        sa.Column("fanout_done", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatches")),
        sa.UniqueConstraint(
            "campaign_id", "day", "channel", name="uq_dispatches_campaign_day_channel"
        ),
    )
    with op.batch_alter_table("dispatches", schema=None) as batch_op:
        batch_op.create_index("ix_dispatches_state", ["state", "send_at"], unique=False)

    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribers")),
        sa.UniqueConstraint("email", name=op.f("uq_subscribers_email")),
    )
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.create_index("ix_subscribers_state_id", ["state", "id"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dispatch_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=400), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("provider_id", sa.String(length=400), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dispatch_id"],
            ["dispatches.id"],
            name=op.f("fk_deliveries_dispatch_id_dispatches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_deliveries_subscriber_id_subscribers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("dispatch_id", "recipient", name="uq_deliveries_dispatch_recipient"),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_claim", ["dispatch_id", "state", "next_attempt_at"], unique=False
        )
        batch_op.create_index("ix_deliveries_state_lease", ["state", "lease_until"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_state_lease")
        batch_op.drop_index("ix_deliveries_claim")

    op.drop_table("deliveries")
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_index("ix_subscribers_state_id")

    op.drop_table("subscribers")
    with op.batch_alter_table("dispatches", schema=None) as batch_op:
        batch_op.drop_index("ix_dispatches_state")

    op.drop_table("dispatches")
