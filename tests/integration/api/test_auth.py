"""Who may call the API: bearer tokens, scopes, revocation, the rate limit, and the problem
details every refusal comes as — over real HTTP, on SQLite and PostgreSQL (`database`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dispatcher.ledger import tokens
from dispatcher.web.api import PER_MINUTE
from dispatcher.web.api.problems import type_uri
from tests.support.api import Api, issue_token, problem
from tests.support.database import Database
from tests.support.smtpd import SmtpServer
from tests.support.webapp import START, WebApp, serve_webapp


@pytest.fixture
def app(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    yield from serve_webapp(database, smtp_server, tmp_path)


def test_no_token_is_401_with_a_bearer_challenge(app: WebApp) -> None:
    answer = Api(app.url, None).get("/plan")
    body = problem(answer, 401)
    assert answer.headers["www-authenticate"] == 'Bearer realm="dispatcher-api"'
    assert body["type"] == type_uri("invalid-token")
    assert "Authorization: Bearer" in body["detail"]
    basic = requests.get(
        f"{app.url}/api/v1/plan", headers={"Authorization": "Basic dXNlcjpwdw=="}, timeout=10
    )
    problem(basic, 401)


def test_a_wrong_token_is_401_invalid_token_and_not_echoed(app: WebApp) -> None:
    issue_token(app.database)
    guess = "cwd_" + "A" * 43
    answer = Api(app.url, guess).get("/plan")
    body = problem(answer, 401)
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert guess not in answer.text and body["type"] == type_uri("invalid-token")
    problem(Api(app.url, "x" * 5000).get("/plan"), 401)  # refused without a lookup


def test_a_revoked_token_stops_working_at_once(app: WebApp) -> None:
    secret = issue_token(app.database, "plan:read")
    api = Api(app.url, secret)
    assert api.get("/plan").status_code == 200
    with app.database.engine.begin() as connection:
        [row] = tokens.all_tokens(connection)
        tokens.revoke(connection, row.id, now=START)
    problem(api.get("/plan"), 401)


def test_a_missing_scope_is_403_naming_the_scope(app: WebApp) -> None:
    api = Api(app.url, issue_token(app.database, "plan:read"))
    answer = api.post("/pause", {})
    body = problem(answer, 403)
    assert body["type"] == type_uri("missing-scope") and body["scope"] == "dispatch:control"
    assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]
    assert 'scope="dispatch:control"' in answer.headers["www-authenticate"]
    problem(api.get("/subscribers/leser@example.org"), 403)
    problem(api.post("/subscribers", {"email": "neu@example.org"}), 403)
    assert api.get("/status").status_code == 200


def test_the_rate_limit_is_per_token_and_says_when_to_come_back(app: WebApp) -> None:
    first = Api(app.url, issue_token(app.database, "plan:read", name="cms"))
    second = Api(app.url, issue_token(app.database, "plan:read", name="helpdesk"))
    for _ in range(PER_MINUTE):  # the test's clock stands still: all in one instant
        assert first.get("/status").status_code == 200
    refused = first.get("/status")
    body = problem(refused, 429)
    assert body["type"] == type_uri("rate-limited") and refused.headers["retry-after"] == "60"
    problem(first.post("/pause", {}), 429)  # counted before the scope: no free probing
    assert second.get("/status").status_code == 200  # another token has its own minute
    app.clock.advance(seconds=60)
    assert first.get("/status").status_code == 200


def test_use_is_recorded_to_the_minute(app: WebApp) -> None:
    api = Api(app.url, issue_token(app.database, "plan:read"))

    def last_used() -> dt.datetime | None:
        with app.database.engine.connect() as connection:
            return tokens.all_tokens(connection)[0].last_used_at

    assert last_used() is None
    api.get("/plan")
    assert last_used() == START
    app.clock.advance(seconds=30)
    api.get("/plan")
    assert last_used() == START  # not a write per request
    app.clock.advance(seconds=31)
    api.get("/plan")
    assert last_used() == START + dt.timedelta(seconds=61)


def test_unknown_paths_and_methods_are_problems_too(app: WebApp) -> None:
    api = Api(app.url, issue_token(app.database))
    missing = problem(api.get("/nothing-here"), 404)
    assert missing["type"] == "about:blank" and missing["title"] == "Not Found"
    wrong = api.call("PUT", "/plan")
    problem(wrong, 405)
    assert set(wrong.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
    several = api.call("PUT", "/subscribers/leser@example.org")
    problem(several, 405)
    assert set(several.headers["allow"].replace(" ", "").split(",")) == {
        "GET", "HEAD", "PATCH", "DELETE",
    }  # fmt: skip


def test_bodies_must_be_json_of_the_documented_shape(app: WebApp) -> None:
    api = Api(app.url, issue_token(app.database))
    form = api.post("/pause", data="channel=email", headers={"Content-Type": "text/plain"})
    problem(form, 415)
    broken = api.post("/pause", data=b"{nope", headers={"Content-Type": "application/json"})
    assert problem(broken, 400)["type"] == type_uri("not-json")
    unknown = problem(api.post("/pause", {"chanel": "email"}), 422)
    assert unknown["type"] == type_uri("invalid-body")
    assert [e["pointer"] for e in unknown["errors"]] == ["/chanel"]
    wrong = problem(api.post("/pause", {"channel": "fax"}), 422)
    assert [e["pointer"] for e in wrong["errors"]] == ["/channel"]
    huge = api.post(
        "/subscribers", data=b" " * 70_000, headers={"Content-Type": "application/json"}
    )
    problem(huge, 413)
