"""What 50 concurrent /metrics scrapers cost the sending (issue 11: 100/s fell to 5/s).

    .venv/bin/python bench/metrics_scrapers.py [--history 1000000] [--subscribers 2000]

A fresh PostgreSQL schema (DISPATCHER_BENCH_DATABASE_URL, default the local test server)
gets `--history` past deliveries (what /metrics counts) and `--subscribers` active
subscribers. Then `dispatcher run` sends the week's first newsletter to them at
DISPATCHER_SEND_RATE=100 into an aiosmtpd sink, three times:

* quiet — nobody scrapes;
* 50 scrapers, cached — 50 threads GET /metrics, each once per `--interval` seconds
  (default 1: 50 scrapes a second; Prometheus scrapes every 15-60 s), with
  DISPATCHER_METRICS_CACHE_SECONDS=5;
* 50 scrapers, uncached — the same with the cache off (=0): what every scrape used to cost.

It prints, per case, the send time of all messages, the rate, the cost relative to quiet,
the scrapes answered, and the ledger readings the scrapes caused.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402

import bench as benchlib  # noqa: E402
from dispatcher.ledger import engine as ledger_engine  # noqa: E402
from tests.support.campaigns import campaign_copy  # noqa: E402
from tests.support.smtpd import SmtpServer  # noqa: E402

AT = "2019-04-02T07:59:52+02:00"  #: 8 s before the first email of the sample week
SCRAPERS = 50


@dataclass(frozen=True)
class Result:
    case: str
    sent: int
    seconds: float | None  #: from the first to the last message received
    scrapes: int  #: answered with 200
    errors: int


def seed_history(url: str, deliveries: int, per_dispatch: int) -> float:
    """`deliveries` sent deliveries in past dispatches of another campaign; returns seconds."""
    started = time.monotonic()
    engine = sa.create_engine(url)  # the ledger engine's statement timeout is for the service
    dispatches = max(1, deliveries // per_dispatch)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO dispatches (campaign_id, day, channel, item_id, content_hash, "
                    "content, state, send_at, created_at) SELECT 'history', "
                    "DATE '2015-01-01' + g, 'email', 'item', 'x', '{}', 'done', "
                    "TIMESTAMPTZ '2015-01-01 06:00+00' + g * INTERVAL '1 day', now() "
                    "FROM generate_series(0, :n - 1) AS g"
                ),
                {"n": dispatches},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO deliveries (dispatch_id, recipient, subscriber_id, key, state, "
                    "attempts, created_at, updated_at, sent_at) "
                    "SELECT d.id, 'subscriber:' || s.id, s.id, 'k' || d.id || '.' || s.id, "
                    "'sent', 1, now(), now(), now() FROM dispatches d "
                    "CROSS JOIN (SELECT id FROM subscribers ORDER BY id LIMIT :per) s "
                    "WHERE d.campaign_id = 'history'"
                ),
                {"per": per_dispatch},
            )
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    return time.monotonic() - started


def scrape_loop(
    url: str, interval: float, stop: threading.Event, counts: list[int], errors: list[str]
) -> None:
    with requests.Session() as session:
        while not stop.wait(interval * random.uniform(0.5, 1.5)):
            try:
                response = session.get(url, timeout=30)
                if response.status_code == 200:
                    counts.append(1)
                else:
                    errors.append(str(response.status_code))
            except requests.RequestException as error:
                errors.append(type(error).__name__)


def run_case(
    name: str,
    url: str,
    workdir: Path,
    subscribers: int,
    scrapers: int,
    cache: str,
    interval: float,
) -> Result:
    with SmtpServer() as smtp:
        env = benchlib.dispatcher_env(
            url,
            workdir,
            campaign_copy(workdir),
            None,
            {
                "DISPATCHER_SMTP_URL": smtp.url,
                "DISPATCHER_SEND_RATE": "100",
                "DISPATCHER_HTTP_PORT": "0",
                "DISPATCHER_METRICS_CACHE_SECONDS": cache,
            },
        )
        service = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "run", "--at", AT],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        port = None
        assert service.stdout is not None
        for line in service.stdout:
            if '"http_started"' in line:
                port = json.loads(line)["message"].rsplit(":", 1)[1]
                break
        drain = threading.Thread(target=lambda: [None for _ in service.stdout or []], daemon=True)
        drain.start()
        # The scrapers run in their own process: in this one their threads would take the
        # GIL from the SMTP sink and slow what is measured.
        scraping = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--scrape",
                f"http://127.0.0.1:{port}/metrics",
                str(scrapers),
                str(interval),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 600
        first = last = None
        while time.monotonic() < deadline:
            received = len(smtp.received)
            if received and first is None:
                first = time.monotonic()
            if received >= subscribers:
                last = time.monotonic()
                break
            time.sleep(0.05)
        scraping.send_signal(signal.SIGTERM)
        out, _ = scraping.communicate(timeout=60)
        scrapes, errors = json.loads(out.strip().splitlines()[-1])
        service.terminate()
        service.wait(60)
    seconds = None if first is None or last is None else last - first
    return Result(name, len(smtp.received), seconds, scrapes, errors)


def scrape(url: str, scrapers: int, interval: float) -> None:
    """`--scrape` mode: `scrapers` threads until SIGTERM, then `[answered, errors]` as JSON."""
    stop = threading.Event()
    counts: list[int] = []
    errors: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [
        threading.Thread(target=scrape_loop, args=(url, interval, stop, counts, errors))
        for _ in range(scrapers)
    ]
    for thread in threads:
        thread.start()
    while not stop.wait(0.2):
        pass
    for thread in threads:
        thread.join(35)
    print(json.dumps([len(counts), len(errors)]), flush=True)


def main() -> int:
    if sys.argv[1:2] == ["--scrape"]:
        scrape(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between scrapes")
    args = parser.parse_args()
    pg = os.environ.get(
        "DISPATCHER_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    with benchlib.fresh_database("postgresql", workdir, pg) as url:
        benchlib.seed_subscribers(url, args.subscribers)
        seeded = seed_history(url, args.history, args.subscribers)
        print(f"seeded {args.history:,} past deliveries in {seeded:.1f} s", file=sys.stderr)
        cases = [
            ("quiet", 0, "5"),
            (f"{SCRAPERS} scrapers, cached (5 s)", SCRAPERS, "5"),
            (f"{SCRAPERS} scrapers, uncached", SCRAPERS, "0"),
        ]
        results: list[Result] = []
        for _ in range(args.reps):
            for name, scrapers, cache in cases:
                print(f"case: {name}", file=sys.stderr)
                results.append(
                    run_case(name, url, workdir, args.subscribers, scrapers, cache, args.interval)
                )
                # Each case sends the same newsletter: start the next from an empty ledger again.
                engine = ledger_engine.create_engine(url)
                with engine.begin() as connection:
                    connection.exec_driver_sql(
                        "DELETE FROM dispatches WHERE campaign_id <> 'history'"
                    )
                engine.dispose()
    quiet = statistics.median([r.seconds for r in results if r.case == "quiet" and r.seconds])
    print("| case | sent | send time (s) | msgs/s | cost vs quiet | scrapes answered |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if r.seconds is None:
            print(f"| {r.case} | {r.sent} | did not finish | | | {r.scrapes} |")
            continue
        rate = (r.sent - 1) / r.seconds
        cost = (r.seconds / quiet - 1) * 100
        print(
            f"| {r.case} | {r.sent} | {r.seconds:.1f} | {rate:.1f} | {cost:+.1f} % | "
            f"{r.scrapes} ({r.errors} errors) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
