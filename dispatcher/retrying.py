"""What to do after a failed send — pure policy, one place.

The pipeline asks `decide` and writes the answer to the ledger; channels only
classify their provider's errors (permanent, ambiguous, retry-after).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dispatcher.channels.base import ChannelError
from dispatcher.ledger.tables import DeliveryState

FIRST_BACKOFF = dt.timedelta(minutes=1)
MAX_BACKOFF = dt.timedelta(hours=1)
MAX_ATTEMPTS = 6  #: 1 + 5 retries over about half an hour (1, 2, 4, 8, 16 min)


@dataclass(frozen=True)
class RetryDecision:
    state: DeliveryState
    next_attempt_at: dt.datetime | None = None


def backoff(attempts: int) -> dt.timedelta:
    """Exponential: 1 min after the first attempt, doubling, capped at one hour."""
    wait: dt.timedelta = FIRST_BACKOFF * (2 ** max(attempts - 1, 0))
    return min(wait, MAX_BACKOFF)


def decide(
    error: ChannelError,
    *,
    attempts: int,
    idempotent: bool,
    now: dt.datetime,
    max_attempts: int = MAX_ATTEMPTS,
) -> RetryDecision:
    """failed when permanent; unknown when the provider may have acted and cannot
    tell a repeat; deferred (with when) while attempts remain; failed after that."""
    if error.permanent:
        return RetryDecision(DeliveryState.FAILED)
    if error.ambiguous and not idempotent:
        return RetryDecision(DeliveryState.UNKNOWN)
    if attempts >= max_attempts:
        return RetryDecision(DeliveryState.FAILED)
    wait = backoff(attempts)
    if error.retry_after is not None:
        wait = max(wait, dt.timedelta(seconds=error.retry_after))
    return RetryDecision(DeliveryState.DEFERRED, now + wait)
