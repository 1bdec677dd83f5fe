"""The bodies the HTTP API takes and gives, as pydantic models (docs/api.md).

They are the one description of each body: requests are validated with them, answers are
serialised through them, and the OpenAPI document's schemas are generated from them
(`api.openapi`), so the document cannot drift from what the endpoints do. Request models
refuse unknown keys: a misspelt `nmae` is an error the caller sees, not a name dropped.
States are the ledger's own enums, so a state added there appears here and in the document.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dispatcher.campaign.model import Channel, EditionKind
from dispatcher.campaign.planning import PlanState
from dispatcher.ledger.tables import DeliveryState, DispatchState, SubscriberState
from dispatcher.mail.addresses import MAX_NAME_LENGTH
from dispatcher.web.hardening import has_control_characters

MAX_EMAIL = 320  #: RFC 5321's path limit; the ledger's column
MAX_SOURCE = 150  #: the consent source keeps 200 characters, "api:<token name>; " included
MAX_REASON = 500
EXAMPLE_ADDRESS = "erika.mustermann@example.org"  #: the document's example (RFC 2606 domain)
#: A language code as campaigns write them (`de`, `en`); which ones a campaign offers is
#: its `locales`, checked by the endpoint (422 naming them), so the schema gives the shape.
LANGUAGE_PATTERN = "^[a-z]{2,3}$"
LANGUAGE = (
    "the reader's language: one of the campaign's languages (`campaign.locales`, e.g. de, "
    "en); null: the campaign's default language"
)


def _storable(text: str, allow: str) -> str:
    """Refuse what the ledger cannot store or a log line must not carry: a lone surrogate
    (no UTF-8 form), NUL (PostgreSQL refuses it) and the other control characters."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate (not valid Unicode)") from None
    if has_control_characters(text, allow=allow):
        raise ValueError("contains control characters (e.g. NUL)")
    return text


#: One line of text: no control characters at all.
Line = Annotated[str, AfterValidator(lambda text: _storable(text, ""))]
#: Free text: tabs and line breaks allowed.
Prose = Annotated[str, AfterValidator(lambda text: _storable(text, "\t\n\r"))]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- subscribers -----------------------------------------------------------------------------


class NewSubscriber(_Request):
    """A sign-up: the person gets the confirmation mail and is subscribed only by its link."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": EXAMPLE_ADDRESS,
                    "name": "Erika Mustermann",
                    "source": "https://www.clusterplattform.de/clusterwoche",
                    "lang": "de",
                }
            ]
        }
    )

    email: Line = Field(min_length=1, max_length=MAX_EMAIL)
    name: Line | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    source: Line | None = Field(
        default=None,
        max_length=MAX_SOURCE,
        description="where the person signed up (e.g. the article's URL); kept with the consent",
    )
    lang: str | None = Field(
        default=None,
        pattern=LANGUAGE_PATTERN,
        description=LANGUAGE + "; the confirmation mail is written in it, and it is kept "
        "with the consent. For an address on the list already it is applied, as the name, "
        "only when the person clicks the confirmation link",
    )


class SubscriptionRequested(BaseModel):
    """The same answer for every valid sign-up, whoever the address belongs to."""

    email: str = Field(description="the address as the ledger writes it")
    status: Literal["accepted"]
    detail: str


class ConsentRecord(BaseModel):
    """What the person agreed to, when and where (UWG §7, GDPR art. 7(1)), in which
    language, and when and by whom that language was changed since."""

    at: dt.datetime | None
    source: str | None
    ip: str | None = Field(description="as DISPATCHER_CONSENT_IP keeps it; none for API sign-ups")
    text: str | None
    lang: str | None = Field(description="the language they signed up in; null: none was given")
    lang_changed_at: dt.datetime | None = Field(description="the last change of their language")
    lang_changed_by: str | None = Field(
        description="who made it: reader (the unsubscribe page), cli, import or api:<token name>"
    )


class Subscriber(BaseModel):
    email: str
    name: str | None
    state: SubscriberState
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    unsubscribed_at: dt.datetime | None
    last_error: str | None = Field(description="why mail stopped, e.g. a bounce")
    lang: str | None = Field(
        description="the reader's language as stored; null: the campaign's default language"
    )
    consent: ConsentRecord


class SubscriberChange(_Request):
    """What the API may change about a subscriber: their language."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"lang": "en"}, {"lang": None}]})

    lang: str | None = Field(pattern=LANGUAGE_PATTERN, description=LANGUAGE)


