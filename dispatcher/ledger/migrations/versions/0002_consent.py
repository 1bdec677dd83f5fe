"""consent record and double opt-in timestamps on subscribers

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatcher.ledger.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = (
    ("consent_at", UTCDateTime()),
    ("consent_source", sa.String(200)),
    ("consent_ip", sa.String(64)),
    ("consent_text", sa.Text()),
    ("confirmation_sent_at", UTCDateTime()),
    ("confirmed_at", UTCDateTime()),
    ("unsubscribed_at", UTCDateTime()),
    ("erased_at", UTCDateTime()),
)


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        for name, kind in COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        for name, _kind in reversed(COLUMNS):
            batch_op.drop_column(name)
