"""What to do after a failed send — pure policy, one place.

The pipeline asks `decide` and writes the answer to the ledger; channels only
classify their provider's errors (permanent, ambiguous, retry-after).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dispatcher.channels.base import ChannelError
from dispatcher.channels.http import seconds
from dispatcher.ledger.tables import DeliveryState

FIRST_BACKOFF = dt.timedelta(minutes=1)
MAX_BACKOFF = dt.timedelta(hours=1)
MAX_ATTEMPTS = 6  #: 1 + 5 retries over about half an hour (1, 2, 4, 8, 16 min)


@dataclass(frozen=True)
class RetryDecision:
    state: DeliveryState
    next_attempt_at: dt.datetime | None = None
    wait: dt.timedelta | None = None  #: deferred: the wait actually applied (backoff or provider's)


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
    doubtful: bool = False,
) -> RetryDecision:
    """The state after a failed attempt.

    An ambiguous error (the provider may have acted) is retried once where a repeat is
    recognisable as the same message (idempotent), and is `unknown` otherwise or the second
    time. Once an attempt may have delivered (`doubtful`), the delivery is never called
    `failed`: whatever the later attempts say, it ends `unknown` (see docs/architecture.md).
    Otherwise: `failed` when permanent or out of attempts, else `deferred` with a backoff.
    """
    if error.ambiguous and (doubtful or not idempotent):
        return RetryDecision(DeliveryState.UNKNOWN)
    if error.permanent or attempts >= max_attempts:
        return RetryDecision(DeliveryState.UNKNOWN if doubtful else DeliveryState.FAILED)
    # A provider's wait is a duration measured on the wall clock (see docs/architecture.md,
    # "Provider waits"); it is applied to the dispatch's clock `now`, so a rehearsal with
    # `--at` waits as long as a live run.
    wait = backoff(attempts)
    if error.retry_after is not None:
        wait = max(wait, dt.timedelta(seconds=error.retry_after))
    return RetryDecision(DeliveryState.DEFERRED, now + wait, wait)


def explain(error: ChannelError, decision: RetryDecision) -> str:
    """The error as the ledger keeps it: a deferral says the wait actually applied, which is
    the longer of the backoff and the provider's (e.g. "next attempt in 1 min")."""
    if decision.wait is None:
        return error.message
    return f"{error.message}; next attempt in {seconds(decision.wait.total_seconds())}"
