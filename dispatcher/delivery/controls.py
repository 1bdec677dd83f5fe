"""The stop switch: cancel a dispatch, pause and resume sending, resend what a cancel left.

One interface for the command line (`dispatcher cancel|pause|resume|resend`) and the HTTP
API; each call is one transaction on the ledger, which every `dispatcher run` process reads
before each claim batch — so when a call returns, every process stops (or resumes) within
the batch it is sending. Each action is logged with who did it (`by`). The rules and the
runbook: docs/operations.md ("A wrong link went out").
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa

from dispatcher.campaign.model import Channel
from dispatcher.ledger import controls, store
from dispatcher.ledger import engine as ledger_engine

__all__ = [
    "CancelResult",
    "Pause",
    "cancel_dispatch",
    "pause",
    "pauses",
    "resend_unsent",
    "resume",
]

log = logging.getLogger("dispatcher")


@dataclass(frozen=True)
class CancelResult:
    dispatch_id: int
    state: str  #: the dispatch's state afterwards: `cancelled`
    cancelled: int  #: deliveries this call turned `cancelled` (not sent, now never by themselves)
    sent: int  #: deliveries sent by then (in-flight ones are recorded as they finish)
    already: bool  #: it had been cancelled before; nothing was changed


@dataclass(frozen=True)
class Pause:
    channel: Channel | None  #: None: all sending
    paused_at: dt.datetime
    by: str


def cancel_dispatch(
    engine: sa.Engine, dispatch_id: int, *, by: str, reason: str | None, now: dt.datetime
) -> CancelResult:
    """Stop a dispatch: no claim after this returns, the unsent rest `cancelled`.

    KeyError for an unknown dispatch; ValueError (saying so) for one that has finished.
    Cancelling a cancelled dispatch changes nothing and says `already`.
    """
    with engine.begin() as connection:
        done = controls.cancel(connection, dispatch_id, by=by, reason=reason, now=now)
    result = CancelResult(dispatch_id, done.state, done.cancelled, done.sent, done.already)
    if not result.already:
        log.warning(
            "dispatch %s cancelled by %s (%s): %d deliveries not sent, %d sent",
            dispatch_id,
            by,
            reason or "no reason given",
            result.cancelled,
            result.sent,
            extra={
                "event": "dispatch_cancelled",
                "dispatch": dispatch_id,
                "by": by,
                "reason": reason,
                "counts": {"cancelled": result.cancelled, "sent": result.sent},
            },
        )
    return result


def pause(engine: sa.Engine, channel: Channel | None, *, by: str, now: dt.datetime) -> None:
    """Hold all sending (None) or one channel's, in every process; idempotent (a second
    pause keeps the first one's time and author)."""
    with engine.begin() as connection:
        new = controls.pause(connection, _name(channel), by=by, now=now)
    if new:
        log.warning(
            "sending paused (%s) by %s",
            _name(channel),
            by,
            extra={"event": "sending_paused", "channel": _name(channel), "by": by},
        )


def resume(engine: sa.Engine, channel: Channel | None, *, by: str, now: dt.datetime) -> None:
    """Lift the pause of all sending (None) or of one channel; idempotent. A channel's own
    pause and the pause of all are separate: lifting one leaves the other in force."""
    with engine.begin() as connection:
        lifted = controls.resume(connection, _name(channel))
    if lifted:
        log.warning(
            "sending resumed (%s) by %s at %s",
            _name(channel),
            by,
            now.isoformat(),
            extra={"event": "sending_resumed", "channel": _name(channel), "by": by},
        )


def pauses(connection: sa.Connection) -> list[Pause]:
    """The pauses in force: that of all sending first, then by channel."""
    # A row of a channel this version does not know (a newer version wrote it) is left out.
    known = {str(c) for c in Channel}
    return [
        Pause(
            None if row.channel == controls.ALL else Channel(row.channel),
            row.paused_at,
            row.paused_by,
        )
        for row in controls.pauses(connection)
        if row.channel == controls.ALL or row.channel in known
    ]


def resend_unsent(engine: sa.Engine, dispatch_id: int, *, by: str, now: dt.datetime) -> int:
    """Send what a cancel left unsent: the cancelled deliveries back in the queue, the
    dispatch running again (the next poll or tick sends them); how many.

    KeyError for an unknown dispatch, ValueError for one that is not cancelled.
    """
    with engine.begin() as connection:
        queued = controls.resend(connection, dispatch_id, by=by, now=now)
    if queued:
        log.warning(
            "dispatch %s: %d unsent deliveries queued again by %s",
            dispatch_id,
            queued,
            by,
            extra={"event": "dispatch_resent", "dispatch": dispatch_id, "by": by},
        )
    return queued


def dispatch_of(engine: sa.Engine, dispatch_id: int) -> store.DispatchRow | None:
    """The dispatch, for messages about it (day, channel, item)."""
    with ledger_engine.reader(engine).connect() as connection:
        return store.dispatch_by_id(connection, dispatch_id)


def _name(channel: Channel | None) -> str:
    return controls.ALL if channel is None else str(channel)
