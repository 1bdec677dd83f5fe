"""What goes out when, as the ledger has it: the one home of the plan at an instant.

`planning.plan` is pure: it needs the ledger's history to know which days already went
out (and with which item). Every caller — `tick`, `run`, `plan`, `status`, `/readyz`,
`/metrics`, the demo — gets the plan from `ledger_plan`, and the next send per channel
and the scheduler's fire times from this module, so no two of them can disagree.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from dispatcher.campaign import planning
from dispatcher.campaign.model import Campaign, Channel
from dispatcher.ledger import store

_UPCOMING = (planning.PlanState.PLANNED, planning.PlanState.DUE)


def history(connection: sa.Connection, campaign_id: str) -> list[planning.PastDispatch]:
    """The ledger's dispatches of the campaign as the planner's past."""
    return [
        planning.PastDispatch(row.day, Channel(row.channel), row.item_id, row.state)
        for row in store.history(connection, campaign_id)
    ]


def ledger_plan(connection: sa.Connection, campaign: Campaign, now: dt.datetime) -> planning.Plan:
    """The plan at `now`: the file for what has not gone out, the ledger for what has."""
    return planning.plan(campaign, now=now, history=history(connection, campaign.id))


def next_sends(plan: planning.Plan, campaign: Campaign) -> dict[Channel, dt.datetime | None]:
    """Per channel of the campaign, the UTC time of its next planned or due send (None:
    nothing left)."""
    result: dict[Channel, dt.datetime | None] = dict.fromkeys(campaign.channels)
    for row in plan.rows:
        if row.channel in result and row.state in _UPCOMING and row.send_at_utc is not None:
            current = result[row.channel]
            if current is None or row.send_at_utc < current:
                result[row.channel] = row.send_at_utc
    return result


def send_times(plan: planning.Plan) -> list[dt.datetime]:
    """The instants at which something is still planned (UTC, sorted, unique): when the
    service must wake up."""
    return sorted(
        {
            row.send_at_utc
            for row in plan.rows
            if row.state is planning.PlanState.PLANNED and row.send_at_utc is not None
        }
    )
