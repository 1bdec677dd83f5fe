"""`dispatcher cancel|pause|resume|resend`: the stop switch (docs/operations.md, "A wrong
link went out").

Thin commands over `delivery.controls`, with the other commands' conventions (`cli.common`):
exit 1 with a message that says what to fix, 2 for a usage error. Each action is recorded as
done by `cli:$USER` (the ledger for a cancel and a resend, the log for all four).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import logging
import sys

import sqlalchemy as sa

from dispatcher.campaign.model import Channel
from dispatcher.cli.common import EXIT_OK, EXIT_USAGE, UserError, ledger_of, printable, settings_of
from dispatcher.delivery import controls
from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger import store

CHANNELS = [str(c) for c in Channel]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cancel`, `pause`, `resume` and `resend`; each sets `handler(args)`."""
    cancel = commands.add_parser(
        "cancel", help="stop a dispatch now: nothing more is sent, the rest becomes cancelled"
    )
    cancel.add_argument("dispatch", metavar="DISPATCH", type=int, help="dispatch id (`status`)")
    cancel.add_argument("--reason", help="why, for `status` and the log")
    cancel.set_defaults(handler=cmd_cancel)

    pause = commands.add_parser(
        "pause", help="hold all sending (or one channel's) in every process; keeps the place"
    )
    pause.add_argument("channel", metavar="CHANNEL", nargs="?", choices=CHANNELS)
    pause.set_defaults(handler=cmd_pause)

    resume = commands.add_parser("resume", help="lift a pause; sending continues where it stopped")
    resume.add_argument("channel", metavar="CHANNEL", nargs="?", choices=CHANNELS)
    resume.set_defaults(handler=cmd_resume)

    resend = commands.add_parser(
        "resend", help="send what a cancel left unsent (needs --only-unsent)"
    )
    resend.add_argument("dispatch", metavar="DISPATCH", type=int, help="a cancelled dispatch")
    resend.add_argument(
        "--only-unsent",
        action="store_true",
        help="required: the cancelled deliveries go out now (those already sent do not)",
    )
    resend.set_defaults(handler=cmd_resend)


def _quiet() -> None:
    """The command prints what it did; the log records meant for a service's log (who
    cancelled or paused, `delivery.controls`) would only repeat it here on stderr."""
    logging.getLogger("dispatcher").addHandler(logging.NullHandler())


def by() -> str:
    """Who acts: the shell user, as far as the process can tell."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        return "cli"
    return f"cli:{user}" if user else "cli"


def _describe(dispatch: store.DispatchRow | None, dispatch_id: int) -> str:
    if dispatch is None:
        return f"dispatch {dispatch_id}"
    return f"dispatch {dispatch.id} {dispatch.day} {dispatch.channel} {dispatch.item_id}"


def _unknown(dispatch_id: int) -> UserError:
    return UserError(f"no dispatch with id {dispatch_id}; `dispatcher status` lists them")


def _when(at: dt.datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


def cmd_cancel(args: argparse.Namespace) -> int:
    _quiet()
    settings = settings_of(args)
    now = dt.datetime.now(dt.UTC)
    with ledger_of(settings) as engine:
        try:
            result = controls.cancel_dispatch(
                engine, args.dispatch, by=by(), reason=args.reason, now=now
            )
        except KeyError:
            raise _unknown(args.dispatch) from None
        except ValueError as error:
            raise UserError(str(error)) from None
        what = _describe(controls.dispatch_of(engine, args.dispatch), args.dispatch)
    if result.already:
        print(f"{what} was cancelled already; nothing changed (`dispatcher status` says by whom)")
        return EXIT_OK
    if result.sent == result.cancelled == 0:
        # Cancelled before its fan-out made the first rows: nothing to count yet.
        print(f"cancelled {what} before anything was sent or queued")
    else:
        print(
            f"cancelled {what}: {result.sent} sent, {result.cancelled} not sent (now "
            "cancelled). No process claims any more of it; messages already handed to a "
            "worker finish and are recorded."
        )
    print(
        f"`dispatcher status` shows the final counts; `dispatcher resend {args.dispatch} "
        "--only-unsent` would send the rest."
    )
    return EXIT_OK


def _pause_text(pause: controls.Pause) -> str:
    what = "all sending" if pause.channel is None else f"{pause.channel}"
    return f"{what} (since {_when(pause.paused_at)} by {printable(pause.by)})"


def _channel(args: argparse.Namespace) -> Channel | None:
    return None if args.channel is None else Channel(args.channel)


def _pauses(engine: sa.Engine) -> list[controls.Pause]:
    with ledger_engine.reader(engine).connect() as connection:
        return controls.pauses(connection)


def cmd_pause(args: argparse.Namespace) -> int:
    _quiet()
    settings = settings_of(args)
    channel = _channel(args)
    with ledger_of(settings) as engine:
        before = {p.channel: p for p in _pauses(engine)}
        controls.pause(engine, channel, by=by(), now=dt.datetime.now(dt.UTC))
    what = "all sending" if channel is None else f"channel {channel}"
    if channel in before:
        print(f"{what} was paused already: {_pause_text(before[channel])}")
        return EXIT_OK
    print(
        f"paused {what}: no process claims anything more{'' if channel is None else ' for it'}; "
        "messages already handed to a worker finish. Pending deliveries keep their place; "
        f"`dispatcher resume{'' if channel is None else ' ' + channel}` continues them."
    )
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    _quiet()
    settings = settings_of(args)
    channel = _channel(args)
    with ledger_of(settings) as engine:
        before = {p.channel for p in _pauses(engine)}
        controls.resume(engine, channel, by=by(), now=dt.datetime.now(dt.UTC))
        left = _pauses(engine)
    what = "all sending" if channel is None else f"channel {channel}"
    if channel not in before:
        print(f"{what} was not paused")
    else:
        print(f"resumed {what}: sending continues where it stopped (within a poll)")
    for pause in left:
        print(f"still paused: {_pause_text(pause)}")
    return EXIT_OK


def cmd_resend(args: argparse.Namespace) -> int:
    if not args.only_unsent:
        print(
            "error: resend sends a cancelled dispatch's unsent deliveries now; say so with "
            f"`dispatcher resend {args.dispatch} --only-unsent`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    _quiet()
    settings = settings_of(args)
    with ledger_of(settings) as engine:
        try:
            queued = controls.resend_unsent(
                engine, args.dispatch, by=by(), now=dt.datetime.now(dt.UTC)
            )
        except KeyError:
            raise _unknown(args.dispatch) from None
        except ValueError as error:
            raise UserError(str(error)) from None
        dispatch = controls.dispatch_of(engine, args.dispatch)
        held = [
            p
            for p in _pauses(engine)
            if dispatch is not None and p.channel in (None, dispatch.channel)
        ]
    what = _describe(dispatch, args.dispatch)
    if not queued:
        print(f"nothing to resend: {what} has no unsent deliveries; it stays cancelled")
        return EXIT_OK
    print(
        f"queued {queued} unsent deliveries of {what} again; the running service sends them "
        "at its next poll (or `dispatcher tick`)"
    )
    for pause in held:
        print(f"note: {_pause_text(pause)} is paused: nothing goes out until it is resumed")
    return EXIT_OK
