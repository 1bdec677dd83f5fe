"""The retry policy: what a failed attempt leaves behind (pure, no I/O)."""

from __future__ import annotations

import datetime as dt

from dispatcher.channels.base import ChannelError, ErrorKind
from dispatcher.delivery.retrying import decide, explain
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


def test_the_message_states_the_wait_actually_applied() -> None:
    asked_3_s = ChannelError(
        "matrix: HTTP 429: rate limited (the provider asks to wait 3 s)", retry_after=3
    )
    decision = decide(asked_3_s, attempts=1, idempotent=True, now=NOW)
    assert decision.next_attempt_at == NOW + dt.timedelta(minutes=1)
    assert explain(asked_3_s, decision).endswith("asks to wait 3 s); next attempt in 1 min")

    asked_2_h = ChannelError("mastodon: HTTP 429: rate limited", retry_after=7500)
    decision = decide(asked_2_h, attempts=1, idempotent=True, now=NOW)
    assert decision.next_attempt_at == NOW + dt.timedelta(seconds=7500)
    assert explain(asked_2_h, decision).endswith("; next attempt in 2 h 5 min")

    permanent = ChannelError("linkedin: HTTP 422: bad", kind=ErrorKind.PERMANENT)
    assert explain(permanent, decide(permanent, attempts=1, idempotent=False, now=NOW)) == (
        "linkedin: HTTP 422: bad"
    )
