"""target identity: social targets named by what they are; the link to each post

Revision ID: 0007
Revises: 0006

Earlier versions named a webhook target `webhook:<kind>:<sha256(url)[:12]>` — a hash of the
whole URL, token included — and the other networks just `mastodon`, `bluesky`, `linkedin`.
The new names (`webhook:matrix:host/!room`, `mastodon:host`, …) cannot be computed here: a
hash cannot be reversed, and the host or account is in the settings, not the ledger. So this
revision only adds `deliveries.provider_url`; the rows are renamed at every start after the
migrations, by recomputing each configured target's former name from the current settings
(`delivery.targets.adopt_former_names`, docs/architecture.md "Social targets"). A row whose
former name matches no configured target (its URL changed before the upgrade) is reported by
`validate` and `status`, and `dispatcher retry --target NEW --from OLD` moves it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("provider_url", sa.String(1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("provider_url")
