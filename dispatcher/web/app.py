"""The HTTP endpoints (docs/operations.md) as one Starlette app: small route modules —
`subscription` (unsubscribe, double opt-in), `archive` (archive page, Atom feed), `bounce`
(the relay's webhook), `ops` (health, readiness, metrics), `desk` (the editors' desk
under /desk) and `api` (the JSON API under /api/v1, docs/api.md) — over one `WebState`.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware

from dispatcher.web import api, archive, bounce, desk, ops, subscription
from dispatcher.web.hardening import Hardening
from dispatcher.web.proxy import ClientAddress
from dispatcher.web.state import WebState


def create_app(state: WebState) -> Starlette:
    routes = [
        *ops.routes(state),
        *subscription.routes(state),
        *archive.routes(state),
        *bounce.routes(state),
        *desk.routes(state),
        *api.routes(state),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: subscription.not_found_handler(state)},
        middleware=[
            Middleware(ClientAddress),  # X-Forwarded-For from FORWARDED_ALLOW_IPS only
            Middleware(
                Hardening,
                public_url=state.settings.public_url,
                form_origins=state.settings.form_origins,
            ),
        ],
    )
    app.state.settings = state.settings  # the server reads its connection limits from here
    return app
