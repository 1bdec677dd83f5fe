"""the stop switch: who cancelled a dispatch (and resent its rest), and paused channels

Revision ID: 0010
Revises: 0009

`dispatcher cancel` records who, when and why on the dispatch; `resend --only-unsent` who
sent what the cancel left. `channel_pauses` has one row per paused channel (or `all`), read by
every process before each claim batch (docs/operations.md, "A wrong link went out"). The delivery
state `cancelled` needs no schema change: states are strings.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatcher.ledger.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dispatches") as batch:
        batch.add_column(sa.Column("cancelled_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("cancelled_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("cancel_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("resent_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("resent_by", sa.String(200), nullable=True))
    op.create_table(
        "channel_pauses",
        sa.Column("channel", sa.String(50), nullable=False),
        sa.Column("paused_at", UTCDateTime(), nullable=False),
        sa.Column("paused_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_channel_pauses")),
    )


def downgrade() -> None:
    op.drop_table("channel_pauses")
    # Deliveries stay `cancelled`: older code claims only pending, deferred and expired rows,
    # so it leaves them alone (as `failed` its `retry` would send a cancelled email).
    with op.batch_alter_table("dispatches") as batch:
        batch.drop_column("resent_by")
        batch.drop_column("resent_at")
        batch.drop_column("cancel_reason")
        batch.drop_column("cancelled_by")
        batch.drop_column("cancelled_at")
