"""Subscribers over the API: sign-up with double opt-in, look-up, unsubscribe, erase.

- `POST /subscribers` is the sign-up form without the form: the same code (`subscription`)
  records the request and sends the confirmation mail, after the answer, and the person
  is subscribed only when they click its link. The API cannot skip that consent: there is
  no way to create an active subscriber here (the operator's `subscribers import` is the
  one door for lists that were consented elsewhere). Every valid request gets the same
  202, whether the address is new, pending, active or unsubscribed — as the form, it does
  not tell who is on the list; a token with `subscribers:read` can ask that explicitly.
  The consent record names the token (`api:<name>`) and the caller's `source`.
- `GET /subscribers/{email}`: state, language and consent record, for the platform's
  helpdesk.
- `PATCH /subscribers/{email}`: change the reader's language (`{"lang": "en"}`; null: the
  campaign's default), recorded with the consent as changed by `api:<token name>`.
- `POST /subscribers/{email}/unsubscribe`: as the newsletter's one-click link does.
- `DELETE /subscribers/{email}`: erase the person's data (GDPR art. 17); the row stays
  anonymous so every delivery count stays right (`ledger.subscribers.erase`).

An erased subscriber is unknown here: their address is gone from the ledger. A language
must be one of the campaign's `locales`, else 422 naming them (`/lang`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool

from dispatcher.ledger import subscribers as ledger
from dispatcher.ledger.engine import reader
from dispatcher.mail.addresses import InvalidAddress, InvalidName, clean_name, normalise
from dispatcher.web import subscription
from dispatcher.web.api import models
from dispatcher.web.api.problems import FieldError, ProblemError
from dispatcher.web.api.routing import Answer, Call, Endpoint, PathParameter, field_problem
from dispatcher.web.hardening import has_control_characters
from dispatcher.web.state import WebState

logger = logging.getLogger("dispatcher.web")

TAG = "subscribers"
EMAIL_PARAMETER = {
    "email": PathParameter(
        {"type": "string"},
        "the address, percent-encoded as a path segment",
        models.EXAMPLE_ADDRESS,
    )
}
UNKNOWN = {404: "no subscriber with this address (or erased)"}
ACCEPTED = (
    "unless the address is subscribed already, a confirmation mail goes out (at most one per "
    "address and hour); the person is subscribed when they click its link"
)


def consent_source(token_name: str, source: str | None) -> str:
    """`api:<token name>`, plus where the person signed up as the caller says."""
    return f"api:{token_name}" + (f"; {' '.join(source.split())}" if source else "")


def _address(text: str) -> str:
    """The ledger's form of a path's address; 400 for one that cannot be an address."""
    if has_control_characters(text):
        raise ProblemError(400, "the address contains control characters", kind="invalid-address")
    try:
        return normalise(text)
    except InvalidAddress as error:
        raise ProblemError(400, error.reason, kind="invalid-address") from None


def _language_error(lang: str | None, offered: Sequence[str]) -> FieldError | None:
    if lang is None or lang in offered:
        return None
    return FieldError(
        pointer="/lang",
        detail=f'the campaign offers {", ".join(offered)}, not "{lang}"; null: its default '
        f"({offered[0]})",
    )


def _sign_up(body: models.NewSubscriber, offered: Sequence[str]) -> tuple[str, str | None]:
    """The address and name of a sign-up, or 422 naming each wrong field (the model has
    refused control characters already); `offered`: the campaign's languages."""
    errors: list[FieldError] = []
    address = name = None
    try:
        address = normalise(body.email)
    except InvalidAddress as error:
        errors.append(FieldError(pointer="/email", detail=error.reason))
    try:
        name = clean_name(body.name)
    except InvalidName as error:
        errors.append(FieldError(pointer="/name", detail=str(error)))
    if (language := _language_error(body.lang, offered)) is not None:
        errors.append(language)
    if errors:
        raise field_problem(errors)
    assert address is not None
    return address, name


def _view(row: ledger.SubscriberRow) -> models.Subscriber:
    return models.Subscriber(
        email=row.email,
        name=row.name,
        state=row.state,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        unsubscribed_at=row.unsubscribed_at,
        last_error=row.last_error,
        lang=row.lang,
        consent=models.ConsentRecord(
            at=row.consent_at,
            source=row.consent_source,
            ip=row.consent_ip,
            text=row.consent_text,
            lang=row.consent_lang,
            lang_changed_at=row.lang_changed_at,
            lang_changed_by=row.lang_changed_by,
        ),
    )


