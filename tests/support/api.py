"""The HTTP API for tests: tokens issued in the test's ledger, and a small client.

`issue_token(database, *scopes)` makes a token as `dispatcher tokens create` does and returns
the secret; `Api(url, token)` sends JSON to `/api/v1/…` with it, over real HTTP to the app
that `tests.support.webapp` serves on a loopback port.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import requests

from dispatcher.ledger import tokens
from tests.support.database import Database
from tests.support.webapp import WebApp

ALL_SCOPES = tokens.SCOPES
PROBLEM = "application/problem+json"


def issue_token(
    database: Database, *scopes: str, name: str = "cms", now: dt.datetime | None = None
) -> str:
    """A new token with `scopes` (all of them when none are named); the secret."""
    with database.engine.begin() as connection:
        _, secret = tokens.create(
            connection, name, scopes or ALL_SCOPES, now=now or dt.datetime.now(dt.UTC)
        )
    return secret


@dataclass(frozen=True)
class Api:
    url: str  #: the app's base URL, without /api/v1
    token: str | None

    def headers(self) -> dict[str, str]:
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        """`method` on /api/v1`path`, with `body` as JSON when given."""
        return requests.request(
            method,
            f"{self.url}/api/v1{path}",
            json=body,
            headers={**self.headers(), **kwargs.pop("headers", {})},
            timeout=10,
            allow_redirects=False,
            **kwargs,
        )

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("DELETE", path, **kwargs)


def problem(response: requests.Response, status: int) -> dict[str, Any]:
    """The RFC 9457 body of `response`, after checking status, media type and members."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM, response.headers["content-type"]
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["title"] and body["detail"], body
    return body


def subscribers_api(app: WebApp) -> Api:
    """A client of `app` with a token that may read and write subscribers."""
    return Api(app.url, issue_token(app.database, "subscribers:read", "subscribers:write"))


def sign_up(app: WebApp, api: Api, body: dict[str, object]) -> requests.Response:
    """`POST /subscribers`, and the ledger work and confirmation mail that follow the answer."""
    answer = api.post("/subscribers", body)
    assert app.state.background.join()
    return answer


def confirm_path(message: EmailMessage) -> str:
    """The path of the one `/confirm/…` link in a confirmation mail's plain text."""
    text = message.get_body(("plain",))
    assert text is not None
    links: list[str] = re.findall(r"https?://\S+/confirm/\S+", text.get_content())
    assert len(links) == 1, text.get_content()
    return urlsplit(links[0]).path
