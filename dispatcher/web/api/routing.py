"""The route table of the HTTP API and what every request goes through (docs/api.md).

An `Endpoint` declares method, path, scope, body and answer models and its own problems;
the Starlette routes and the OpenAPI document (`api.openapi`) are both made from the same
table, so neither can list what the other lacks. Each request runs the same steps, in this
order, before its handler sees it:

1. the bearer token: missing, unknown or revoked -> 401 with `WWW-Authenticate: Bearer`;
2. the token's rate limit (`per_minute` requests in any minute) -> 429 with `Retry-After`;
   counted before the scope check, so a token cannot probe without limit either;
3. the scope -> 403 naming the scope (`WWW-Authenticate: Bearer error="insufficient_scope"`);
4. the body: JSON only (415), at most `MAX_BODY` bytes (413), parseable (400), and valid
   for the endpoint's model (422, each wrong field with a JSON Pointer).

A ledger that does not answer is a 503 with `Retry-After`; any other failure is logged and
a 500 problem, never a traceback. Errors are RFC 9457 problems (`api.problems`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from dispatcher.ledger import tokens
from dispatcher.ledger.engine import reader
from dispatcher.web.api.problems import FieldError, ProblemError
from dispatcher.web.bounce import bearer_token
from dispatcher.web.ratelimit import SlidingWindowLimiter
from dispatcher.web.state import WebState

logger = logging.getLogger("dispatcher.web")

PREFIX = "/api/v1"
MAX_BODY = 64 * 1024  #: bytes; the largest body (a sign-up) is well under 1 KiB
MAX_TOKEN = 200  #: characters; ours are 47, anything much longer is no token of ours
RETRY_LEDGER = 30  #: seconds a client waits after a 503 (the ledger did not answer)
REALM = 'Bearer realm="dispatcher-api"'
NO_STORE = {"Cache-Control": "no-store"}
Method = Literal["GET", "POST", "PATCH", "DELETE"]


@dataclass(frozen=True)
class Call:
    """What a handler gets: the request, the token it came with and the validated body."""

    request: Request
    token: tokens.TokenRow
    body: Any  #: an instance of the endpoint's `body` model, or None without one
    now: dt.datetime

    @property
    def by(self) -> str:
        """Who did it, for logs and the ledger's records: the token's name."""
        return f"api:{self.token.name}"


@dataclass(frozen=True)
class Answer:
    body: BaseModel | None  #: None: no content (204)
    status: int = 200


Handler = Callable[[Call], Awaitable[Answer]]


@dataclass(frozen=True)
class PathParameter:
    schema: dict[str, Any]  #: JSON Schema of the value
    description: str
    example: object  #: for the document's readers, and the examples schemathesis sends


@dataclass(frozen=True)
class Endpoint:
    method: Method
    path: str  #: under PREFIX, Starlette syntax: "/subscribers/{email}"
    operation_id: str
    summary: str
    scope: str  #: one of `tokens.SCOPES`
    handler: Handler
    answer: type[BaseModel] | None  #: the success body; None with status 204
    status: int = 200
    body: type[BaseModel] | None = None
    #: False: an empty body means the model's defaults (e.g. `{}` for pause)
    body_required: bool = True
    problems: dict[int, str] = field(default_factory=dict)  #: its own, e.g. {404: "…"}
    parameters: dict[str, PathParameter] = field(default_factory=dict)
    description: str = ""
    tag: str = ""


class Guard:
    """Steps 1–3 of every request: the token, its rate limit and the scope."""

    def __init__(self, state: WebState, *, per_minute: int) -> None:
        self.state = state
        self.limiter = SlidingWindowLimiter(
            per_minute, 60.0, clock=lambda: state.clock().timestamp()
        )

    async def token(self, request: Request, now: dt.datetime) -> tokens.TokenRow:
        given = bearer_token(request.headers.get("authorization"))
        if given is None:
            raise ProblemError(
                401,
                "send the token as `Authorization: Bearer <token>` (dispatcher tokens create)",
                kind="invalid-token",
                headers={"WWW-Authenticate": REALM},
            )
        found = None
        if len(given) <= MAX_TOKEN:
            found = await run_in_threadpool(self._lookup, given, now)
        if found is None:
            raise ProblemError(
                401,
                "the token is unknown or revoked; ask the operator for a new one",
                kind="invalid-token",
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
            )
        return found

    def _lookup(self, token: str, now: dt.datetime) -> tokens.TokenRow | None:
        with reader(self.state.engine).connect() as connection:
            found = tokens.authenticate(connection, token)
        if found is not None and tokens.due_for_use(found, now):
            with self.state.engine.begin() as connection:
                tokens.mark_used(connection, found.id, now=now)
        return found

    def admit(self, token: tokens.TokenRow, scope: str) -> None:
        wait = self.limiter.hit(f"token:{token.id}")
        if wait is not None:
            seconds = self.limiter.retry_after_header(wait)
            raise ProblemError(
                429,
                f"at most {self.limiter.limit} requests a minute per token; "
                f"try again in {seconds} s",
                kind="rate-limited",
                headers={"Retry-After": seconds},
            )
        if not token.allows(scope):
            raise ProblemError(
                403,
                f"this endpoint needs a token with the scope {scope}; this one has "
                f"{', '.join(token.scopes)}",
                kind="missing-scope",
                scope=scope,
                headers={
                    "WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'
                },
            )


async def read_body(endpoint: Endpoint, request: Request) -> Any:
    """Step 4: the validated body model (None for an endpoint without one)."""
    model = endpoint.body
    if model is None:
        return None
    raw = await _raw_body(request)
    if not raw and not endpoint.body_required:
        return model()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise ProblemError(415, "send the body as JSON with `Content-Type: application/json`")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ProblemError(400, "the body is not JSON (UTF-8)", kind="not-json") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise invalid_body(error) from None


def invalid_body(error: ValidationError) -> ProblemError:
    """422 with each wrong field; the messages are pydantic's, the input is not echoed."""
    errors = [
        FieldError(
            pointer="".join(f"/{_escape(part)}" for part in e["loc"]),
            detail=e["msg"],
        )
        for e in error.errors(include_url=False, include_input=False)
    ]
    return field_problem(errors)


