"""The editors' desk under /desk (docs/desk.md): sign-in, calendar, item pages, iCal feed,
changes of the queue and their history.

Each part is a small route module with `routes(state)`; `routes` mounts them all at /desk,
with the `WebState` in the scope (`pages.WithState`) for the `signed_in` guard.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from dispatcher.web.desk import auth, calendar, ical, items, queue, stop
from dispatcher.web.desk.pages import WithState
from dispatcher.web.state import WebState


def routes(state: WebState) -> list[BaseRoute]:
    desk: list[BaseRoute] = [
        *auth.routes(state),
        *calendar.routes(state),
        *ical.routes(state),
        *items.routes(state),
        *queue.routes(state),
        *stop.routes(state),
    ]
    return [Mount("/desk", routes=desk, middleware=[Middleware(WithState, state=state)])]
