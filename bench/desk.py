"""How fast the editors' desk answers with a season's worth of ledger (issue 15, item 7).

Started by `bench/run desk` (see bench/README.md, "The desk's page loads"). For each database
(SQLite file, PostgreSQL schema on DISPATCHER_BENCH_DATABASE_URL) it builds a fresh migrated
ledger with a 40-send-day campaign (the sample's items, repeated, email and Mastodon),
100,000 active subscribers, and the first 30 days dispatched: every email day with one
delivery per subscriber (sent; the running 31st day with a fifth still pending) — 3.1 million
delivery rows. Then it serves the real app (`create_app`, uvicorn in a thread, as `dispatcher
web` does) with a signed-in editor and times GET /desk/ (the calendar), GET /desk/items/{id}
(the running day's item), and GET /desk/plan.ics?token=… (the feed) over one keep-alive
connection: `--requests` times each, after one untimed warm-up request (reported as "first").

Prints a Markdown table: median, p90 and max per page, and whether the goal (median and p90
under 200 ms) is met. Exit 0 when the run completed (goals are reported, never an exit status),
1 on an error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench import DEFAULT_PG_URL, BenchError, fresh_database, seed_subscribers  # noqa: E402
from dispatcher.campaign.calendar import local_send_time, send_days  # noqa: E402
from dispatcher.campaign.loading import load_campaign  # noqa: E402
from dispatcher.campaign.model import Campaign, Channel, item_to_json  # noqa: E402
from dispatcher.campaign.planning import plan  # noqa: E402
from dispatcher.ledger import editors  # noqa: E402
from dispatcher.ledger import engine as ledger_engine  # noqa: E402
from dispatcher.ledger.tables import dispatches  # noqa: E402
from dispatcher.settings import Settings  # noqa: E402
from dispatcher.web.state import WebState  # noqa: E402
from tests.support.campaigns import campaign_copy  # noqa: E402
from tests.support.desk_editor import session_headers  # noqa: E402
from tests.support.webapp import ManualClock, running_app  # noqa: E402

GOAL_MS = 200.0  #: issue 15: page loads under 200 ms
SEND_DAYS = 40
DONE_DAYS = 30  #: days dispatched before the running one
SEED_AT = dt.datetime(2019, 3, 1, tzinfo=dt.UTC)


def log(message: str) -> None:
    print(f"[desk-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def forty_day_campaign(directory: Path) -> tuple[Path, Campaign]:
    """The sample campaign (email + Mastodon) stretched to 40 send days: its items repeated
    without fixed dates, so the planner lays one per send day."""
    path = campaign_copy(directory, channels=("email", "mastodon"))
    base = load_campaign(path)
    items = tuple(
        dataclasses.replace(
            base.items[i % len(base.items)],
            id=f"{base.items[i % len(base.items)].id}-{i}",
            date=None,
        )
        for i in range(SEND_DAYS + 5)
    )
    long = dataclasses.replace(base, end=dt.date(2019, 7, 31), items=items)
    days = send_days(long)[:SEND_DAYS]
    if len(days) < SEND_DAYS:
        raise BenchError(f"only {len(days)} send days until {long.end}")
    return path, dataclasses.replace(long, end=days[-1])


def seed_dispatches(url: str, campaign: Campaign, subscribers: int) -> tuple[dt.date, str]:
    """30 days done and the 31st running, as `dispatcher run` would have left them; returns
    the running day and its item id. Deliveries go in with one INSERT … SELECT per day."""
    days = send_days(campaign)
    running = days[DONE_DAYS]
    planned = {
        row.day: row.item_id for row in plan(campaign, now=SEED_AT).rows if row.day and row.item_id
    }
    engine = ledger_engine.create_engine(url)
    postgres = engine.dialect.name == "postgresql"
    stamp = "CAST(:t AS timestamptz)" if postgres else ":t"
    when = "2019-04-01 06:00:00" + ("+00" if postgres else ".000000")
    try:
        for day in days[: DONE_DAYS + 1]:
            with engine.begin() as connection:
                for channel in (Channel.EMAIL, Channel.MASTODON):
                    at = local_send_time(day, campaign.send[channel], campaign.zone)
                    state = "running" if day == running and channel is Channel.EMAIL else "done"
                    item = campaign.item(planned[day])
                    inserted = connection.execute(
                        dispatches.insert().values(
                            campaign_id=campaign.id,
                            day=day,
                            channel=channel.value,
                            item_id=item.id,
                            content_hash="bench",
                            content=item_to_json(item),
                            state=state,
                            send_at=at.astimezone(dt.UTC),
                            fanout_cursor=subscribers,
                            fanout_done=True,
                            created_at=at.astimezone(dt.UTC),
                        )
                    )
                    dispatch_id = inserted.inserted_primary_key[0]  # type: ignore[index]
                    if channel is Channel.EMAIL:
                        pending = "pending" if state == "running" else "sent"
                        connection.execute(
                            sa.text(
                                "INSERT INTO deliveries (dispatch_id, recipient, subscriber_id, "
                                "key, state, attempts, created_at, updated_at, sent_at) "
                                f"SELECT :d, 'subscriber:' || id, id, 'k' || id || '-' || :d, "
                                f"CASE WHEN id % 5 = 0 THEN :p ELSE 'sent' END, 1, {stamp}, "
                                f"{stamp}, {stamp} FROM subscribers"
                            ),
                            {"d": dispatch_id, "p": pending, "t": when},
                        )
                    else:
                        connection.execute(
                            sa.text(
                                "INSERT INTO deliveries (dispatch_id, recipient, key, state, "
                                f"attempts, created_at, updated_at, sent_at) VALUES (:d, "
                                f"'target:mastodon', 'm-' || :d, 'sent', 1, {stamp}, {stamp}, "
                                f"{stamp})"
                            ),
                            {"d": dispatch_id, "t": when},
                        )
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    return running, planned[running]


@dataclasses.dataclass
class Timing:
    page: str
    first_ms: float
    times_ms: list[float]
    size: int

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p90(self) -> float:
        ordered = sorted(self.times_ms)
        return ordered[max(0, round(0.9 * len(ordered)) - 1)]


def time_page(
    session: requests.Session, url: str, page: str, count: int, must_contain: str
) -> Timing:
    started = time.perf_counter()
    first = session.get(url, timeout=60)
    first_ms = (time.perf_counter() - started) * 1000
    if first.status_code != 200 or must_contain not in first.text:
        raise BenchError(f"{page}: HTTP {first.status_code}, {first.text[:300]!r}")
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = session.get(url, timeout=60)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise BenchError(f"{page}: HTTP {answer.status_code}")
    return Timing(page, first_ms, times, len(first.content))


@contextlib.contextmanager
def desk_app(
    url: str, campaign_file: Path, campaign: Campaign, now: dt.datetime
) -> Iterator[tuple[str, WebState]]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        campaign_file=campaign_file,
        templates_dir=ROOT / "templates",
        public_url="https://news.example.org",
        secret_key=SecretStr("bench-secret-key-0123456789-abcdefghijkl"),
    )
    engine = ledger_engine.create_engine(url)
    state = WebState(
        settings=settings,
        engine=engine,
        campaign=lambda: campaign,
        email_channel=lambda: None,  # type: ignore[arg-type,return-value]  # no mail is sent
        clock=ManualClock(now),
    )
    try:
        with running_app(state) as base:
            yield base, state
    finally:
        engine.dispose()


def run_case(kind: str, workdir: Path, pg_url: str, subscribers: int, count: int) -> list[Timing]:
    campaign_file, campaign = forty_day_campaign(workdir / kind)
    with fresh_database(kind, workdir, pg_url) as url:
        log(f"{kind}: {subscribers:,} subscribers")
        seed_subscribers(url, subscribers)
        log(f"{kind}: {DONE_DAYS + 1} days of dispatches and deliveries")
        started = time.monotonic()
        running, item_id = seed_dispatches(url, campaign, subscribers)
        log(f"{kind}: ledger ready in {time.monotonic() - started:.0f} s")
        now = dt.datetime.combine(running, dt.time(10, 0), tzinfo=campaign.zone)
        with desk_app(url, campaign_file, campaign, now) as (base, state):
            session = requests.Session()
            session.headers.update(session_headers(state))
            with state.engine.begin() as connection:
                editor = editors.active(connection, "rita.redaktion@example.org")
                assert editor is not None
                token = editors.create_feed_token(connection, editor.id, now=state.clock())
            return [
                time_page(session, f"{base}/desk/", "GET /desk/ (calendar)", count, "Kalender"),
                time_page(
                    session,
                    f"{base}/desk/items/{item_id}",
                    "GET /desk/items/{id}",
                    count,
                    campaign.item(item_id).title[:20],
                ),
                time_page(
                    session,
                    f"{base}/desk/plan.ics?token={token}",
                    "GET /desk/plan.ics",
                    count,
                    "BEGIN:VCALENDAR",
                ),
            ]


def report(results: dict[str, list[Timing]], subscribers: int, count: int) -> str:
    lines = [
        f"## Desk page loads: {SEND_DAYS} send days, {subscribers:,} subscribers, "
        f"{DONE_DAYS} days sent + 1 running ({(DONE_DAYS + 1) * subscribers:,} email deliveries)",
        "",
        f"{count} requests per page over one keep-alive connection, after one untimed first "
        "request.",
        "",
        "| database | page | first ms | median ms | p90 ms | max ms | bytes |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    met = True
    for kind, timings in results.items():
        for t in timings:
            met = met and t.median < GOAL_MS and t.p90 < GOAL_MS
            lines.append(
                f"| {kind} | {t.page} | {t.first_ms:.0f} | {t.median:.0f} | {t.p90:.0f} | "
                f"{max(t.times_ms):.0f} | {t.size:,} |"
            )
    lines += [
        "",
        f"Goal (median and p90 under {GOAL_MS:.0f} ms on every page): "
        f"{'met' if met else 'NOT met'}",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}; load average at the end "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min: other processes "
        "share the CPUs)",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/run desk", description=__doc__)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    pg_url = os.environ.get("DISPATCHER_BENCH_DATABASE_URL", DEFAULT_PG_URL)
    results: dict[str, list[Timing]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="desk-bench-") as temp:
            for kind in args.databases.split(","):
                (Path(temp) / kind).mkdir()
                results[kind] = run_case(kind, Path(temp), pg_url, args.subscribers, args.requests)
    except BenchError as error:
        print(f"desk bench: {error}", file=sys.stderr)
        return 1
    text = report(results, args.subscribers, args.requests)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
