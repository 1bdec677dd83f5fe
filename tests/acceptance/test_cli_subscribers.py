"""`dispatcher subscribers …` as an operator runs it, against a fresh SQLite ledger."""

from __future__ import annotations

import csv
import datetime as dt
import io
import subprocess
from pathlib import Path

import pytest

from dispatcher.ledger import subscribers as ledger
from dispatcher.ledger.subscriber_csv import Row
from dispatcher.ledger.tables import subscribers
from tests.support import processes
from tests.support.database import Database


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'ledger.sqlite3'}"


def run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return processes.run({"DISPATCHER_DATABASE_URL": url}, "subscribers", *args)


def test_add_again_and_invalid(ledger_url: str) -> None:
    added = run(ledger_url, "add", "Erika@Example.ORG", "--name", "Erika Mustermann")
    assert (added.returncode, added.stdout) == (0, "added erika@example.org (active)\n"), (
        added.stderr
    )
    again = run(ledger_url, "add", "erika@example.org")
    assert (again.returncode, again.stdout) == (
        0,
        "already subscribed: erika@example.org (active)\n",
    )
    pending = run(ledger_url, "add", "max@example.org", "--pending")
    assert pending.stdout == "added max@example.org (pending)\n"
    invalid = run(ledger_url, "add", "x@")
    assert invalid.returncode == 1
    assert invalid.stderr.startswith('error: invalid address "x@": There must be something after')


def test_remove_and_reactivate(ledger_url: str) -> None:
    unknown = run(ledger_url, "remove", "nobody@example.org")
    assert unknown.returncode == 1 and "not subscribed: nobody@example.org" in unknown.stderr
    run(ledger_url, "add", "erika@example.org")
    removed = run(ledger_url, "remove", "ERIKA@example.org")
    assert (removed.returncode, removed.stdout) == (
        0,
        "unsubscribed erika@example.org (was active)\n",
    )
    refused = run(ledger_url, "add", "erika@example.org")
    assert refused.returncode == 1
    assert (
        "erika@example.org is unsubscribed" in refused.stderr and "--reactivate" in refused.stderr
    )
    back = run(ledger_url, "add", "erika@example.org", "--reactivate")
    assert back.returncode == 0
    assert back.stdout == "re-subscribed erika@example.org (unsubscribed -> active)\n"


def test_import_reports_bad_rows_and_keeps_good_ones(ledger_url: str, tmp_path: Path) -> None:
    run(ledger_url, "add", "max@example.org")
    path = tmp_path / "liste.csv"
    path.write_text(
        "\ufeffE-Mail;Name\r\n"
        'erika@example.org;"Mustermann,\r\nErika"\r\n'  # lines 2-3
        "x@;Kaputt\r\n"  # line 4
        "max@example.org;Max\r\n"  # line 5: known, gets a name
        "ERIKA@example.org;Doppelt\r\n"  # line 6: duplicate of line 2
        "a@b;Auch kaputt\r\n"  # line 7
        "eva@example.org;\r\n",
        encoding="utf-8",
    )
    result = run(ledger_url, "import", str(path))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f'{path}:4: invalid address "x@": ')
    assert lines[1].startswith(f"{path}:7: invalid address")
    assert lines[2] == (
        "imported 3: 2 new, 1 updated, 0 unchanged, 1 duplicate merged, 2 rows rejected"
        " (the other rows were imported; fix the rejected ones and import again)"
    )
    again = run(ledger_url, "import", str(path))
    assert again.stdout.splitlines()[-1].startswith("imported 3: 0 new, 0 updated, 3 unchanged")


def test_clean_import_exits_0(ledger_url: str, tmp_path: Path) -> None:
    path = tmp_path / "clean.csv"
    path.write_text("email,name\nerika@example.org,Erika\n", encoding="utf-8")
    result = run(ledger_url, "import", str(path))
    assert (result.returncode, result.stdout) == (
        0,
        "imported 1: 1 new, 0 updated, 0 unchanged, 0 duplicates merged, 0 rows rejected\n",
    )


