"""Sign-in and sign-out at the desk (docs/desk.md)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dispatcher.ledger import editors as ledger
from dispatcher.web.desk import session
from dispatcher.web.desk.pages import PRIVATE, SIGN_IN, record, render, require_csrf, signed_in
from dispatcher.web.state import WebState


def routes(state: WebState) -> list[BaseRoute]:
    async def sign_in(request: Request) -> Response:
        return render(
            state,
            request,
            "sign_in.html.j2",
            next_path="/desk/",
            sent=False,
            signed_out=False,
            email="",
            error=None,
            ttl_minutes=15,
        )

    @signed_in
    async def sign_out(request: Request) -> Response:
        async with request.form(max_files=0, max_fields=10) as form:
            require_csrf(request, form)
        token = request.state.session_token
        await run_in_threadpool(_end, state, token)
        await run_in_threadpool(record, state, request.state.editor, "sign_out", "")
        response = RedirectResponse(f"{SIGN_IN}?abgemeldet=1", 303, headers=PRIVATE)
        session.clear_session_cookie(response, state)
        return response

    return [
        Route("/anmelden", sign_in, methods=["GET"], name="desk_sign_in"),
        Route("/abmelden", sign_out, methods=["POST"], name="desk_sign_out"),
    ]


def _end(state: WebState, token: str) -> None:
    with state.engine.begin() as connection:
        ledger.end_session(connection, token, now=state.clock())
