"""Readers' languages over the API: a sign-up carries one, a look-up shows it with the
consent record, `PATCH /subscribers/{email}` changes it; a language the campaign does not
offer is a 422 problem naming the ones it does. Real HTTP, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dispatcher.ledger import subscribers as ledger
from dispatcher.web.api.problems import type_uri
from tests.support.api import Api, confirm_path, issue_token, problem, sign_up, subscribers_api
from tests.support.database import Database
from tests.support.smtpd import SmtpServer
from tests.support.webapp import START, WebApp, serve_webapp, subscriber_row

NEW = "neu@example.org"
OFFERED = 'the campaign offers de, en, not "fr"; null: its default (de)'


@pytest.fixture
def app(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    yield from serve_webapp(database, smtp_server, tmp_path)


@pytest.fixture
def api(app: WebApp) -> Api:
    assert app.campaign.locales == ("de", "en"), "the test campaign offers German and English"
    return subscribers_api(app)


def _confirm_path(smtp: SmtpServer, address: str) -> str:
    return confirm_path([r.message for r in smtp.received if r.rcpt_tos == [address]][-1])


def _add(app: WebApp, address: str, *, lang: str | None = None) -> int:
    with app.database.engine.begin() as connection:
        subscriber_id, _ = ledger.add(connection, address, source="test", now=START, lang=lang)
    return subscriber_id


def test_a_sign_up_in_english_is_kept_with_the_consent(
    app: WebApp, api: Api, smtp_server: SmtpServer
) -> None:
    answer = sign_up(app, api, {"email": NEW, "name": "Emma Walsh", "lang": "en"})
    assert answer.status_code == 202, answer.text
    pending = subscriber_row(app, NEW)
    assert (pending.state, pending.lang, pending.consent_lang) == ("pending", "en", "en")
    looked_up = api.get(f"/subscribers/{NEW}").json()
    assert looked_up["lang"] == "en" and looked_up["consent"]["lang"] == "en"
    assert looked_up["consent"]["lang_changed_at"] is None

    assert requests.get(app.url + _confirm_path(smtp_server, NEW), timeout=10).status_code == 200
    confirmed = api.get(f"/subscribers/{NEW}").json()
    assert (confirmed["state"], confirmed["lang"]) == ("active", "en")


def test_a_sign_up_without_a_language_gets_the_default(app: WebApp, api: Api) -> None:
    assert sign_up(app, api, {"email": NEW}).status_code == 202
    looked_up = api.get(f"/subscribers/{NEW}").json()
    assert looked_up["lang"] is None and looked_up["consent"]["lang"] is None


def test_a_sign_up_in_a_language_the_campaign_does_not_offer_is_refused(
    app: WebApp, api: Api, smtp_server: SmtpServer
) -> None:
    body = problem(sign_up(app, api, {"email": NEW, "lang": "fr"}), 422)
    assert body["type"] == type_uri("invalid-body")
    assert body["errors"] == [{"pointer": "/lang", "detail": OFFERED}]
    assert smtp_server.received == []
    assert problem(api.get(f"/subscribers/{NEW}"), 404)["status"] == 404


def test_a_sign_up_for_a_subscriber_changes_their_language_only_by_the_link(
    app: WebApp, api: Api, smtp_server: SmtpServer
) -> None:
    subscriber_id = _add(app, NEW, lang="de")
    with app.database.engine.begin() as connection:
        ledger.unsubscribe(connection, subscriber_id, now=START)
    assert sign_up(app, api, {"email": NEW, "lang": "en"}).status_code == 202
    assert api.get(f"/subscribers/{NEW}").json()["lang"] == "de"  # anyone can send an address

    assert requests.get(app.url + _confirm_path(smtp_server, NEW), timeout=10).status_code == 200
    back = api.get(f"/subscribers/{NEW}").json()
    assert (back["state"], back["lang"], back["consent"]["lang"]) == ("active", "en", "en")
    assert back["consent"]["lang_changed_by"] == "reader"


def test_patch_changes_the_language_and_records_who(app: WebApp, api: Api) -> None:
    _add(app, NEW)
    changed = api.call("PATCH", f"/subscribers/{NEW}", {"lang": "en"})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["email"] == NEW and body["lang"] == "en"
    assert body["consent"]["lang_changed_by"] == "api:cms"
    assert body["consent"]["lang_changed_at"] is not None
    assert api.get(f"/subscribers/{NEW}").json() == body
    assert subscriber_row(app, NEW).lang == "en"

    default = api.call("PATCH", f"/subscribers/{NEW.upper()}", {"lang": None})
    assert default.status_code == 200 and default.json()["lang"] is None
    assert subscriber_row(app, NEW).lang is None


def test_patch_refuses_what_it_cannot_apply(app: WebApp, api: Api) -> None:
    _add(app, NEW, lang="de")
    offered = problem(api.call("PATCH", f"/subscribers/{NEW}", {"lang": "fr"}), 422)
    assert offered["errors"] == [{"pointer": "/lang", "detail": OFFERED}]
    missing = problem(api.call("PATCH", f"/subscribers/{NEW}", {}), 422)
    assert [error["pointer"] for error in missing["errors"]] == ["/lang"]
    unknown = problem(api.call("PATCH", "/subscribers/niemand@example.org", {"lang": "en"}), 404)
    assert unknown["type"] == type_uri("unknown-subscriber")
    assert subscriber_row(app, NEW).lang == "de"


def test_patch_of_an_erased_subscriber_is_unknown(app: WebApp, api: Api) -> None:
    _add(app, NEW, lang="en")
    assert api.delete(f"/subscribers/{NEW}").status_code == 204
    assert problem(api.call("PATCH", f"/subscribers/{NEW}", {"lang": "de"}), 404)["status"] == 404


def test_patch_needs_the_write_scope(app: WebApp) -> None:
    _add(app, NEW)
    reading = Api(app.url, issue_token(app.database, "subscribers:read", name="helpdesk"))
    refused = problem(reading.call("PATCH", f"/subscribers/{NEW}", {"lang": "en"}), 403)
    assert refused["scope"] == "subscribers:write"
    assert subscriber_row(app, NEW).lang is None
