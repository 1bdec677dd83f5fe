"""The stop switch at the desk: cancel a running send, after a confirmation.

Routes (docs/desk.md, "Einen Versand stoppen"):

- `GET /desk/dispatches/{id}/abbrechen`: what would be stopped (day, channel, item, how many
  sent so far) and a form with a reason;
- `POST /desk/dispatches/{id}/abbrechen`: `delivery.controls.cancel_dispatch` — the one the
  command line (`dispatcher cancel`) and the HTTP API call — with `by` = `desk:<address>`.

Every `dispatcher run` process on the database obeys before its next claim batch
(docs/operations.md, "A wrong link went out"). Pausing stays with ops (`dispatcher pause`);
the desk shows a pause on every page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dispatcher.delivery import controls
from dispatcher.ledger import controls as ledger_controls
from dispatcher.ledger import store
from dispatcher.ledger.engine import reader
from dispatcher.ledger.tables import DispatchState
from dispatcher.web.desk import pages
from dispatcher.web.desk.session import Editor
from dispatcher.web.state import WebState

NO_SUCH_DISPATCH = pages.N_("Diesen Versand gibt es im Ledger nicht.")
#: Dispatch states a cancel can stop.
STOPPABLE = frozenset({DispatchState.PLANNED.value, DispatchState.RUNNING.value})


@dataclass(frozen=True)
class Stoppable:
    """A dispatch as the confirmation page shows it."""

    row: store.DispatchRow
    counts: dict[str, int]
    cancellation: ledger_controls.Cancellation | None  #: who stopped it, when, why


def stoppable_dispatches(state: WebState, item_id: str) -> list[store.DispatchRow]:
    """The item's dispatches a cancel can still stop (for the item page's buttons)."""
    with reader(state.engine).connect() as connection:
        return [
            row
            for row in store.list_dispatches(connection, state.campaign().id)
            if row.item_id == item_id and row.state in STOPPABLE
        ]


def routes(state: WebState) -> list[BaseRoute]:
    def load(dispatch_id: int) -> Stoppable | None:
        with reader(state.engine).connect() as connection:
            row = store.dispatch_by_id(connection, dispatch_id)
            if row is None or row.campaign_id != state.campaign().id:
                return None
            cancelled = ledger_controls.cancellations(connection, row.campaign_id).get(row.id)
            return Stoppable(row, store.delivery_counts(connection, row.id), cancelled)

    def page(request: Request, found: Stoppable, status: int = 200, **extra: Any) -> Response:
        extra.setdefault("error", None)
        return pages.render(state, request, "stop.html.j2", status=status, found=found,
                            stoppable=found.row.state in STOPPABLE, **extra)  # fmt: skip

    @pages.signed_in
    async def confirm_page(request: Request) -> Response:
        found = await run_in_threadpool(load, request.path_params["dispatch_id"])
        if found is None:
            return pages.render(state, request, "change_outcome.html.j2", status=404,
                                kind="refused", item_id=None, values=None,
                                reason=pages.text(request, NO_SUCH_DISPATCH))  # fmt: skip
        return page(request, found)

    @pages.signed_in
    async def cancel(request: Request) -> Response:
        form = await request.form()
        pages.require_csrf(request, form)
        editor: Editor = request.state.editor
        dispatch_id: int = request.path_params["dispatch_id"]
        found = await run_in_threadpool(load, dispatch_id)
        if found is None:
            return pages.render(state, request, "change_outcome.html.j2", status=404,
                                kind="refused", item_id=None, values=None,
                                reason=pages.text(request, NO_SUCH_DISPATCH))  # fmt: skip
        reason = str(form.get("reason") or "").strip()[:500] or None
        try:
            result = await run_in_threadpool(
                lambda: controls.cancel_dispatch(
                    state.engine, dispatch_id, by=f"desk:{editor.email}", reason=reason,
                    now=state.clock(),
                )
            )  # fmt: skip
        except ValueError as finished:
            return page(request, found, status=409, error=str(finished))
        await run_in_threadpool(
            pages.record, state, editor, "dispatch_cancel",
            f"Versand {dispatch_id} ({found.row.day} {found.row.channel} {found.row.item_id}): "
            f"{result.sent} gesendet, {result.cancelled} abgebrochen"
            + (f" – {reason}" if reason else ""),
        )  # fmt: skip
        return RedirectResponse(
            f"/desk/dispatches/{dispatch_id}/abbrechen", 303, headers=pages.PRIVATE
        )

    return [
        Route("/dispatches/{dispatch_id:int}/abbrechen", confirm_page, methods=["GET"]),
        Route("/dispatches/{dispatch_id:int}/abbrechen", cancel, methods=["POST"]),
    ]
