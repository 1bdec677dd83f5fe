"""The plan and the status over the API say what `dispatcher plan --json` and `status --json`
say for the same ledger and instant — also after a send, a cancel and a pause."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher.campaign.model import Channel
from dispatcher.cli import main as cli
from dispatcher.cli.ops import status_rows
from dispatcher.delivery import controls
from tests.support.api import Api, issue_token
from tests.support.database import Database
from tests.support.delivery import email_time
from tests.support.ledger import add_subscribers, tick_at
from tests.support.smtpd import SmtpServer
from tests.support.webapp import WebApp, serve_webapp

DAY_1 = dt.date(2019, 4, 2)


@pytest.fixture
def app(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    yield from serve_webapp(database, smtp_server, tmp_path)


def _same_instants(value: Any) -> Any:
    """`value` with every ISO-8601 string read as what it means: `Z` and `+00:00`, or
    `+02:00` local and UTC, are the same instant written twice."""
    if isinstance(value, dict):
        return {key: _same_instants(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_same_instants(item) for item in value]
    if isinstance(value, str) and len(value) > 10:
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _plan_cli(app: WebApp, at: dt.datetime, capsys: pytest.CaptureFixture[str]) -> Any:
    argv = ["--campaign", str(app.settings.campaign_file), "plan", "--json", "--at", at.isoformat()]
    capsys.readouterr()
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_is_the_plan_command_for_the_same_ledger(
    app: WebApp,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DISPATCHER_DATABASE_URL", app.database.url)
    add_subscribers(app.database, 3)
    sent_at = email_time(DAY_1)
    tick_at(app.settings, app.database, sent_at)
    app.clock.now = sent_at + dt.timedelta(hours=1)
    answer = Api(app.url, issue_token(app.database, "plan:read")).get("/plan")
    assert answer.status_code == 200
    plan = answer.json()
    assert _same_instants(plan["rows"]) == _same_instants(_plan_cli(app, app.clock.now, capsys))
    assert plan["campaign"] == {
        "id": app.campaign.id,
        "name": app.campaign.name,
        "timezone": app.campaign.timezone,
    }
    first = next(row for row in plan["rows"] if row["date"] == DAY_1.isoformat())
    assert first["state"] == "sent"  # from the ledger, not the file
    upcoming = dt.datetime.fromisoformat(plan["next_send"]["email"])
    assert upcoming > app.clock.now and upcoming.date() == DAY_1 + dt.timedelta(days=1)


def test_status_is_the_status_command_for_the_same_ledger(app: WebApp) -> None:
    add_subscribers(app.database, 3)
    tick_at(app.settings, app.database, email_time(DAY_1))
    app.clock.now = email_time(DAY_1 + dt.timedelta(days=1)) - dt.timedelta(hours=2)
    by = "api:ops"
    controls.pause(app.database.engine, Channel.EMAIL, by=by, now=app.clock.now)
    api = Api(app.url, issue_token(app.database, "plan:read", name="ops"))
    answer = api.get("/status")
    assert answer.status_code == 200
    status = answer.json()
    expected = json.loads(json.dumps(status_rows(app.settings, app.campaign, app.clock.now)))
    assert _same_instants(status) == _same_instants(expected)
    [dispatch] = status["dispatches"]
    assert dispatch["state"] == "done" and dispatch["counts"] == {"sent": 3}
    assert status["paused"]["email"]["by"] == by
    assert status["subscribers"]["active"] == 3
