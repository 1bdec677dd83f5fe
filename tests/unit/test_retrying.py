"""The retry policy: what a failed attempt leaves behind (pure, no I/O)."""

from __future__ import annotations

import datetime as dt

from dispatcher.channels.base import ChannelError, ErrorKind
from dispatcher.delivery.retrying import decide
from dispatcher.ledger.tables import DeliveryState

NOW = dt.datetime(2019, 4, 2, 6, 0, tzinfo=dt.UTC)


def test_an_ambiguous_email_is_resent_once_then_unknown() -> None:
    error = ChannelError("no reply to the end of data", kind=ErrorKind.AMBIGUOUS)
    first = decide(error, attempts=1, idempotent=True, now=NOW)
    assert first.state is DeliveryState.DEFERRED and first.next_attempt_at is not None
    second = decide(error, attempts=2, idempotent=True, now=NOW, doubtful=True)
    assert second.state is DeliveryState.UNKNOWN


def test_an_ambiguous_post_without_idempotency_is_unknown_at_once() -> None:
    error = ChannelError("timeout after posting", kind=ErrorKind.AMBIGUOUS)
    assert decide(error, attempts=1, idempotent=False, now=NOW).state is DeliveryState.UNKNOWN


def test_after_a_doubtful_attempt_nothing_is_called_failed() -> None:
    permanent = ChannelError("550 rejected", kind=ErrorKind.PERMANENT)
    temporary = ChannelError("451 try later")
    assert decide(permanent, attempts=2, idempotent=True, now=NOW).state is DeliveryState.FAILED
    assert (
        decide(permanent, attempts=2, idempotent=True, now=NOW, doubtful=True).state
        is DeliveryState.UNKNOWN
    )
    assert (
        decide(temporary, attempts=6, idempotent=True, now=NOW, max_attempts=6, doubtful=True).state
        is DeliveryState.UNKNOWN
    )
    assert (
        decide(temporary, attempts=6, idempotent=True, now=NOW, max_attempts=6).state
        is DeliveryState.FAILED
    )