def endpoints(state: WebState) -> list[Endpoint]:
    async def create(call: Call) -> Answer:
        address, name = _sign_up(call.body, state.campaign().locales)
        lang = call.body.lang
        consent = ledger.Consent(
            source=consent_source(call.token.name, call.body.source),
            ip=None,  # the caller is the platform's server, not the person
            text=state.settings.consent_text_for(lang),
        )
        values = {"email": address, "name": name or "", "consent": "api"}
        # After the answer, exactly as the form: its time must not depend on the address.
        if not state.background.submit(
            lambda: subscription.sign_up(state, values, consent, lang=lang, source="api")
        ):
            raise ProblemError(503, "too many sign-ups are waiting; try again shortly")
        return Answer(
            models.SubscriptionRequested(email=address, status="accepted", detail=ACCEPTED), 202
        )

    def find(address: str) -> models.Subscriber:
        with reader(state.engine).connect() as connection:
            row = ledger.get(connection, address)
        if row is None or row.erased:
            raise ProblemError(404, "no subscriber with this address", kind="unknown-subscriber")
        return _view(row)

    async def lookup(call: Call) -> Answer:
        address = _address(call.request.path_params["email"])
        return Answer(await run_in_threadpool(find, address))

    def relanguage(address: str, call: Call) -> models.Subscriber:
        lang = call.body.lang
        with state.engine.begin() as connection:
            before = ledger.get(connection, address)
            row = None
            if before is not None:
                row = ledger.set_language(connection, before.id, lang, now=call.now, by=call.by)
        if before is None or row is None:
            raise ProblemError(404, "no subscriber with this address", kind="unknown-subscriber")
        if row.lang != before.lang:
            logger.info(
                f"subscriber {row.id}'s language set to {lang or 'the default'} over the API "
                f"by {call.by}",
                extra={"event": "language_changed", "lang": lang},
            )
        return _view(row)

    async def change(call: Call) -> Answer:
        address = _address(call.request.path_params["email"])
        problem = _language_error(call.body.lang, state.campaign().locales)
        if problem is not None:
            raise field_problem([problem])
        return Answer(await run_in_threadpool(relanguage, address, call))

    def leave(address: str, call: Call) -> models.Unsubscribed:
        with state.engine.begin() as connection:
            row = ledger.get(connection, address)
            if row is None or row.erased:
                raise ProblemError(
                    404, "no subscriber with this address", kind="unknown-subscriber"
                )
            changed = ledger.unsubscribe(connection, row.id, now=call.now)
            after = ledger.get_by_id(connection, row.id)
        assert after is not None
        if changed:
            logger.info(
                f"subscriber {row.id} unsubscribed over the API by {call.by}",
                extra={"event": "unsubscribed"},
            )
        return models.Unsubscribed(email=after.email, state=after.state, changed=changed)

    async def unsubscribe(call: Call) -> Answer:
        address = _address(call.request.path_params["email"])
        return Answer(await run_in_threadpool(leave, address, call))

    def forget(address: str, call: Call) -> None:
        with state.engine.begin() as connection:
            row = ledger.get(connection, address)
            if row is None or row.erased or not ledger.erase(connection, address, now=call.now):
                raise ProblemError(
                    404, "no subscriber with this address", kind="unknown-subscriber"
                )
        logger.info(
            f"subscriber {row.id} erased over the API by {call.by}",
            extra={"event": "subscriber_erased"},
        )

    async def erase(call: Call) -> Answer:
        address = _address(call.request.path_params["email"])
        await run_in_threadpool(forget, address, call)
        return Answer(None, 204)

    return [
        Endpoint(
            "POST",
            "/subscribers",
            "createSubscriber",
            "Sign a person up (double opt-in: the confirmation mail goes out)",
            "subscribers:write",
            create,
            models.SubscriptionRequested,
            status=202,
            body=models.NewSubscriber,
            description=ACCEPTED
            + ". The same answer for every valid address: it does not tell who is subscribed.",
            tag=TAG,
        ),
        Endpoint(
            "GET",
            "/subscribers/{email}",
            "getSubscriber",
            "A subscriber's state, language and consent record",
            "subscribers:read",
            lookup,
            models.Subscriber,
            problems={400: "not an address", **UNKNOWN},
            parameters=EMAIL_PARAMETER,
            tag=TAG,
        ),
        Endpoint(
            "PATCH",
            "/subscribers/{email}",
            "updateSubscriber",
            "Change a subscriber's language",
            "subscribers:write",
            change,
            models.Subscriber,
            body=models.SubscriberChange,
            problems={400: "not an address", **UNKNOWN},
            parameters=EMAIL_PARAMETER,
            description="The language their emails and pages are in from the next send on; "
            "null: the campaign's default. One of the campaign's languages, else 422. The "
            "change is kept with the consent record (when, and this token's name).",
            tag=TAG,
        ),
        Endpoint(
            "POST",
            "/subscribers/{email}/unsubscribe",
            "unsubscribeSubscriber",
            "Unsubscribe (idempotent)",
            "subscribers:write",
            unsubscribe,
            models.Unsubscribed,
            problems={400: "not an address", **UNKNOWN},
            parameters=EMAIL_PARAMETER,
            tag=TAG,
        ),
        Endpoint(
            "DELETE",
            "/subscribers/{email}",
            "eraseSubscriber",
            "Erase the person's data (GDPR art. 17)",
            "subscribers:write",
            erase,
            None,
            status=204,
            problems={400: "not an address", **UNKNOWN},
            parameters=EMAIL_PARAMETER,
            description="Address, name and consent record are deleted; the anonymous row keeps "
            "the delivery counts right. Afterwards the address is unknown (404).",
            tag=TAG,
        ),
    ]
