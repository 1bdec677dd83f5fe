"""Subscribers over the API: a sign-up is double opt-in exactly as the form's, look-up,
unsubscribe and erase — real HTTP, a real SMTP server, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests

from dispatcher.ledger import subscribers as ledger
from dispatcher.web.api.problems import type_uri
from dispatcher.web.subscription import confirmation_subject
from tests.support.api import Api, confirm_path, issue_token, problem, sign_up, subscribers_api
from tests.support.database import Database
from tests.support.ledger import add_subscribers
from tests.support.smtpd import SmtpServer
from tests.support.webapp import START, WebApp, serve_webapp, subscriber_row

NEW = "neu@example.org"
READER = "leser00000@example.org"


@pytest.fixture
def app(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    yield from serve_webapp(database, smtp_server, tmp_path)


@pytest.fixture
def api(app: WebApp) -> Api:
    return subscribers_api(app)


def _mails(smtp: SmtpServer, address: str) -> list[EmailMessage]:
    return [r.message for r in smtp.received if r.rcpt_tos == [address]]


def test_a_sign_up_sends_the_confirmation_mail_and_stays_pending_until_clicked(
    app: WebApp, api: Api, smtp_server: SmtpServer
) -> None:
    answer = sign_up(
        app, api, {"email": " Neu@Example.org", "name": "Erika Neu", "source": "artikel/kita"}
    )
    assert answer.status_code == 202 and answer.headers["content-type"] == "application/json"
    assert answer.json()["email"] == NEW and answer.json()["status"] == "accepted"
    [mail] = _mails(smtp_server, NEW)
    assert str(mail["Subject"]) == confirmation_subject(app.campaign.name)
    assert mail["To"] == "Erika Neu <neu@example.org>"
    pending = subscriber_row(app, NEW)
    assert (pending.state, pending.name, pending.consent_at) == ("pending", "Erika Neu", START)
    assert pending.consent_source == "api:cms; artikel/kita"
    assert pending.source == "api"  # the row says where it came from, as the consent does
    assert pending.consent_ip is None and pending.consent_text == app.settings.consent_text
    looked_up = api.get(f"/subscribers/{NEW}").json()
    assert (
        looked_up["state"] == "pending"
        and looked_up["consent"]["source"] == "api:cms; artikel/kita"
    )

    confirmed = requests.get(app.url + confirm_path(mail), timeout=10)
    assert confirmed.status_code == 200
    assert subscriber_row(app, NEW).state == "active"
    assert api.get(f"/subscribers/{NEW}").json()["state"] == "active"


def test_an_active_address_gets_the_same_answer_and_no_mail(
    app: WebApp, api: Api, smtp_server: SmtpServer
) -> None:
    add_subscribers(app.database, 1, named=True)
    before = subscriber_row(app, READER)
    new = sign_up(app, api, {"email": "someone.else@example.org"})
    again = sign_up(app, api, {"email": READER, "name": "Jemand Anders"})
    assert again.status_code == new.status_code == 202
    assert {**again.json(), "email": None} == {**new.json(), "email": None}
    assert _mails(smtp_server, READER) == []
    assert subscriber_row(app, READER) == before  # a request changes nothing about them


def test_a_second_request_within_the_hour_sends_no_second_mail(
    app: WebApp, api: Api, smtp_server: SmtpServer
) -> None:
    assert sign_up(app, api, {"email": NEW}).status_code == 202
    app.clock.advance(minutes=20)
    assert sign_up(app, api, {"email": NEW}).status_code == 202
    assert len(_mails(smtp_server, NEW)) == 1


@pytest.mark.parametrize(
    ("body", "pointers"),
    [
        ({"email": "not-an-address"}, ["/email"]),
        ({"email": "neu@example.org", "name": "x" * 201}, ["/name"]),
        ({"email": "a\x00b@example.org", "source": "web\x07"}, ["/email", "/source"]),
        ({"name": "Erika"}, ["/email"]),
        ({"email": "neu@example.org", "consent": True}, ["/consent"]),
        ([{"email": "neu@example.org"}], [""]),  # "": the whole body (RFC 6901)
    ],
)
def test_an_invalid_sign_up_names_each_wrong_field_and_sends_nothing(
    app: WebApp, api: Api, smtp_server: SmtpServer, body: object, pointers: list[str]
) -> None:
    answer = api.post("/subscribers", body)
    found = problem(answer, 422)
    assert found["type"] == type_uri("invalid-body")
    assert [e["pointer"] for e in found["errors"]] == pointers
    assert app.state.background.join() and smtp_server.received == []


def test_look_up_shows_state_and_consent_record(app: WebApp, api: Api) -> None:
    add_subscribers(app.database, 1, named=True)
    body = api.get("/subscribers/Leser00000@Example.org").json()
    assert body["email"] == READER and body["name"] == "Leserin 0" and body["state"] == "active"
    assert set(body["consent"]) == {
        "at", "source", "ip", "text", "lang", "lang_changed_at", "lang_changed_by",
    }  # fmt: skip
    assert problem(api.get("/subscribers/nobody@example.org"), 404)["type"] == type_uri(
        "unknown-subscriber"
    )
    assert problem(api.get("/subscribers/no-address"), 400)["type"] == type_uri("invalid-address")


def test_unsubscribe_is_idempotent(app: WebApp, api: Api) -> None:
    add_subscribers(app.database, 1)
    first = api.post(f"/subscribers/{READER}/unsubscribe")
    assert first.status_code == 200
    assert first.json() == {"email": READER, "state": "unsubscribed", "changed": True}
    again = api.post(f"/subscribers/{READER}/unsubscribe")
    assert again.json() == {"email": READER, "state": "unsubscribed", "changed": False}
    row = subscriber_row(app, READER)
    assert row.state == "unsubscribed" and row.unsubscribed_at == START
    problem(api.post("/subscribers/nobody@example.org/unsubscribe"), 404)


def test_erase_deletes_the_persons_data_and_the_address_is_unknown_after(
    app: WebApp, api: Api
) -> None:
    add_subscribers(app.database, 2, named=True)
    before = subscriber_row(app, READER)
    answer = api.delete(f"/subscribers/{READER}")
    assert answer.status_code == 204 and answer.content == b""
    with app.database.engine.connect() as connection:
        row = ledger.get_by_id(connection, before.id)
        assert ledger.get(connection, READER) is None
    assert row is not None and row.erased and row.name is None and READER not in row.email
    assert row.consent_source is None and row.state == "unsubscribed"
    problem(api.get(f"/subscribers/{READER}"), 404)
    problem(api.delete(f"/subscribers/{READER}"), 404)
    assert api.get("/subscribers/leser00001@example.org").json()["name"] == "Leserin 1"


def test_reading_needs_read_and_changing_needs_write(app: WebApp) -> None:
    add_subscribers(app.database, 1)
    reader = Api(app.url, issue_token(app.database, "subscribers:read", name="helpdesk"))
    writer = Api(app.url, issue_token(app.database, "subscribers:write", name="cms"))
    assert reader.get(f"/subscribers/{READER}").status_code == 200
    problem(writer.get(f"/subscribers/{READER}"), 403)
    refused = [
        reader.post("/subscribers", {"email": NEW}),
        reader.post(f"/subscribers/{READER}/unsubscribe"),
        reader.delete(f"/subscribers/{READER}"),
    ]
    assert [problem(answer, 403)["scope"] for answer in refused] == ["subscribers:write"] * 3
    assert subscriber_row(app, READER).state == "active"
