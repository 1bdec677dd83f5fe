"""Commands for ops: `tick`, `run`, `status`, `retry`, `db upgrade`, `demo`.

They share the editor commands' conventions (see `cli`): settings from the
environment, exit 1 with a message that says what to fix, 3 when a delivery failed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dispatcher import logs
from dispatcher.campaign.model import Campaign, Channel, item_to_json
from dispatcher.campaign.source import CampaignSource
from dispatcher.cli.common import (
    EXIT_DELIVERY_FAILED,
    EXIT_OK,
    UserError,
    campaign_of,
    format_plan,
    instant,
    printable,
    settings_of,
)
from dispatcher.clock import SimulatedClock, clock_from, utc_now
from dispatcher.content import rendering
from dispatcher.delivery import alert_destinations, metrics, pipeline, schedule, wiring
from dispatcher.delivery import targets as delivery_targets
from dispatcher.delivery.context import build_context, open_ledger
from dispatcher.delivery.leader import SqliteInUseError
from dispatcher.delivery.service import Service
from dispatcher.delivery.status import status_of
from dispatcher.ledger import controls as ledger_controls
from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger import outages, store, ticks
from dispatcher.ledger import subscribers as subscriber_store
from dispatcher.ledger import targets as ledger_targets
from dispatcher.ledger.tables import DeliveryState, DispatchState, SubscriberState
from dispatcher.settings import Settings

DELIVERY_COLUMNS = [s.value for s in DeliveryState]
FORCE_HELP = (
    "the clock is right although it is more than DISPATCHER_CLOCK_JUMP_HOURS ahead of the "
    "last tick (the dispatcher was stopped): record the sends in between as missed"
)


def _describe(d: store.DispatchRow) -> str:
    return f"dispatch {d.id} {d.day} {d.channel} {d.item_id}"


def _report_lines(report: pipeline.TickReport, engine: sa.Engine) -> tuple[list[str], list[str]]:
    """One line per dispatch the tick touched (created, finished with counts, or missed), each
    naming day, channel and item — also one created by an earlier tick; and for stderr one
    line per failed or unknown delivery of a finished dispatch (and per deferred post of an
    unfinished one) with its reason."""
    lines = [f"{_describe(d)}: MISSED" for d in report.missed]
    described = {d.id: _describe(d) for d in report.created}
    social = {d.id for d in report.created if d.channel != Channel.EMAIL}
    errors: list[str] = []
    with ledger_engine.reader(engine).connect() as connection:
        for dispatch_id, state in report.finished.items():
            dispatch = store.dispatch_by_id(connection, dispatch_id)
            what = described.pop(dispatch_id, None) or (
                _describe(dispatch) if dispatch else f"dispatch {dispatch_id}"
            )
            counts = report.counts[dispatch_id]
            listed = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            lines.append(f"{what}: {state} ({listed})")
            if not (counts.get(DeliveryState.FAILED) or counts.get(DeliveryState.UNKNOWN)):
                continue
            if dispatch is not None and dispatch.channel != Channel.EMAIL:
                errors += [
                    f"{what}: {post.target} {post.state}: {_first_line(post.error)}"
                    for post in ledger_targets.posts(connection, [dispatch_id])
                    if post.state in (DeliveryState.FAILED, DeliveryState.UNKNOWN)
                ]
            else:
                errors += [
                    f"{what}: {_first_line(error)}"
                    for error in store.recent_errors(connection, dispatch_id)
                ]
        for dispatch_id, what in described.items():
            lines.append(f"{what}: started, not finished yet")
            if dispatch_id not in social:
                continue
            errors += [  # a post that will be tried again: why it did not go out yet
                f"{what}: {post.target} {post.state} (attempt {post.attempts}): "
                f"{_first_line(post.error)}"
                for post in ledger_targets.posts(connection, [dispatch_id])
                if post.state == DeliveryState.DEFERRED and post.error
            ]
    for channel, held in sorted(report.paused.items()):  # due, but `dispatcher pause` holds it
        who = "all sending" if held.channel == ledger_controls.ALL else f"channel {held.channel}"
        lines.append(
            f"{channel}: due but paused ({who} since {held.paused_at:%Y-%m-%d %H:%M} UTC by "
            f"{held.paused_by}); `dispatcher resume` sends it"
        )
    return [" ".join(line.split()) for line in lines] or ["nothing due"], errors


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else "(no reason recorded)"


def _end_with_parent(parent: int) -> None:
    """A helper process ends with the tick that started it (Linux's PR_SET_PDEATHSIG), as
    one killed tick: what either held is taken over once its lease runs out, and no helper
    sends on unattended."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it ended before the line above
        raise SystemExit(EXIT_DELIVERY_FAILED)


_PR_SET_PDEATHSIG = 1


def _add_finished_by_helpers(
    report: pipeline.TickReport, due: list[store.DispatchRow], engine: sa.Engine
) -> None:
    """The dispatches due at the start that a helper process finished, so that the tick
    that started the helpers reports them (and exits 3 for their failed deliveries)."""
    with ledger_engine.reader(engine).connect() as connection:
        for dispatch in due:
            if dispatch.id in report.finished:
                continue
            row = store.dispatch_by_id(connection, dispatch.id)
            if row is None or row.state in store.OPEN_DISPATCH_STATES:
                continue
            report.finished[row.id] = DispatchState(row.state)
            report.counts[row.id] = store.delivery_counts(connection, row.id)
            report.failed_deliveries += report.counts[row.id].get(DeliveryState.FAILED, 0)


def cmd_tick(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    campaign = campaign_of(settings)
    rendering.require_templates(settings.templates_dir, campaign.channels)
    logs.configure(settings.log_format)
    if args.worker is not None:
        _end_with_parent(args.worker)
    engine = open_ledger(settings)
    context = build_context(
        settings,
        campaign,
        engine=engine,
        clock=clock_from(instant(args.at)),
        force=args.force,
    )
    helpers: list[subprocess.Popen[bytes]] = []
    errors: list[str] = []
    try:
        report = pipeline.TickReport()
        due: list[store.DispatchRow] = []
        if args.worker is None:
            try:
                pipeline.make_due_dispatches(context, report)
            except ticks.ClockJumpError as jump:
                raise UserError(f"tick refused: {jump}") from None
            # One process is bound to one core (the GIL); helpers claim their own batches
            # of the email due now (SKIP LOCKED / BEGIN IMMEDIATE keep them apart). A post
            # is one delivery, and a tick with nothing due starts no process.
            due = pipeline.due_dispatches(context)
            if any(dispatch.channel == Channel.EMAIL for dispatch in due):
                argv = [sys.executable, "-m", "dispatcher", "tick", "--at"]
                argv += [context.clock().isoformat(), "--worker", str(os.getpid())]
                helpers = [subprocess.Popen(argv) for _ in range(settings.workers - 1)]
        report = pipeline.tick(context, schedule=False, report=report)
        for helper in helpers:
            helper.wait()
        _add_finished_by_helpers(report, due, engine)
        lines, errors = _report_lines(report, engine)
    finally:
        for helper in helpers:
            helper.wait()
        context.email_channel.close()
        engine.dispose()
    if any(helper.returncode not in (EXIT_OK, EXIT_DELIVERY_FAILED) for helper in helpers):
        print("error: a helper worker process failed (see its log)", file=sys.stderr)
        return EXIT_DELIVERY_FAILED
    if any(helper.returncode == EXIT_DELIVERY_FAILED for helper in helpers):
        report.failed_deliveries = max(report.failed_deliveries, 1)  # its stderr says which
    if args.worker is None:  # what a helper finished, the tick that started it reports
        for line in lines:
            print(line)
        for line in errors:
            print(printable(f"error: {line}"), file=sys.stderr)
    for error in report.channel_errors:
        print(f"error: channel {error} (deliveries stay queued)", file=sys.stderr)
    failed = report.failed_deliveries or report.channel_errors
    return EXIT_DELIVERY_FAILED if failed else EXIT_OK


def _service_start(args: argparse.Namespace) -> tuple[Settings, Campaign]:
    """What `run` and `web` check before serving: production refuses dev defaults."""
    settings = settings_of(args)
    campaign = campaign_of(settings)
    rendering.require_templates(settings.templates_dir, campaign.channels)
    problems = wiring.production_problems(settings, campaign.channels)
    if problems:
        raise UserError("\n".join(problems))
    try:  # a mistyped alert destination: refused at start, not a traceback in the service
        alert_destinations.destinations_for(settings)
    except ValueError as error:
        raise UserError(str(error)) from None
    logs.configure(settings.log_format)
    return settings, campaign


def _confirm_clock(settings: Settings, campaign: Campaign, args: argparse.Namespace) -> None:
    """`run --force` records the start as the last tick (the operator vouches for the
    clock); `run --at` is refused up front like `tick`, since a rehearsal clock far
    ahead of the ledger is a mistake, not an outage."""
    if not (args.force or args.at):
        return  # the real clock: the service logs `clock_jump` and waits for confirmation
    engine = open_ledger(settings)
    try:
        with engine.begin() as connection:
            limit = dt.timedelta(hours=settings.clock_jump_hours)
            ticks.guard(connection, campaign.id, instant(args.at), limit, force=args.force)
    except ticks.ClockJumpError as error:
        raise UserError(f"run refused: {error}") from None
    finally:
        engine.dispose()


def cmd_run(args: argparse.Namespace) -> int:
    # The web tier (Starlette, uvicorn, the desk) is imported by the two commands that serve
    # it, so `tick` and its helper processes start without it: the first message leaves
    # 0.45-0.7 s sooner on the bench (docs/performance.md, "First message").
    from dispatcher.web.server import serve_beside

    settings, campaign = _service_start(args)
    _confirm_clock(settings, campaign, args)
    clock = SimulatedClock(instant(args.at)) if args.at else utc_now
    service = Service(settings, campaign, clock=clock)
    try:
        service.run_forever(serve=serve_beside)
    except SqliteInUseError as error:
        service.engine.dispose()
        raise UserError(str(error)) from None
    return EXIT_OK


def cmd_web(args: argparse.Namespace) -> int:
    """The HTTP endpoints alone, for a separate web tier on the same database."""
    from dispatcher.web.app import create_app  # see cmd_run
    from dispatcher.web.server import serve_forever
    from dispatcher.web.state import WebState

    settings, campaign = _service_start(args)
    # No scheduler here: the file is checked when a page asks (at most every 2 s), with the
    # same rule as `run` — an invalid edit leaves the last good version in force.
    source = CampaignSource(
        settings.campaign_file, campaign, on_rejected=metrics.count_reload_error
    )
    state = WebState(
        settings=settings,
        engine=open_ledger(settings),
        campaign=source.current,
        email_channel=lambda: wiring.email_channel(settings),
        reload_errors=lambda: source.rejected,
        campaign_problems=source.current_problems,
        campaign_changed=source.check,
    )
    serve_forever(create_app(state), settings.http_host, settings.http_port)
    return EXIT_OK


def status_rows(settings: Settings, campaign: Campaign, now: dt.datetime) -> dict[str, Any]:
    engine = open_ledger(settings)
    try:
        with ledger_engine.reader(engine).connect() as connection:
            return status_of(connection, campaign, settings, now)
    finally:
        engine.dispose()


def _cancel_lines(row: dict[str, Any]) -> list[str]:
    off = row["cancelled"]
    if off is None:
        return []
    at = dt.datetime.fromisoformat(off["at"])
    why = f": {off['reason']}" if off["reason"] else ""
    lines = [f"      cancelled {at:%Y-%m-%d %H:%M:%S} UTC by {off['by']}{why}"]
    unsent = row["counts"].get(DeliveryState.CANCELLED, 0)
    if off["resent_at"] is not None:
        resent = dt.datetime.fromisoformat(off["resent_at"])
        lines.append(
            f"      unsent rest resent {resent:%Y-%m-%d %H:%M:%S} UTC by {off['resent_by']}"
        )
    elif row["state"] == DispatchState.CANCELLED and unsent:
        lines.append(
            f"      {unsent} not sent; `dispatcher resend {row['id']} --only-unsent` sends them"
        )
    return lines


def format_status(status: dict[str, Any]) -> str:
    head = f"{'id':>4}  {'day':<10}  {'channel':<9} {'item':<26} {'state':<9}"
    widths = {s: max(8, len(s)) for s in DELIVERY_COLUMNS}  # "cancelled" is nine letters
    lines = [head + "".join(f" {s:>{widths[s]}}" for s in DELIVERY_COLUMNS)]
    for row in status["dispatches"]:
        counts = "".join(f" {row['counts'].get(s, 0):>{widths[s]}}" for s in DELIVERY_COLUMNS)
        lines.append(
            f"{row['id']:>4}  {row['day']:<10}  {row['channel']:<9} {row['item']:<26} "
            f"{row['state']:<9}{counts}"
        )
        lines += _cancel_lines(row)
        if "posts" in row:
            for post in row["posts"]:
                attempts = f"{post['attempts']} attempt{'' if post['attempts'] == 1 else 's'}"
                facts = [post["state"], attempts]
                facts += [f"id {post['provider_id']}"] if post["provider_id"] else []
                facts += [post["link"] or post["error"] or ""]
                lines.append(f"      {post['target']}: {', '.join(f for f in facts if f)}")
        else:
            lines += [f"      error: {error}" for error in row["errors"]]
    if not status["dispatches"]:
        lines.append("(no dispatches yet)")
    lines += [f"warning: {problem}" for problem in status["stranded"]]
    lines += [
        f"unavailable: {channel} since {o['since']} (refused {o['refused_tries']} times, "
        f"deliveries stay queued), next try {o['next_try']}: {o['error']}"
        for channel, o in status["outages"].items()
    ]
    lines += [
        f"paused: {'all sending' if channel == 'all' else channel} since "
        f"{dt.datetime.fromisoformat(p['since']):%Y-%m-%d %H:%M:%S} UTC by {p['by']} "
        f"(nothing is claimed, deliveries keep their place; "
        f"`dispatcher resume{'' if channel == 'all' else ' ' + channel}`)"
        for channel, p in status["paused"].items()
    ]
    lines.append(
        "next send: " + ", ".join(f"{c} {t or '—'}" for c, t in status["next_send"].items())
    )
    lines.append(
        "subscribers: "
        + (", ".join(f"{s} {n}" for s, n in sorted(status["subscribers"].items())) or "none")
    )
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    campaign = campaign_of(settings)
    status = status_rows(settings, campaign, instant(args.at))
    # Item ids are slugs, but error texts come from remote servers: no terminal escapes.
    print(
        json.dumps(status, indent=2, ensure_ascii=False)
        if args.json
        else printable(format_status(status))
    )
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    campaign = campaign_of(settings)
    if args.target is not None:
        return _retry_to_target(settings, campaign, args)
    if args.source is not None:
        raise UserError("--from names the old target of `retry --target NEW --from OLD`")
    engine = open_ledger(settings)
    try:
        with engine.begin() as connection:
            if (
                args.dispatch is not None
                and store.dispatch_by_id(connection, args.dispatch) is None
            ):
                raise UserError(
                    f"no dispatch with id {args.dispatch}; `dispatcher status` lists them"
                )
            count = store.requeue(
                connection,
                campaign_id=campaign.id,
                dispatch_id=args.dispatch,
                force=args.force,
                now=dt.datetime.now(dt.UTC),
            )
            # Ops retry after fixing the cause (a renewed token, a relay back up): the
            # channel's backoff must not make them wait for its next try.
            dispatch = (
                None if args.dispatch is None else store.dispatch_by_id(connection, args.dispatch)
            )
            ended = [
                channel
                for channel in sorted(outages.outages(connection))
                if (dispatch is None or dispatch.channel == channel)
                and outages.end_outage(connection, channel)
            ]
    finally:
        engine.dispose()
    what = "failed and unknown" if args.force else "failed"
    print(f"re-queued {count} {what} deliveries; the next tick sends them")
    for channel in ended:
        print(f"channel {channel}: its outage backoff is lifted; the next tick tries it")
    return EXIT_OK


def _retry_to_target(settings: Settings, campaign: Campaign, args: argparse.Namespace) -> int:
    """Move deliveries of a target that is configured no more (or of `--from OLD`) to the
    configured target NEW: the same rows, so the same idempotency keys (docs/operations.md)."""
    configured = {
        channel: found
        for channel, found in delivery_targets.configured(settings).items()
        if channel in campaign.channels
    }
    channel = next(
        (c for c, found in configured.items() if any(t.recipient == args.target for t in found)),
        None,
    )
    if channel is None:
        names = [t.recipient for found in configured.values() for t in found]
        raise UserError(
            f"--target {args.target} is not a configured target; configured: "
            f"{', '.join(names) or 'none'} (`dispatcher status` lists them per post)"
        )
    current = [t.recipient for t in configured[channel]]
    now = dt.datetime.now(dt.UTC)
    engine = open_ledger(settings)
    try:
        with engine.begin() as connection:
            if args.source is not None:
                sources = [args.source]
            else:
                stranded = ledger_targets.stranded(connection, campaign.id, {channel: current})
                sources = sorted({row.target for row in stranded})
                if len(sources) > 1:
                    raise UserError(
                        f"{len(sources)} {channel} targets are not configured any more: "
                        f"{', '.join(sources)}; say which to move with --from OLD"
                    )
            states = [DeliveryState.FAILED, DeliveryState.PENDING, DeliveryState.DEFERRED]
            moved = ledger_targets.move(
                connection,
                campaign_id=campaign.id,
                channel=channel,
                sources=sources,
                target=args.target,
                states=states + ([DeliveryState.UNKNOWN] if args.force else []),
                dispatch_id=args.dispatch,
                now=now,
            )
            others = [name for name in current if name not in sources]
            left = [
                row
                for row in ledger_targets.stranded(connection, campaign.id, {channel: others})
                if row.target in sources
                and row.state == DeliveryState.UNKNOWN
                and args.dispatch in (None, row.dispatch_id)
            ]
    finally:
        engine.dispose()
    source = ", ".join(sources) or "(none)"
    for entry in moved:
        what = f"dispatch {entry.dispatch_id} {entry.day} {channel} {entry.item_id}"
        what += f", its {entry.lang} post" if entry.lang else ""  # a further language's
        if entry.moved:
            print(f"moved {what} ({entry.state}) from {source} to {args.target}")
        else:
            print(f"kept {what} ({entry.state}): it already has a delivery for {args.target}")
    for row in left:
        print(
            f"left dispatch {row.dispatch_id} {row.day} {channel} {row.item_id} (unknown: it may "
            f"have been posted to {row.target}); check there, then add --force to move it"
        )
    count = sum(1 for entry in moved if entry.moved)
    print(
        f"moved {count} deliveries to {args.target}; the next tick sends them with their "
        "idempotency keys"
    )
    return EXIT_OK


def cmd_reopen(args: argparse.Namespace) -> int:
    """A missed dispatch back to `planned`, with the item as the file has it now and a send
    time of now: the next tick (or the running service's next poll) sends it."""
    settings = settings_of(args)
    campaign = campaign_of(settings)
    try:
        day = dt.date.fromisoformat(args.day)
    except ValueError:
        raise UserError(
            f'"{args.day}" is not a day; write it as YYYY-MM-DD, e.g. 2019-04-03'
        ) from None
    now = instant(args.at).astimezone(dt.UTC)
    engine = open_ledger(settings)
    reopened: list[str] = []
    try:
        with engine.begin() as connection:
            try:
                missed = ticks.missed_on(connection, campaign.id, day, args.channel)
            except ticks.ReopenError as error:
                raise UserError(f"reopen refused: {error}") from None
            for dispatch in missed:
                try:
                    content = item_to_json(campaign.item(dispatch.item_id))
                    note = ""
                except KeyError:
                    # Removed from the file since: send what was planned for the day.
                    content, note = dispatch.content, " (item no longer in the file: as recorded)"
                digest = hashlib.sha256(content.encode()).hexdigest()
                if ticks.reopen(
                    connection, dispatch, content=content, content_hash=digest, now=now
                ):
                    reopened.append(
                        f"re-opened dispatch {dispatch.id} {dispatch.day} {dispatch.channel} "
                        f"{dispatch.item_id}: planned, send at {now:%Y-%m-%d %H:%M} UTC{note}"
                    )
    finally:
        engine.dispose()
    for line in reopened:
        print(line)
    print("the next tick sends it" if len(reopened) == 1 else "the next tick sends them")
    return EXIT_OK


def cmd_db(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    open_ledger(settings).dispose()
    print(f"database {ledger_engine.redacted(settings.database_url)} is up to date")
    return EXIT_OK


#: (address, name, language): the sample week is in German and English, so its readers are
#: too; None is the campaign's default language, as for a reader who never chose one.
DEMO_SUBSCRIBERS: tuple[tuple[str, str | None, str | None], ...] = (
    ("erika.mustermann@example.org", "Erika Mustermann", None),
    ("max.mueller@example.org", "Max Müller", "de"),
    ("jana.schaefer@example.de", "Jana Schäfer", None),
    ("emma.walsh@example.ie", "Emma Walsh", "en"),
    ("reader@example.net", None, "en"),
)


PROGRESS_MIN_TOTAL = 100  #: smaller sends finish too fast for a bar to help


def _progress_bar(done: int, total: int) -> None:
    if total < PROGRESS_MIN_TOTAL or not sys.stdout.isatty():
        return
    width = 30
    filled = width * done // total
    end = "\n" if done >= total else ""
    sys.stdout.write(f"\r    [{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}")
    sys.stdout.flush()


def cmd_demo(args: argparse.Namespace) -> int:
    """Replay the bundled week in simulated time through the same job as `run`."""
    base = Path(args.dir)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    overrides = {
        "database_url": f"sqlite:///{base / 'dispatcher.sqlite3'}",
        "outbox_dir": base / "outbox",
        "smtp_url": None,
        # The replay jumps from one send time to the next, over the weekend too: by
        # design, so no tick of it is a clock jump to confirm.
        "clock_jump_hours": 24 * 7,
    }
    settings = settings_of(args, **overrides)
    campaign = campaign_of(settings)
    start = dt.datetime.combine(campaign.start, dt.time(0), tzinfo=campaign.zone).astimezone(dt.UTC)
    clock = SimulatedClock(start)
    print(
        f"demo: {campaign.name}, ledger {base / 'dispatcher.sqlite3'}, outbox {base / 'outbox'}\n"
    )
    service = Service(settings, campaign, clock=clock, progress=_progress_bar)
    with ledger_engine.reader(service.engine).connect() as connection:
        print(format_plan(campaign, schedule.ledger_plan(connection, campaign, start)) + "\n")
    with service.engine.begin() as connection:
        for address, name, lang in DEMO_SUBSCRIBERS[: args.subscribers] + tuple(
            (f"leser{i:05d}@example.org", None, None) for i in range(max(args.subscribers - 5, 0))
        ):
            subscriber_store.add(
                connection,
                address,
                name,
                state=SubscriberState.ACTIVE,
                source="demo",
                now=start,
                lang=lang,
            )
    service.check_leader()  # the demo's one process schedules, as `run` would
    for at in service.send_times():
        clock.set(at)
        report = service.on_time()
        lines = (
            _report_lines(report, service.engine)[0] if report else ["tick failed (see the log)"]
        )
        for line in lines if lines != ["nothing due"] else []:
            print(f"{at.astimezone(campaign.zone):%a %d.%m. %H:%M}  {line}")
    print()
    print(format_status(status_rows(settings, campaign, clock())))
    service.leadership.release()
    written = len(list((base / "outbox").rglob("*.eml")))
    posts = len(list((base / "outbox").rglob("*.json")))
    print(
        f"\n{written} emails in {base / 'outbox'} (open them with any mail client) and "
        f"{posts} post requests in {base / 'outbox'}/<channel>/ (as they would be sent)"
    )
    service.engine.dispose()
    return EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tick = commands.add_parser("tick", help="do everything due at that instant, then return")
    tick.add_argument("--at", help="ISO-8601 instant (default now)")
    #: a helper of the tick with this process id (see `cmd_tick`)
    tick.add_argument("--worker", type=int, metavar="PARENT_PID", help=argparse.SUPPRESS)
    tick.add_argument("--force", action="store_true", help=FORCE_HELP)
    tick.set_defaults(handler=cmd_tick)
    run = commands.add_parser("run", help="the long-running service")
    run.add_argument("--at", help="rehearsal: start the service clock at this ISO-8601 instant")
    run.add_argument("--force", action="store_true", help=FORCE_HELP)
    run.set_defaults(handler=cmd_run)
    reopen = commands.add_parser("reopen", help="send a missed day after all (next tick)")
    reopen.add_argument("day", metavar="DAY", help="the missed day, YYYY-MM-DD")
    reopen.add_argument("--channel", choices=[str(c) for c in Channel], help="only this channel")
    reopen.add_argument("--at", help="send time (ISO-8601; default now), for rehearsals")
    reopen.set_defaults(handler=cmd_reopen)
    web = commands.add_parser("web", help="the HTTP endpoints alone (a separate web tier)")
    web.set_defaults(handler=cmd_web)
    status = commands.add_parser("status", help="dispatches, delivery counts, next sends")
    status.add_argument("--json", action="store_true")
    status.add_argument("--at", help=argparse.SUPPRESS)
    status.set_defaults(handler=cmd_status)
    retry = commands.add_parser("retry", help="re-queue failed deliveries")
    retry.add_argument("--dispatch", type=int, help="only this dispatch id")
    retry.add_argument("--force", action="store_true", help="also unknown outcomes (may repeat)")
    retry.add_argument(
        "--target",
        metavar="NEW",
        help="move failed (--force: and unknown) posts of a target configured no more to NEW",
    )
    retry.add_argument(
        "--from", dest="source", metavar="OLD", help="with --target: the old target's name"
    )
    retry.set_defaults(handler=cmd_retry)
    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"])
    db.set_defaults(handler=cmd_db)
    demo = commands.add_parser("demo", help="replay the bundled week on the embedded defaults")
    demo.add_argument("--dir", default="var/demo", help="fresh SQLite and outbox go here")
    demo.add_argument("--subscribers", type=int, default=5, help="sample subscribers (default 5)")
    demo.set_defaults(handler=cmd_demo)