def _escape(part: str | int) -> str:
    """A key or index as a JSON Pointer token (RFC 6901 §3)."""
    return str(part).replace("~", "~0").replace("/", "~1")


def field_problem(errors: list[FieldError]) -> ProblemError:
    listed = "; ".join(f"{e.pointer or 'the body'}: {e.detail}" for e in errors)
    return ProblemError(422, listed, kind="invalid-body", errors=errors)


async def _raw_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ProblemError(413, f"the body is larger than {MAX_BODY} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise ProblemError(413, f"the body is larger than {MAX_BODY} bytes")
    except ClientDisconnect:
        raise ProblemError(400, "the request body was cut off") from None
    return bytes(body)


def json_response(answer: Answer) -> Response:
    if answer.body is None:
        return Response(status_code=answer.status, headers=NO_STORE)
    return Response(
        answer.body.model_dump_json().encode("utf-8"),
        answer.status,
        headers=NO_STORE,
        media_type="application/json",
    )


def ledger_unavailable() -> ProblemError:
    return ProblemError(
        503,
        "the ledger (database) does not answer; try again shortly",
        kind="ledger-unavailable",
        headers={"Retry-After": str(RETRY_LEDGER)},
    )


async def run(endpoint: Endpoint, guard: Guard, request: Request) -> Response:
    """One request through steps 1–4 and the handler, every failure a problem."""
    now = guard.state.clock()
    try:
        token = await guard.token(request, now)
        guard.admit(token, endpoint.scope)
        body = await read_body(endpoint, request)
        return json_response(await endpoint.handler(Call(request, token, body, now)))
    except ProblemError as problem:
        return problem.response()
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, OSError) as error:
        logger.warning(
            f"API {endpoint.operation_id}: the ledger did not answer ({type(error).__name__})",
            extra={"event": "api_ledger_unavailable"},
        )
        return ledger_unavailable().response()
    except Exception:
        logger.exception(f"API {endpoint.operation_id} failed", extra={"event": "api_error"})
        return ProblemError(500, "an internal error; it is logged").response()


def routes(endpoints: Sequence[Endpoint], guard: Guard) -> list[Route]:
    """One Starlette route per path, dispatching on the method (so 405 lists them all)."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint

    def route(path: str, methods: dict[str, Endpoint]) -> Route:
        async def serve(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await run(methods[method], guard, request)

        return Route(
            path, serve, methods=list(methods), name=next(iter(methods.values())).operation_id
        )

    return [route(path, methods) for path, methods in by_path.items()]
