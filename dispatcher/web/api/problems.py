"""Errors of the HTTP API as RFC 9457 problem details (`application/problem+json`).

Every answer that is not a success is one of these, whatever went wrong — a missing token,
a body that is not JSON, a route that does not exist — so a client needs one error path.
`type` says what kind of problem it is: `about:blank` where the HTTP status says it all (then
`title` is the status phrase, as RFC 9457 §4.2.1 asks), else one of `TYPES`, tag URIs (RFC
4151; RFC 9457 §3.1.1 allows a type that is not a web page) listed in docs/api.md. `detail`
is for people and never holds a token or another subscriber's data.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

MEDIA_TYPE = "application/problem+json"
_TAG = "tag:clusterplattform.de,2019:dispatcher:api:"
#: The problem types beyond a bare HTTP status: slug -> title.
TYPES = {
    "invalid-token": "The bearer token is missing, unknown or revoked",
    "missing-scope": "The token lacks the scope this endpoint needs",
    "rate-limited": "Too many requests with this token",
    "not-json": "The body is not JSON",
    "invalid-body": "The body does not match the endpoint's schema",
    "invalid-address": "Not a valid email address",
    "unknown-subscriber": "No subscriber with this address",
    "unknown-dispatch": "No dispatch with this id",
    "dispatch-finished": "The dispatch has finished; there is nothing left to cancel",
    "ledger-unavailable": "The ledger (database) does not answer",
}


class FieldError(BaseModel):
    """One part of a body that is wrong (RFC 9457 §3's own example of an extension)."""

    pointer: str = Field(
        description="JSON Pointer (RFC 6901) into the body, e.g. /email; empty: the whole body"
    )
    detail: str


class Problem(BaseModel):
    """An RFC 9457 problem; `errors` and `scope` only for the types that carry them."""

    model_config = ConfigDict(title="Problem")

    type: str = Field(description="what kind of problem: about:blank or one of docs/api.md")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: list[FieldError] | None = Field(
        default=None, description="invalid-body: each field that is wrong"
    )
    scope: str | None = Field(default=None, description="missing-scope: the scope needed")


class ProblemError(Exception):
    """Raised by a handler (or the request pipeline) to answer with a problem."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[FieldError] | None = None,
        scope: str | None = None,
    ) -> None:
        super().__init__(detail)
        if kind is not None and kind not in TYPES:
            raise ValueError(f"unknown problem type {kind}")
        self.problem = Problem(
            type="about:blank" if kind is None else _TAG + kind,
            title=HTTPStatus(status).phrase if kind is None else TYPES[kind],
            status=status,
            detail=detail,
            errors=errors,
            scope=scope,
        )
        self.headers = headers or {}

    def response(self) -> Response:
        return problem_response(self.problem, self.headers)


def type_uri(kind: str) -> str:
    """The `type` of a problem kind of `TYPES` (for docs and tests)."""
    if kind not in TYPES:
        raise ValueError(f"unknown problem type {kind}")
    return _TAG + kind


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(problem.model_dump(mode="json", exclude_none=True), ensure_ascii=False)
    return Response(
        body.encode("utf-8"),
        problem.status,
        headers={"Cache-Control": "no-store", **(headers or {})},
        media_type=MEDIA_TYPE,
    )
