"""What every kind of dispatch shares: the context a send runs in, the interface each
kind (email, posts) implements for the generic loop in `pipeline`, and the one place a
channel's error becomes a delivery outcome.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import jinja2
import sqlalchemy as sa

from dispatcher.campaign.model import Campaign
from dispatcher.channels.base import ChannelError, EmailChannel, SocialTarget
from dispatcher.clock import Clock
from dispatcher.delivery import retrying
from dispatcher.ledger import store
from dispatcher.mail import compose as emails

FANOUT_BATCH = 5000  #: subscribers turned into delivery rows per statement
CLAIM_BATCH = 100  #: deliveries claimed (and at most repeated after a crash) per batch
LEASE = dt.timedelta(minutes=5)  #: a claim older than this is taken over by another worker

Signer = Callable[[bytes], bytes]
Progress = Callable[[int, int], None]  #: (done, total) of the dispatch being sent


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class PipelineConfig:
    fanout_batch: int = FANOUT_BATCH
    claim_batch: int = CLAIM_BATCH
    lease: dt.timedelta = LEASE
    connections: int = 4
    max_attempts: int = retrying.MAX_ATTEMPTS
    worker: str = field(default_factory=worker_name)
    clock_jump_limit: dt.timedelta = dt.timedelta(hours=24)  #: see `ledger.ticks`
    clock_jump_confirmed: bool = False  #: `--force`: the operator vouches for the clock


@dataclass
class Context:
    """What one process needs to send: the database, the campaign, a channel, the clock."""

    engine: sa.Engine
    campaign: Campaign
    env: jinja2.Environment
    sender: emails.Sender
    imprint: str
    email_channel: EmailChannel
    clock: Clock
    social_targets: Callable[[str], list[SocialTarget]] = lambda _channel: []
    signer: Signer | None = None  #: DKIM: signs the exact bytes that are sent
    return_path: str | None = None  #: envelope sender (MAIL FROM) where bounces go
    config: PipelineConfig = field(default_factory=PipelineConfig)
    stop: threading.Event = field(default_factory=threading.Event)
    progress: Progress | None = None
    #: called whenever the work moves on (a message, a lease renewal, a ledger write):
    #: the service's watchdog calls a lane hung when this stops
    beat: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class ChannelDown:
    """The channel could not work at all for this delivery; it goes back to the queue."""

    delivery_id: int
    message: str


class DispatchSender(Protocol):
    """One kind of dispatch (the daily email, a network's post) behind the generic loop.

    `pipeline.run_dispatch` claims, records and retries; the sender only knows how to fan
    the dispatch out into deliveries and how to send one delivery."""

    workers: int  #: deliveries sent at once (SMTP connections; 1 for a network)

    def fan_out_step(self) -> bool:
        """Create the next batch of delivery rows; whether more may follow."""
        ...

    def send(self, delivery: store.ClaimedDelivery) -> store.Outcome | ChannelDown:
        """Send one claimed delivery; its outcome, or that the channel is down."""
        ...

    def close(self) -> None: ...


def outcome_of_error(
    ctx: Context, delivery: store.ClaimedDelivery, error: ChannelError, *, idempotent: bool
) -> store.Outcome | ChannelDown:
    """The one place a channel's error becomes a ledger state (see `retrying.decide`)."""
    if error.unavailable:
        return ChannelDown(delivery.id, error.message)
    decision = retrying.decide(
        error,
        attempts=delivery.attempts,
        idempotent=idempotent,
        now=ctx.clock(),
        max_attempts=ctx.config.max_attempts,
        doubtful=delivery.doubtful,
    )
    bounced = delivery.subscriber_id if error.bounced and not delivery.doubtful else None
    return store.Outcome(
        delivery.id,
        decision.state,
        error=retrying.explain(error, decision),
        next_attempt_at=decision.next_attempt_at,
        bounced_subscriber_id=bounced,
        doubtful=error.ambiguous,
    )
