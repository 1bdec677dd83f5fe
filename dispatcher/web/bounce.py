"""`POST /webhooks/bounce`: bounces and complaints reported by the mail provider.

Synchronous 5xx replies already mark hard bounces while sending; this endpoint
takes what arrives later — a DSN the relay parsed, a feedback-loop complaint —
from the provider's webhook or a small script in front of the bounce mailbox
(`DISPATCHER_RETURN_PATH`).

- Authentication: `Authorization: Bearer <DISPATCHER_BOUNCE_WEBHOOK_TOKEN>`,
  compared in constant time; 401 without or with a wrong one. Without the setting
  the endpoint does not exist (404): nobody can suppress addresses by default.
- Body: JSON, one object or a list of them:
  `{"email": "…", "kind": "hard" | "soft" | "complaint", "reason": "…"}`
  (`reason` optional, other keys ignored). Anything malformed gets 400 with a
  message naming the entry and field, and nothing of the request is recorded.
- `hard` and `complaint` suppress the address at once (subscriber `bounced`);
  `soft` counts, and `DISPATCHER_SOFT_BOUNCE_LIMIT` consecutive ones suppress it.
- 200 with counts per outcome, `{"unknown": n, …}` included: the caller is
  authenticated, so telling it which addresses are unknown reveals nothing new.
- An unreachable ledger answers 503 (the provider retries); nothing answers 500.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatcher.ledger import subscribers as ledger
from dispatcher.mail.addresses import InvalidAddress, normalise
from dispatcher.web.hardening import has_control_characters
from dispatcher.web.state import WebState

logger = logging.getLogger("dispatcher.web")

PATH = "/webhooks/bounce"
MAX_BODY = 1024 * 1024  #: bytes; a provider batches a few hundred events at most
MAX_EVENTS = 1000  #: entries per request
MAX_REASON = 2000  #: characters of `reason` accepted (the ledger keeps 500)
KINDS: tuple[ledger.BounceKind, ...] = ("hard", "soft", "complaint")
OUTCOMES: tuple[ledger.BounceOutcome, ...] = (
    "bounced",
    "complained",
    "soft",
    "suppressed",
    "unchanged",
    "unknown",
)
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class BounceEvent:
    email: str  #: normalised
    kind: ledger.BounceKind
    reason: str


class BadRequestError(Exception):
    """The body cannot be used; the message says what is wrong, never echoing a secret."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison (as bytes: `compare_digest` refuses non-ASCII str)."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def parse_events(body: bytes) -> list[BounceEvent]:
    """The events of a request body, or `BadRequestError` saying which entry and field is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadRequestError("the body is not JSON; send an object or a list of objects") from None
    entries = data if isinstance(data, list) else [data]
    if not entries:
        raise BadRequestError("the list is empty; send at least one event")
    if len(entries) > MAX_EVENTS:
        raise BadRequestError(f"more than {MAX_EVENTS} events in one request; split it", 413)
    return [
        _event(entry, index if isinstance(data, list) else None)
        for index, entry in enumerate(entries)
    ]


def _event(entry: Any, index: int | None) -> BounceEvent:
    where = "" if index is None else f"[{index}]"
    if not isinstance(entry, dict):
        raise BadRequestError(
            f'{where or "body"}: expected an object {{"email", "kind", "reason"}}'
        )
    email, kind, reason = entry.get("email"), entry.get("kind"), entry.get("reason", "")
    if not isinstance(email, str) or not email.strip():
        raise BadRequestError(f"{where}email: required, a string with the address")
    if has_control_characters(email):
        raise BadRequestError(f"{where}email: contains control characters (e.g. NUL)")
    try:
        address = normalise(email.strip())
    except InvalidAddress:
        raise BadRequestError(f"{where}email: not a valid email address") from None
    if kind not in KINDS:
        raise BadRequestError(f"{where}kind: must be one of hard, soft, complaint")
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise BadRequestError(f"{where}reason: must be a string")
    # A NUL would only fail in the ledger (PostgreSQL refuses it); answered 503 there, the
    # relay would resend the same event forever. Line breaks of a multi-line DSN are fine.
    if has_control_characters(reason, allow="\t\n\r"):
        raise BadRequestError(
            f"{where}reason: contains control characters (e.g. NUL); only tab and line breaks "
            "are allowed"
        )
    if len(reason) > MAX_REASON:
        raise BadRequestError(f"{where}reason: longer than {MAX_REASON} characters")
    return BounceEvent(address, kind, reason)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise BadRequestError(f"the body is larger than {MAX_BODY} bytes", 413)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise BadRequestError(f"the body is larger than {MAX_BODY} bytes", 413)
    except ClientDisconnect:
        raise BadRequestError("the request body was cut off") from None
    return bytes(body)


def record(state: WebState, events: list[BounceEvent], *, limit: int) -> Counter[str]:
    """Every event in one transaction: a request is recorded entirely or not at all."""
    outcomes: Counter[str] = Counter()
    now = state.clock()
    with state.engine.begin() as conn:
        for event in events:
            outcomes[
                ledger.record_bounce(
                    conn, event.email, event.kind, event.reason, limit=limit, now=now
                )
            ] += 1
    return outcomes


def routes(state: WebState) -> list[Route]:
    def error(message: str, status: int, **headers: str) -> JSONResponse:
        return JSONResponse({"error": message}, status, headers={**NO_STORE, **headers})

    async def bounce(request: Request) -> Response:
        settings = state.settings
        configured = settings.bounce_webhook_token
        expected = configured.get_secret_value() if configured is not None else ""
        if not expected:
            return error("not found", 404)
        if not token_matches(bearer_token(request.headers.get("authorization")), expected):
            return error(
                "missing or wrong bearer token",
                401,
                **{"WWW-Authenticate": 'Bearer realm="dispatcher-bounce"'},
            )
        try:
            events = parse_events(await _read_body(request))
        except BadRequestError as bad:
            return error(bad.message, bad.status)
        try:
            outcomes = await run_in_threadpool(
                record, state, events, limit=settings.soft_bounce_limit
            )
        except sa.exc.DataError as failure:
            # The values, not the ledger, are at fault: a retry would fail the same way.
            logger.warning(
                f"bounce webhook: the ledger refused a value ({type(failure.orig).__name__})",
                extra={"event": "bounce_webhook_refused"},
            )
            return error("a value of this request cannot be stored; fix it, do not retry", 400)
        except sa.exc.SQLAlchemyError as failure:
            logger.error(
                f"bounce webhook: ledger unavailable ({type(failure).__name__})",
                extra={"event": "bounce_webhook_failed", "error": type(failure).__name__},
            )
            return error("the ledger is unavailable; retry later", 503, **{"Retry-After": "60"})
        counts = {name: outcomes[name] for name in OUTCOMES}
        logger.info(
            "bounce webhook: "
            + ", ".join(f"{count} {name}" for name, count in counts.items() if count),
            extra={"event": "bounce_webhook", "counts": counts},
        )
        return JSONResponse({"received": len(events), **counts}, headers=NO_STORE)

    return [Route(PATH, bounce, methods=["POST"], name="bounce_webhook")]
