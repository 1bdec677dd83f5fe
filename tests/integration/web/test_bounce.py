"""`POST /webhooks/bounce` over real HTTP, on SQLite and PostgreSQL.

A provider's webhook (or a script reading the bounce mailbox) reports hard bounces,
soft bounces and complaints; the ledger suppresses the address when it must.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dispatcher.ledger import subscribers as ledger
from dispatcher.web import bounce as bounce_routes
from tests.support.bounce import TOKEN, bounce_settings, make_state, serve
from tests.support.database import Database
from tests.support.ledger import add_subscribers
from tests.support.smtpd import SmtpServer
from tests.support.webapp import ManualClock

READER = "leser00000@example.org"


@pytest.fixture
def hook(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[str]:
    settings = bounce_settings(
        database, smtp_server, tmp_path, bounce_webhook_token=TOKEN, soft_bounce_limit=3
    )
    with serve(make_state(settings, database, ManualClock())) as url:
        yield url + bounce_routes.PATH


def _post(url: str, body: Any, token: str | None = TOKEN, **kwargs: Any) -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return requests.post(url, json=body, headers=headers, timeout=10, **kwargs)


def _row(database: Database, address: str = READER) -> ledger.SubscriberRow:
    with database.engine.connect() as conn:
        row = ledger.get(conn, address)
    assert row is not None
    return row


def test_hard_bounce_suppresses_at_once(hook: str, database: Database) -> None:
    add_subscribers(database, 2)
    response = _post(hook, {"email": READER, "kind": "hard", "reason": "550 5.1.1 no such user"})
    assert response.status_code == 200, response.text
    assert response.json()["bounced"] == 1 and response.json()["unknown"] == 0
    row = _row(database)
    assert row.state == "bounced" and row.last_error == "hard bounce: 550 5.1.1 no such user"
    assert _row(database, "leser00001@example.org").state == "active"


def test_complaint_suppresses_and_is_recorded_as_complaint(hook: str, database: Database) -> None:
    add_subscribers(database, 1)
    response = _post(hook, [{"email": READER.upper(), "kind": "complaint", "reason": "abuse"}])
    assert response.status_code == 200 and response.json()["complained"] == 1
    row = _row(database)
    assert row.state == "bounced" and row.last_error == "complaint: abuse"


def test_soft_bounces_suppress_at_the_limit(hook: str, database: Database) -> None:
    add_subscribers(database, 1)
    soft = {"email": READER, "kind": "soft", "reason": "452 4.2.2 mailbox full"}
    for expected in (1, 2):
        assert _post(hook, soft).json()["soft"] == 1
        row = _row(database)
        assert row.state == "active" and row.soft_bounces == expected
        assert row.last_error == f"soft bounce {expected}/3: 452 4.2.2 mailbox full"
    assert _post(hook, soft).json()["suppressed"] == 1
    assert _row(database).state == "bounced"
    assert _post(hook, soft).json()["unchanged"] == 1  # nothing more to do


def test_a_delivery_that_went_through_resets_the_soft_count(database: Database) -> None:
    add_subscribers(database, 1)
    now = dt.datetime(2019, 4, 2, tzinfo=dt.UTC)
    reader_id = _row(database).id
    with database.engine.begin() as conn:
        for _ in range(2):
            ledger.record_bounce(conn, READER, "soft", "full", limit=3, now=now)
        assert ledger.reset_soft_bounces(conn, [reader_id]) == 1
        assert ledger.record_bounce(conn, READER, "soft", "full", limit=3, now=now) == "soft"
    assert _row(database).soft_bounces == 1


def test_unknown_addresses_are_counted_not_refused(hook: str, database: Database) -> None:
    add_subscribers(database, 1)
    events = [
        {"email": "niemand@example.org", "kind": "hard"},
        {"email": "auch.niemand@example.org", "kind": "soft", "reason": None},
        {"email": READER, "kind": "soft"},
    ]
    response = _post(hook, events)
    assert response.status_code == 200
    assert response.json() == {
        "received": 3, "bounced": 0, "complained": 0, "soft": 1, "suppressed": 0,
        "unchanged": 0, "unknown": 2,
    }  # fmt: skip


def test_someone_who_unsubscribed_stays_unsubscribed(hook: str, database: Database) -> None:
    add_subscribers(database, 1)
    with database.engine.begin() as conn:
        ledger.remove(conn, READER, now=dt.datetime(2019, 4, 1, tzinfo=dt.UTC))
    assert _post(hook, {"email": READER, "kind": "complaint"}).json()["unchanged"] == 1
    assert _row(database).state == "unsubscribed"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"bearer {TOKEN}x", "Bearer ü"],
)
def test_without_the_right_token_401_and_nothing_changes(
    hook: str, database: Database, header: str | None
) -> None:
    add_subscribers(database, 1)
    headers = {} if header is None else {"Authorization": header.encode().decode("latin-1")}
    response = requests.post(
        hook, json={"email": READER, "kind": "hard"}, headers=headers, timeout=10
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text
    assert _row(database).state == "active"


def test_the_scheme_is_case_insensitive(hook: str, database: Database) -> None:
    add_subscribers(database, 1)
    response = requests.post(
        hook,
        json={"email": READER, "kind": "hard"},
        headers={"Authorization": f"bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b"[]", "empty"),
        (b'"hard"', "body: expected an object"),
        (b'{"kind": "hard"}', "email: required"),
        (b'{"email": "kein-at", "kind": "hard"}', "email: not a valid email address"),
        (b'{"email": "a@example.org", "kind": "HARD!"}', "kind: must be one of"),
        (b'{"email": "a@example.org", "kind": "soft", "reason": 5}', "reason: must be a string"),
        (b'[{"email": "a@example.org", "kind": "soft"}, 3]', "[1]: expected an object"),
    ],
)
def test_malformed_bodies_get_400_with_a_message(
    hook: str, database: Database, body: bytes, fragment: str
) -> None:
    add_subscribers(database, 1)
    response = requests.post(
        hook,
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


def test_one_bad_entry_records_nothing_of_the_request(hook: str, database: Database) -> None:
    add_subscribers(database, 1)
    response = _post(hook, [{"email": READER, "kind": "hard"}, {"email": READER, "kind": "x"}])
    assert response.status_code == 400 and response.json()["error"].startswith("[1]kind")
    assert _row(database).state == "active"


def test_oversized_requests_get_413(hook: str) -> None:
    events = [{"email": f"a{i}@example.org", "kind": "soft"} for i in range(1001)]
    assert _post(hook, events).status_code == 413
    big = b'{"email": "a@example.org", "kind": "soft", "reason": "' + b"x" * (1 << 20) + b'"}'
    response = requests.post(
        hook, data=big, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    assert response.status_code == 413


def test_without_a_token_setting_the_endpoint_does_not_exist(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = bounce_settings(database, smtp_server, tmp_path)
    with serve(make_state(settings, database, ManualClock())) as url:
        response = _post(url + bounce_routes.PATH, {"email": READER, "kind": "hard"}, token="")
    assert response.status_code == 404


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    # The route calls it through the hmac module, so patching the module is seen there.
    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert bounce_routes.token_matches(TOKEN, TOKEN)
    assert not bounce_routes.token_matches("ü" + TOKEN, TOKEN)  # non-ASCII: no TypeError
    assert calls == [(TOKEN.encode(), TOKEN.encode()), (("ü" + TOKEN).encode(), TOKEN.encode())]