class Unsubscribed(BaseModel):
    email: str
    state: SubscriberState
    changed: bool = Field(description="false: the subscriber had unsubscribed already")


# -- plan and status -------------------------------------------------------------------------


class CampaignInfo(BaseModel):
    id: str
    name: str
    timezone: str


class PlanRow(BaseModel):
    """One row of `dispatcher plan --json`."""

    date: dt.date | None
    channel: Channel | None
    item: str | None
    send_at_local: dt.datetime | None
    send_at_utc: dt.datetime | None
    state: PlanState
    languages: dict[str, EditionKind] | None = Field(
        None,
        description="per language the row goes out in: `own` (the item in that language), "
        "`default` (the default language's version), `none` (nothing that day)",
    )


class Plan(BaseModel):
    campaign: CampaignInfo
    rows: list[PlanRow]
    empty_days: list[dt.date] = Field(description="send days with nothing to send")
    unscheduled: list[str] = Field(description="ready items for which no send day is left")
    next_send: dict[str, dt.datetime | None] = Field(description="per channel; null: none left")


class Post(BaseModel):
    target: str
    state: DeliveryState
    attempts: int
    provider_id: str | None
    link: str | None
    error: str | None


class Cancellation(BaseModel):
    at: dt.datetime
    by: str = Field(description="cli:<user> or api:<token name>")
    reason: str | None
    resent_at: dt.datetime | None = Field(description="when `dispatcher resend` sent the rest")
    resent_by: str | None


class DispatchStatus(BaseModel):
    id: int
    day: dt.date
    channel: Channel
    item: str
    state: DispatchState
    counts: dict[str, int] = Field(description="deliveries per state")
    errors: list[str] = Field(description="the most frequent delivery errors")
    cancelled: Cancellation | None = Field(description="who called it off, when and why")
    posts: list[Post] | None = Field(
        default=None,
        exclude_if=lambda posts: posts is None,
        description="social channels only: each target's post",
    )


class Outage(BaseModel):
    since: dt.datetime
    refused_tries: int
    next_try: dt.datetime
    error: str | None


class Paused(BaseModel):
    since: dt.datetime
    by: str


class Status(BaseModel):
    """`dispatcher status --json`."""

    dispatches: list[DispatchStatus]
    next_send: dict[str, dt.datetime | None]
    subscribers: dict[str, int] = Field(description="subscribers per state")
    stranded: list[str] = Field(description="posts whose target is configured no more")
    outages: dict[str, Outage] = Field(description="channels whose relay or API refuses")
    paused: dict[str, Paused] = Field(description="paused channels; `all`: all sending")


# -- stop switch -----------------------------------------------------------------------------


class CancelRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "falscher Link"}]})

    reason: Prose | None = Field(default=None, max_length=MAX_REASON)


class Cancelled(BaseModel):
    dispatch_id: int
    state: str
    cancelled: int = Field(description="deliveries that will not be sent")
    sent: int = Field(description="deliveries sent before the cancel")
    already: bool = Field(description="true: it was cancelled before this request")


class PauseRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [{"channel": "email"}, {}]})

    channel: Channel | None = Field(default=None, description="null or absent: all sending")


class PauseInfo(BaseModel):
    channel: Channel | None = Field(description="null: all sending")
    paused_at: dt.datetime
    by: str


class Pauses(BaseModel):
    paused: list[PauseInfo] = Field(description="every pause in force after the request")
