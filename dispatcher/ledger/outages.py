"""Channel outages: a relay or API that refuses the whole session, and its backoff.

A channel that cannot work at all (connection refused, `451` at EHLO or MAIL FROM, a
refused login) is no verdict on any recipient: the claimed deliveries go back to the
queue with their attempt given back (`store.release_claims`). What remains is to stop
hammering the channel: every process on the ledger sees the same outage row and leaves
the channel alone until `retry_at`, which doubles with each failed try (capped). The
first send that gets through ends the outage. See docs/architecture.md ("Channel
outages").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from dispatcher.ledger.tables import UTCDateTime, metadata

FIRST_WAIT = dt.timedelta(seconds=30)
MAX_WAIT = dt.timedelta(minutes=10)

channel_outages = sa.Table(
    "channel_outages",
    metadata,
    sa.Column("channel", sa.String(50), primary_key=True),
    sa.Column("since", UTCDateTime, nullable=False),  # the first refusal of this outage
    sa.Column("failures", sa.Integer, nullable=False),  # tries refused since then
    sa.Column("retry_at", UTCDateTime, nullable=False),  # no process tries before this
    sa.Column("error", sa.Text, nullable=False),  # the latest refusal, as the channel said it
)


@dataclass(frozen=True)
class Outage:
    channel: str
    since: dt.datetime
    failures: int
    retry_at: dt.datetime
    error: str

    def blocks(self, now: dt.datetime) -> bool:
        """Whether the channel is still left alone at `now`.

        A clock before the outage began (a rehearsal with `--at` in the past) is not held
        back by an outage of the present.
        """
        return self.since <= now < self.retry_at


def wait_after(failures: int) -> dt.timedelta:
    """30 s after the first refusal, doubling, at most 10 minutes: a relay back from a
    restart is used within seconds, one down for hours is asked six times an hour."""
    wait: dt.timedelta = FIRST_WAIT * (2 ** max(failures - 1, 0))
    return min(wait, MAX_WAIT)


def outages(connection: sa.Connection) -> dict[str, Outage]:
    """Every channel currently in an outage, by channel."""
    rows = connection.execute(sa.select(channel_outages)).all()
    return {row.channel: Outage(**row._asdict()) for row in rows}


def record_refusal(
    connection: sa.Connection, channel: str, error: str, *, now: dt.datetime
) -> Outage:
    """Count one more refused try of `channel` and push its next try back."""
    current = connection.execute(
        sa.select(channel_outages).where(channel_outages.c.channel == channel).with_for_update()
    ).first()
    if current is None:
        outage = Outage(channel, now, 1, now + wait_after(1), error)
        try:
            with connection.begin_nested():
                connection.execute(channel_outages.insert().values(**outage.__dict__))
            return outage
        except sa.exc.IntegrityError:  # another process recorded it first: count on theirs
            current = connection.execute(
                sa.select(channel_outages).where(channel_outages.c.channel == channel)
            ).one()
    failures = current.failures + 1
    outage = Outage(channel, current.since, failures, now + wait_after(failures), error)
    connection.execute(
        channel_outages.update()
        .where(channel_outages.c.channel == channel)
        .values(failures=failures, retry_at=outage.retry_at, error=error)
    )
    return outage


def end_outage(connection: sa.Connection, channel: str) -> bool:
    """The channel works again; whether it had been in an outage."""
    result = connection.execute(
        channel_outages.delete().where(channel_outages.c.channel == channel)
    )
    return result.rowcount > 0
