"""The stop switch over the API: cancel, pause and resume do what the commands do, and the
ledger names the token that did it — SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.campaign.model import Channel
from dispatcher.delivery import controls
from dispatcher.ledger import controls as ledger_controls
from dispatcher.ledger import store
from dispatcher.ledger.tables import DispatchState
from dispatcher.web.api.problems import type_uri
from tests.support.api import Api, issue_token, problem
from tests.support.database import Database
from tests.support.delivery import email_time
from tests.support.ledger import add_subscribers, delivery_states, tick_at
from tests.support.smtpd import SmtpServer
from tests.support.webapp import START, WebApp, serve_webapp

DAY_1 = dt.date(2019, 4, 2)


@pytest.fixture
def app(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    yield from serve_webapp(database, smtp_server, tmp_path)


@pytest.fixture
def api(app: WebApp) -> Api:
    return Api(app.url, issue_token(app.database, "dispatch:control", name="ops-tool"))


def _running(app: WebApp, subscribers: int) -> int:
    """A running email dispatch with a pending delivery per subscriber; its id."""
    add_subscribers(app.database, subscribers)
    with app.database.engine.begin() as connection:
        dispatch = store.ensure_dispatch(
            connection, campaign_id=app.campaign.id, day=DAY_1, channel="email",
            item_id="a", content_hash="h", content="{}", send_at=START,
            state=DispatchState.RUNNING, now=START,
        )  # fmt: skip
        store.fan_out_subscribers(
            connection, dispatch, limit=subscribers, key_prefix="<k.", key_suffix="@x>", now=START
        )
    return dispatch.id


def test_cancel_stops_a_running_dispatch_and_records_the_token(app: WebApp, api: Api) -> None:
    dispatch_id = _running(app, 4)
    answer = api.post(f"/dispatches/{dispatch_id}/cancel", {"reason": "falscher Link"})
    assert answer.status_code == 200
    assert answer.json() == {
        "dispatch_id": dispatch_id,
        "state": "cancelled",
        "cancelled": 4,
        "sent": 0,
        "already": False,
    }
    assert delivery_states(app.database) == {"cancelled": 4}
    with app.database.engine.connect() as connection:
        record = ledger_controls.cancellations(connection, app.campaign.id)[dispatch_id]
    assert (record.by, record.reason, record.at) == ("api:ops-tool", "falscher Link", START)
    again = api.post(f"/dispatches/{dispatch_id}/cancel")  # no body: no reason
    assert again.status_code == 200 and again.json()["already"] is True


def test_cancel_refuses_unknown_and_finished_dispatches(
    app: WebApp, api: Api, smtp_server: SmtpServer
) -> None:
    body = problem(api.post("/dispatches/999/cancel", {}), 404)
    assert body["type"] == type_uri("unknown-dispatch")
    problem(api.post(f"/dispatches/{2**31}/cancel", {}), 404)  # beyond any id: no lookup
    add_subscribers(app.database, 2)
    tick_at(app.settings, app.database, email_time(DAY_1))
    with app.database.engine.connect() as connection:
        [done] = store.list_dispatches(connection, app.campaign.id)
    finished = problem(api.post(f"/dispatches/{done.id}/cancel", {}), 409)
    assert finished["type"] == type_uri("dispatch-finished")
    assert delivery_states(app.database) == {"sent": 2}


def test_pause_and_resume_hold_a_channel_or_all_sending(app: WebApp, api: Api) -> None:
    paused = api.post("/pause", {"channel": "email"})
    assert paused.status_code == 200
    assert paused.json() == {
        "paused": [{"channel": "email", "paused_at": "2019-04-01T10:00:00Z", "by": "api:ops-tool"}]
    }
    everything = api.post("/pause").json()["paused"]  # no body: all sending
    assert [p["channel"] for p in everything] == [None, "email"]
    with app.database.engine.connect() as connection:
        in_force = controls.pauses(connection)
    assert [(p.channel, p.by) for p in in_force] == [
        (None, "api:ops-tool"),
        (Channel.EMAIL, "api:ops-tool"),
    ]
    assert api.post("/resume", {"channel": None}).json()["paused"][0]["channel"] == "email"
    assert api.post("/resume", {"channel": "email"}).json() == {"paused": []}
    assert api.post("/resume", {}).json() == {"paused": []}  # idempotent