def test_import_of_unreadable_files(ledger_url: str, tmp_path: Path) -> None:
    missing = run(ledger_url, "import", str(tmp_path / "missing.csv"))
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"error: cannot read {tmp_path / 'missing.csv'}: ")
    latin = tmp_path / "excel.csv"
    latin.write_bytes("email;name\nj@example.org;Jörg\n".encode("cp1252"))
    result = run(ledger_url, "import", str(latin))
    assert result.returncode == 1 and f"{latin}:2: not UTF-8" in result.stderr
    header = tmp_path / "header.csv"
    header.write_text("adresse\nerika@example.org\n", encoding="utf-8")
    result = run(ledger_url, "import", str(header))
    assert result.returncode == 1 and f"{header}:1: no email column" in result.stdout


def test_export_and_list(ledger_url: str) -> None:
    run(ledger_url, "add", "erika@example.org", "--name", "Mustermann, Erika")
    run(ledger_url, "add", "max@example.org")
    run(ledger_url, "remove", "max@example.org")
    exported = run(ledger_url, "export")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert exported.stdout.startswith(
        "email,name,state,created_at,updated_at,source,consent_at,consent_source,consent_ip,"
        "consent_text,confirmed_at,unsubscribed_at,lang,consent_lang,lang_changed_at,"
        "lang_changed_by\n"
    )
    assert [(r["email"], r["name"], r["state"], r["source"]) for r in rows] == [
        ("erika@example.org", "Mustermann, Erika", "active", "cli"),
        ("max@example.org", "", "unsubscribed", "cli"),
    ]
    assert rows[0]["created_at"].endswith("Z") and "T" in rows[0]["created_at"]
    only = run(ledger_url, "export", "--state", "unsubscribed")
    assert only.stdout.splitlines()[1:] == [exported.stdout.splitlines()[2]]

    listed = run(ledger_url, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "email" in lines[0] and "state" in lines[0]
    assert "erika@example.org" in lines[1] and "active" in lines[1]
    assert lines[-1] == "2 shown; in the ledger: 2 (0 pending, 1 active, 1 unsubscribed, 0 bounced)"
    active = run(ledger_url, "list", "--state", "active")
    assert len(active.stdout.splitlines()) == 3


def test_export_round_trip_keeps_unsubscribed_people_out(ledger_url: str, tmp_path: Path) -> None:
    run(ledger_url, "add", "max@example.org")
    run(ledger_url, "remove", "max@example.org")
    export = tmp_path / "export.csv"
    export.write_text(run(ledger_url, "export").stdout, encoding="utf-8")
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    assert run(fresh, "import", str(export)).returncode == 0
    assert "max@example.org,,unsubscribed," in run(fresh, "export").stdout


def test_unreachable_database_is_reported_without_password() -> None:
    result = run("postgresql+psycopg://dispatcher:s3cret-pw@127.0.0.1:1/ledger", "list")
    assert result.returncode == 1
    assert "error: cannot open the ledger at postgresql+psycopg://dispatcher:***@" in result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr


def test_import_refuses_control_characters_by_line_and_keeps_the_good_rows(
    database: Database, tmp_path: Path
) -> None:
    """On PostgreSQL a NUL used to roll back the whole batch; now only its row is refused."""
    path = tmp_path / "form.csv"
    path.write_text(
        "email,name\n"
        "erika@example.org,Erika\n"  # line 2
        "nul@example.org,Ni\x00l\n"  # line 3
        "esc@example.org,\x1b]0;pwned\x07\n"  # line 4
        "n\x00l@example.org,Null\n"  # line 5
        "max@example.org,Max\n"  # line 6
        'open@example.org,"Never closed\n'  # lines 7-8
        "late@example.org,Late\n",
        encoding="utf-8",
    )
    result = run(database.url, "import", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}:3: name contains the control character U+0000; remove it"
    assert lines[1] == f"{path}:4: name contains the control character U+001B; remove it"
    assert lines[2].startswith(f'{path}:5: invalid address "n\\x00l@example.org": ')
    assert lines[3].startswith(
        f"{path}:7: a quote opened in this row is never closed, so lines 7-8 were read"
    )
    assert lines[4].startswith("imported 2: 2 new,") and "4 rows rejected" in lines[4]
    assert "\x00" not in result.stdout and "\x1b" not in result.stdout
    exported = list(csv.DictReader(io.StringIO(run(database.url, "export").stdout)))
    assert [(r["email"], r["name"]) for r in exported] == [
        ("erika@example.org", "Erika"),
        ("max@example.org", "Max"),
    ]


def test_a_stray_quote_is_reported_with_its_line(ledger_url: str, tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text(
        'email,name\nerika@example.org,"Erika "die" M."\nmax@example.org,Max\n', encoding="utf-8"
    )
    result = run(ledger_url, "import", str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        f"{path}:2: malformed CSV (',' expected after '\"'); "
        'write a quote inside a quoted field twice: ""'
    )
    assert "imported 1: 1 new" in result.stdout


def test_add_refuses_control_characters_and_prints_none(ledger_url: str) -> None:
    named = run(ledger_url, "add", "erika@example.org", "--name", "Erika\x1b[2J")
    assert named.returncode == 1
    assert named.stderr == "error: name contains the control character U+001B; remove it\n"
    address = run(ledger_url, "add", "erika\x1b[2J@example.org")
    assert address.returncode == 1
    assert address.stderr.startswith('error: invalid address "erika\\x1b[2J@example.org": ')
    assert "\x1b" not in address.stderr


FORMULAS = ["=2+5", "+SUM(1,2)", "-1", "@SUM(A1)", "'=quoted on purpose", "Erika"]


def test_export_neutralises_formulas_and_imports_back_to_the_same_names(
    database: Database, tmp_path: Path
) -> None:
    seeded = [Row(n + 2, f"r{n}@example.org", name) for n, name in enumerate(FORMULAS)]
    with database.engine.begin() as connection:
        ledger.import_rows(
            connection,
            [*seeded, Row(9, "=cmd@example.org", "Kein Name")],
            source="web",
            now=dt.datetime(2019, 3, 1, tzinfo=dt.UTC),
        )
    exported = run(database.url, "export")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [r["name"] for r in rows] == [
        "'=2+5", "'+SUM(1,2)", "'-1", "'@SUM(A1)", "'=quoted on purpose", "Erika", "Kein Name",
    ]  # fmt: skip
    assert rows[-1]["email"] == "'=cmd@example.org"
    # No cell a spreadsheet would evaluate.
    cells = [cell for row in csv.reader(io.StringIO(exported.stdout)) for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]

    path = tmp_path / "export.csv"
    path.write_text(exported.stdout, encoding="utf-8")
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    assert run(fresh, "import", str(path)).returncode == 0
    again = list(csv.DictReader(io.StringIO(run(fresh, "export").stdout)))
    assert [(r["email"], r["name"]) for r in again] == [(r["email"], r["name"]) for r in rows]


def test_list_shows_stored_escape_sequences_as_text(database: Database) -> None:
    """Names stored before they were refused (or written by hand) stay harmless on screen."""
    with database.engine.begin() as connection:
        connection.execute(
            subscribers.insert().values(
                email="erika@example.org",
                name="Erika\x1b]0;pwned\x07\x1b[2J",
                state="active",
                source="web\u202e",
                created_at=dt.datetime(2019, 3, 1, tzinfo=dt.UTC),
                updated_at=dt.datetime(2019, 3, 1, tzinfo=dt.UTC),
            )
        )
    listed = run(database.url, "list")
    assert listed.returncode == 0, listed.stderr
    assert "Erika\\x1b]0;pwned\\x07\\x1b[2J" in listed.stdout
    assert "web\\u202e" in listed.stdout
    assert "\x1b" not in listed.stdout and "\x07" not in listed.stdout
