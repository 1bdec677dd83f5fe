"""What `dispatcher status --json` prints and `GET /api/v1/status` answers: the one home.

Dispatches with their delivery counts, recent errors, posts (provider id and link) and who
cancelled them; the next send per channel from the ledger-aware plan; subscribers by state;
stranded targets; open channel outages; pauses. The caller brings the connection (the CLI
opens a ledger, the app uses its own engine).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from dispatcher.campaign.model import Campaign, Channel
from dispatcher.channels import links
from dispatcher.delivery import controls, schedule
from dispatcher.delivery import targets as delivery_targets
from dispatcher.ledger import controls as ledger_controls
from dispatcher.ledger import outages, store
from dispatcher.ledger import subscribers as subscriber_store
from dispatcher.ledger import targets as ledger_targets
from dispatcher.ledger.tables import DeliveryState
from dispatcher.settings import Settings


def status_of(
    connection: sa.Connection, campaign: Campaign, settings: Settings, now: dt.datetime
) -> dict[str, Any]:
    """Dispatches with their counts, errors, posts and cancel; next sends; subscribers;
    problems; pauses."""
    listed = store.list_dispatches(connection, campaign.id)
    called_off = ledger_controls.cancellations(connection, campaign.id)
    channel_of = {d.id: d.channel for d in listed}
    posts: dict[int, list[dict[str, Any]]] = {}
    social = [d.id for d in listed if d.channel != Channel.EMAIL]
    for post in ledger_targets.posts(connection, social):
        posts.setdefault(post.dispatch_id, []).append(
            {
                "target": post.target,
                "state": post.state,
                "attempts": post.attempts,
                "provider_id": post.provider_id,
                "link": post.provider_url
                or links.post_url(
                    channel_of[post.dispatch_id], post.provider_id, recipient=post.target
                ),
                "error": None if post.state == DeliveryState.SENT else post.error,
            }
        )
    rows = []
    for d in listed:
        row: dict[str, Any] = {
            "id": d.id,
            "day": d.day.isoformat(),
            "channel": d.channel,
            "item": d.item_id,
            "state": d.state,
            "counts": store.delivery_counts(connection, d.id),
            "errors": store.recent_errors(connection, d.id),
            "cancelled": _cancellation(called_off.get(d.id)),
        }
        if d.channel != Channel.EMAIL:
            row["posts"] = posts.get(d.id, [])
        rows.append(row)
    plan = schedule.ledger_plan(connection, campaign, now)
    return {
        "dispatches": rows,
        "next_send": {
            str(channel): None if at is None else at.isoformat()
            for channel, at in schedule.next_sends(plan, campaign).items()
        },
        "subscribers": subscriber_store.count_by_state(connection),
        "stranded": delivery_targets.stranded_problems(connection, campaign.id, settings),
        "outages": {
            channel: {
                "since": outage.since.isoformat(),
                "refused_tries": outage.failures,
                "next_try": outage.retry_at.isoformat(),
                "error": outage.error,
            }
            for channel, outage in sorted(outages.outages(connection).items())
        },
        "paused": {
            "all" if pause.channel is None else str(pause.channel): {
                "since": pause.paused_at.isoformat(),
                "by": pause.by,
            }
            for pause in controls.pauses(connection)
        },
    }


def _cancellation(found: ledger_controls.Cancellation | None) -> dict[str, Any] | None:
    """Who called the dispatch off, when and why (and who resent its rest)."""
    if found is None:
        return None
    return {
        "at": found.at.isoformat(),
        "by": found.by,
        "reason": found.reason,
        "resent_at": None if found.resent_at is None else found.resent_at.isoformat(),
        "resent_by": found.resent_by,
    }
