"""The HTTP API under /api/v1 (docs/api.md): JSON for the platform's systems, with tokens.

The platform's CMS and helpdesk sign people up (double opt-in, as the form), look them up,
unsubscribe and erase them; ops tools read the plan and the status and hold or stop sending.
Every call needs a bearer token with the right scope (`dispatcher tokens create`).

- `routing`: the route table type and what every request goes through (token, rate limit,
  scope, body), and the problems it answers with (`problems`, RFC 9457);
- `subscribers`, `dispatches`, `controls`: the endpoints;
- `models`: the bodies, as pydantic models; `openapi`: the document generated from both,
  served at /api/v1/openapi.json.

The API is its own Starlette app mounted at /api/v1, so that a path or method it does not
have is answered as a problem too, not as the site's HTML or plain-text pages.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from dispatcher import __version__
from dispatcher.web.api import controls, dispatches, openapi, subscribers
from dispatcher.web.api.problems import ProblemError
from dispatcher.web.api.routing import PREFIX, Endpoint, Guard
from dispatcher.web.api.routing import routes as api_routes
from dispatcher.web.state import WebState

PER_MINUTE = 120  #: requests per token and minute (docs/api.md, "Rate limits")
TITLE = "Cluster Week dispatcher API"
DESCRIPTION = (
    "Subscribers with double opt-in, the plan and status, and the stop switch. "
    "Errors are RFC 9457 problem details; see docs/api.md."
)


def endpoints(state: WebState) -> list[Endpoint]:
    """Every endpoint of the API, in the order the document lists them."""
    return [
        *subscribers.endpoints(state),
        *dispatches.endpoints(state),
        *controls.endpoints(state),
    ]


def create_api(state: WebState, *, per_minute: int = PER_MINUTE) -> Starlette:
    table = endpoints(state)
    spec = json.dumps(
        openapi.document(table, title=TITLE, version=__version__, description=DESCRIPTION),
        ensure_ascii=False,
    ).encode("utf-8")

    async def document(request: Request) -> Response:
        return Response(spec, media_type="application/json")

    async def http_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = {
            404: f"no such endpoint; the endpoints are listed in {PREFIX}/openapi.json",
            405: f"{request.method} is not allowed here; see {PREFIX}/openapi.json",
        }.get(exc.status_code, str(exc.detail))
        return ProblemError(exc.status_code, detail, headers=dict(exc.headers or {})).response()

    routes: list[BaseRoute] = [
        *api_routes(table, Guard(state, per_minute=per_minute)),
        Route("/openapi.json", document, methods=["GET"], name="openapi"),
    ]
    handlers: dict[Any, Any] = {HTTPException: http_problem}
    return Starlette(routes=routes, exception_handlers=handlers)


class _Prefix(Mount):
    """A Mount whose prefix also takes a path with a line break (`%0A` in an address):
    Starlette's pattern for the rest of the path (`.*`) stops at one, and such a request
    would get the site's plain-text 404 instead of a problem."""

    def __init__(self, path: str, app: Starlette) -> None:
        super().__init__(path, app=app)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)


def routes(state: WebState) -> list[BaseRoute]:
    """The API mounted at /api/v1, for `web.app.create_app`."""
    return [_Prefix(PREFIX, create_api(state))]
