"""API tokens in the ledger and `dispatcher tokens create|list|revoke`: shown once, stored
as a hash only, revocable — on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
import sqlalchemy as sa

from dispatcher.cli import main as cli
from dispatcher.ledger import tokens
from tests.support.database import Database

T0 = dt.datetime(2019, 4, 1, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def ledger(database: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("DISPATCHER_DATABASE_URL", database.url)
    return database


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["tokens", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _stored(database: Database) -> list[dict[str, object]]:
    with database.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(tokens.api_tokens))]


def test_create_prints_the_token_once_and_stores_only_its_hash(
    ledger: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys, "create", "--name", "cms", "--scope", "subscribers:write", "--scope", "plan:read"
    )
    assert code == 0
    secret = out.strip()
    assert secret.startswith("cwd_") and len(secret) > 40 and "\n" not in secret
    assert "shown only now" in err and "subscribers:write plan:read" in err
    [row] = _stored(ledger)
    assert row["token_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(row)
    code, listed, _ = _run(capsys, "list", "--json")
    assert code == 0 and secret not in listed
    [entry] = json.loads(listed)
    assert entry["name"] == "cms" and entry["scopes"] == ["subscribers:write", "plan:read"]
    assert entry["last_used_at"] is None and entry["revoked_at"] is None
    with ledger.engine.begin() as connection:
        found = tokens.authenticate(connection, secret)
    assert found is not None and found.allows("plan:read") and not found.allows("dispatch:control")


def test_revoke_ends_the_token_and_says_so_once(
    ledger: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = _run(capsys, "create", "--name", "helpdesk", "--scope", "subscribers:read")
    secret = out.strip()
    [row] = _stored(ledger)
    code, out, _ = _run(capsys, "revoke", str(row["id"]))
    assert code == 0 and "revoked token" in out
    with ledger.engine.begin() as connection:
        assert tokens.authenticate(connection, secret) is None
    code, out, _ = _run(capsys, "revoke", str(row["id"]))
    assert code == 0 and "already revoked" in out
    code, _, err = _run(capsys, "revoke", "999")
    assert code == 1 and "no API token with id 999" in err
    code, out, _ = _run(capsys, "list")
    assert "helpdesk" in out and "revoked" in out and "never used" in out


def test_a_scope_must_be_known_and_a_name_given(
    ledger: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as usage:
        cli.main(["tokens", "create", "--name", "cms", "--scope", "subscribers:delete"])
    assert usage.value.code == 2
    code, _, err = _run(capsys, "create", "--name", "   ", "--scope", "plan:read")
    assert code == 1 and "name" in err
    assert _stored(ledger) == []
    code, out, _ = _run(capsys, "list")
    assert code == 0 and "no API tokens yet" in out
