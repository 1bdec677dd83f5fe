"""Fan out one email dispatch through the dispatcher's own code path, and nothing else.

Run by `bench/run` as a subprocess (so its peak RSS is its own), with the same
environment as `dispatcher tick`: it creates the dispatch that is due at `--at`
(`pipeline.make_due_dispatches`), then times `pipeline.fan_out` for it and prints
one JSON line: {"dispatch", "deliveries", "fanout_seconds", "maxrss_kb_before",
"maxrss_kb_after"}. No message is rendered or sent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from dispatcher.cli.common import campaign_of, instant, settings_of
from dispatcher.clock import clock_from
from dispatcher.delivery import pipeline
from dispatcher.delivery.context import build_context, open_ledger
from dispatcher.ledger.tables import deliveries


def peak_rss_kb() -> int:
    """VmHWM of this process (getrusage's ru_maxrss would include the parent's RSS at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--at", required=True, help="ISO-8601 instant on a campaign day")
    args = parser.parse_args()
    settings = settings_of(argparse.Namespace())
    campaign = campaign_of(settings)
    engine = open_ledger(settings)
    context = build_context(settings, campaign, engine=engine, clock=clock_from(instant(args.at)))
    try:
        report = pipeline.TickReport()
        pipeline.make_due_dispatches(context, report)
        emails = [d for d in report.created if d.channel == "email"]
        if not emails:
            print(json.dumps({"error": f"no email dispatch due at {args.at}"}))
            return 1
        dispatch = emails[0]
        before = peak_rss_kb()
        started = time.perf_counter()
        pipeline.fan_out(context, dispatch)
        seconds = time.perf_counter() - started
        after = peak_rss_kb()
        with engine.connect() as connection:
            count = connection.execute(
                sa.select(sa.func.count()).where(deliveries.c.dispatch_id == dispatch.id)
            ).scalar_one()
    finally:
        context.email_channel.close()
        engine.dispose()
    print(
        json.dumps(
            {
                "dispatch": dispatch.id,
                "deliveries": count,
                "fanout_seconds": round(seconds, 3),
                "maxrss_kb_before": before,
                "maxrss_kb_after": after,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
