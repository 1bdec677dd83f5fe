"""consent language: the language a person signed up in, and who last changed it

Revision ID: 0014
Revises: 0013

`subscribers.lang` (0013) is the language a reader gets now; it may change later (the
reader on the unsubscribe page, the operator, the API). The consent record keeps what it
was when they agreed: `consent_lang` (NULL: no language was given, i.e. the campaign's
default, or a row from before languages), and `lang_changed_at`/`lang_changed_by` say when
and through which door it last changed since (`reader`, `cli`, `import`, `api:<token>`).
docs/commands.md, "`subscribers`: languages".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dispatcher.ledger.tables import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("consent_lang", sa.String(8), nullable=True))
        batch.add_column(sa.Column("lang_changed_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("lang_changed_by", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("lang_changed_by")
        batch.drop_column("lang_changed_at")
        batch.drop_column("consent_lang")
