"""SQLAlchemy tables of the ledger: subscribers, dispatches, deliveries.

Unique constraints make a second dispatch for (campaign, day, channel) and a
second delivery for (dispatch, recipient) impossible, whatever the code does.
All timestamps are stored as UTC.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class SubscriberState(StrEnum):
    PENDING = "pending"  #: signed up, not yet confirmed (double opt-in)
    ACTIVE = "active"  #: receives the newsletter
    UNSUBSCRIBED = "unsubscribed"  #: asked to stop; gets nothing more
    BOUNCED = "bounced"  #: the mailbox does not exist; gets nothing more


class DispatchState(StrEnum):
    PLANNED = "planned"  #: created, deliveries may still be fanned out
    RUNNING = "running"  #: deliveries are being sent
    DONE = "done"  #: every delivery sent or skipped
    PARTIAL = "partial"  #: finished, some deliveries failed or are unknown
    FAILED = "failed"  #: finished, nothing was delivered
    MISSED = "missed"  #: its time plus catch_up passed before anything ran
    CANCELLED = "cancelled"  #: called off by an operator


class DeliveryState(StrEnum):
    PENDING = "pending"  #: waiting to be claimed
    SENDING = "sending"  #: claimed by a worker until lease_until
    SENT = "sent"  #: accepted by the provider
    DEFERRED = "deferred"  #: temporary error; retried at next_attempt_at
    FAILED = "failed"  #: permanent error
    SKIPPED = "skipped"  #: the subscriber left before the send
    UNKNOWN = "unknown"  #: outcome unknown on a provider without idempotency
    #: not sent because its dispatch was cancelled; `dispatcher resend --only-unsent` sends it
    CANCELLED = "cancelled"


FINISHED_DELIVERY_STATES = frozenset(
    {
        DeliveryState.SENT,
        DeliveryState.FAILED,
        DeliveryState.SKIPPED,
        DeliveryState.UNKNOWN,
        DeliveryState.CANCELLED,
    }
)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware UTC datetimes out — also on SQLite, which keeps no zone."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; pass an aware UTC datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),  # normalised
    sa.Column("name", sa.String(200)),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("source", sa.String(64)),  # cli, import, web
    sa.Column("last_error", sa.Text),  # e.g. the bounce reply
    # Proof of consent (UWG §7, GDPR art. 7): when, where, from which address, to what text.
    sa.Column("consent_at", UTCDateTime),
    sa.Column("consent_source", sa.String(200)),
    sa.Column("consent_ip", sa.String(64)),  # possibly truncated, see DISPATCHER_CONSENT_IP
    sa.Column("consent_text", sa.Text),
    sa.Column("confirmation_sent_at", UTCDateTime),  # double opt-in mail; at most one per hour
    sa.Column("confirmed_at", UTCDateTime),
    sa.Column("unsubscribed_at", UTCDateTime),
    sa.Column("erased_at", UTCDateTime),  # personal data deleted; the row keeps delivery counts
    # Consecutive soft bounces reported by the bounce webhook; suppressed at the limit.
    sa.Column("soft_bounces", sa.Integer, nullable=False, server_default="0"),
    # The reader's language ("de", "en"); NULL: the campaign's default language.
    sa.Column("lang", sa.String(8)),
    # Part of the consent record: the language they signed up in, and when and by whom
    # (`reader`, `cli`, `import`, `api:<token>`) it last changed since (migration 0014).
    sa.Column("consent_lang", sa.String(8)),
    sa.Column("lang_changed_at", UTCDateTime),
    sa.Column("lang_changed_by", sa.String(200)),
)

dispatches = sa.Table(
    "dispatches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("campaign_id", sa.String(100), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("item_id", sa.String(100), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("content", sa.Text, nullable=False),  # JSON of the item as sent: the past stays
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("send_at", UTCDateTime, nullable=False),
    # Fan-out cursor: the highest subscriber id that has a delivery row. Fan-out is
    # streamed in batches and resumes here after a crash.
    sa.Column("fanout_cursor", sa.Integer, nullable=False, server_default="0"),
    sa.Column("fanout_done", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("error", sa.Text),
    # The stop switch (`dispatcher cancel`, docs/operations.md "A wrong link went out"): who
    # called the dispatch off, when and why; and who sent what it left unsent (`resend`).
    sa.Column("cancelled_at", UTCDateTime),
    sa.Column("cancelled_by", sa.String(200)),
    sa.Column("cancel_reason", sa.Text),
    sa.Column("resent_at", UTCDateTime),
    sa.Column("resent_by", sa.String(200)),
    sa.UniqueConstraint("campaign_id", "day", "channel", name="uq_dispatches_campaign_day_channel"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "dispatch_id",
        sa.Integer,
        sa.ForeignKey("dispatches.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("recipient", sa.String(400), nullable=False),  # "subscriber:42" or a target name
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="SET NULL")),
    sa.Column("key", sa.String(200), nullable=False),  # Message-ID / idempotency key, kept on retry
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("last_error", sa.Text),
    sa.Column("provider_id", sa.String(400)),
    sa.Column("provider_url", sa.String(1000)),  # a link to the post, where the network has one
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    # An earlier attempt got no verdict after the whole message went out: it may have arrived.
    # Such a delivery is resent at most once and never called `failed` (see docs/architecture.md).
    sa.Column("doubtful", sa.Boolean, nullable=False, server_default=sa.false()),
    # The language this delivery is written in, fixed at fan-out; NULL: the default language.
    sa.Column("lang", sa.String(8)),
    sa.UniqueConstraint("dispatch_id", "recipient", name="uq_deliveries_dispatch_recipient"),
)

# The claim query: "deliveries of this dispatch that are pending, or deferred and due".
sa.Index(
    "ix_deliveries_claim",
    deliveries.c.dispatch_id,
    deliveries.c.state,
    deliveries.c.next_attempt_at,
)
# Lease expiry sweep across dispatches.
sa.Index("ix_deliveries_state_lease", deliveries.c.state, deliveries.c.lease_until)
sa.Index("ix_dispatches_state", dispatches.c.state, dispatches.c.send_at)
sa.Index("ix_subscribers_state_id", subscribers.c.state, subscribers.c.id)
