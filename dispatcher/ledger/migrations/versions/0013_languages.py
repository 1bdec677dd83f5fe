"""languages: each reader's language, and the language each delivery went out in

Revision ID: 0013
Revises: 0012

`subscribers.lang` is the reader's choice (NULL: the campaign's default language, which is
what every reader got before). `deliveries.lang` is the language a delivery is written in,
fixed at fan-out so a retry sends what the first attempt sent (NULL: the default language,
as for every row written before this revision). docs/architecture.md, "Languages".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("lang", sa.String(8), nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("lang", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("lang")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("lang")
