"""The plan and the status over the API, as `dispatcher plan --json` and `status --json`.

The plan comes from `delivery.schedule.ledger_plan`, the one home of "what goes out when"
(also for `plan`, `status`, `/readyz`); the status from `api.status`, the composition of
`dispatcher status`. Both only read, on a reader connection (no SQLite write lock).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from dispatcher.delivery import schedule
from dispatcher.delivery.status import status_of
from dispatcher.ledger.engine import reader
from dispatcher.web.api import models
from dispatcher.web.api.routing import Answer, Call, Endpoint
from dispatcher.web.state import WebState

TAG = "plan"


def endpoints(state: WebState) -> list[Endpoint]:
    def read_plan(call: Call) -> models.Plan:
        campaign = state.campaign()
        with reader(state.engine).connect() as connection:
            plan = schedule.ledger_plan(connection, campaign, call.now)
        return models.Plan(
            campaign=models.CampaignInfo(
                id=campaign.id, name=campaign.name, timezone=campaign.timezone
            ),
            rows=[models.PlanRow.model_validate(row.to_json()) for row in plan.rows],
            empty_days=list(plan.empty_days),
            unscheduled=list(plan.unscheduled),
            next_send={str(c): at for c, at in schedule.next_sends(plan, campaign).items()},
        )

    def read_status(call: Call) -> models.Status:
        with reader(state.engine).connect() as connection:
            found = status_of(connection, state.campaign(), state.settings, call.now)
        return models.Status.model_validate(found)

    async def plan(call: Call) -> Answer:
        return Answer(await run_in_threadpool(read_plan, call))

    async def status(call: Call) -> Answer:
        return Answer(await run_in_threadpool(read_status, call))

    return [
        Endpoint(
            "GET",
            "/plan",
            "getPlan",
            "What goes out when (dispatcher plan --json)",
            "plan:read",
            plan,
            models.Plan,
            description="Sent days from the ledger, the rest from the campaign file in force.",
            tag=TAG,
        ),
        Endpoint(
            "GET",
            "/status",
            "getStatus",
            "Dispatches, delivery counts, next sends (dispatcher status --json)",
            "plan:read",
            status,
            models.Status,
            description="Delivery errors are the providers' texts; they can quote an address.",
            tag=TAG,
        ),
    ]
