"""`dispatcher history`: the desk's changes, as the operator reads them on the command line."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Protocol

import pytest

from dispatcher.cli import main as cli
from dispatcher.ledger import changes, editors
from tests.support.campaigns import campaign_copy
from tests.support.database import Database

T0 = dt.datetime(2019, 4, 1, 6, 15, tzinfo=dt.UTC)  # 08:15 in Berlin (summer time)
HOLD = (
    "--- a/campaign.yaml\n+++ b/campaign.yaml\n@@ -4 +4 @@\n-    status: ready\n+    status: hold\n"
)
PIN = "--- a/campaign.yaml\n+++ b/campaign.yaml\n@@ -5 +5 @@\n+    date: 2019-04-03\n"


class Run(Protocol):
    """`dispatcher --campaign FILE history ARGS`: exit code, stdout, stderr."""

    def __call__(self, *args: str, campaign: Path = ...) -> tuple[int, str, str]: ...


@pytest.fixture
def run(
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    monkeypatch.setenv("DISPATCHER_DATABASE_URL", database.url)
    campaign = campaign_copy(tmp_path)  # Europe/Berlin

    def run(*args: str, campaign: Path = campaign) -> tuple[int, str, str]:
        code = cli.main(["--campaign", str(campaign), "history", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _changes(database: Database) -> None:
    """Three changes: two by an editor, one with no editor recorded."""
    with database.engine.begin() as connection:
        editor, _ = editors.add(connection, "redaktion@example.org", "Erika Muster", now=T0)
        for minutes, editor_id, action, item, summary, diff in (
            (0, editor.id, "hold", "kita-leipzig", "zurückgestellt", HOLD),
            (5, None, "pin", "hafen-kiel", "auf Mi 03.04. gelegt", PIN),
            (65, editor.id, "release", "kita-leipzig", "wieder\nfreigegeben", HOLD),
        ):
            changes.record_change(
                connection,
                editor_id=editor_id,
                action=action,
                item_id=item,
                summary=summary,
                version_before=f"{minutes:064d}",
                version_after=f"{minutes + 1:064d}",
                diff=diff,
                text_before="items: []\n",
                now=T0 + dt.timedelta(minutes=minutes),
            )


def test_an_empty_ledger_says_so(run: Run) -> None:
    assert run() == (0, "No desk changes recorded yet.\n", "")
    assert json.loads(run("--json")[1]) == []


def test_one_line_per_change_newest_first_in_the_campaigns_zone(
    run: Run, database: Database
) -> None:
    _changes(database)
    code, out, err = run()
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "2019-04-01 09:20+02:00  redaktion@example.org  release  kita-leipzig  wieder freigegeben",
        "2019-04-01 08:20+02:00  —  pin  hafen-kiel  auf Mi 03.04. gelegt",
        "2019-04-01 08:15+02:00  redaktion@example.org  hold  kita-leipzig  zurückgestellt",
    ]


def test_an_unreadable_campaign_file_shows_utc(
    run: Run, database: Database, tmp_path: Path
) -> None:
    _changes(database)
    code, out, _ = run("--limit", "1", campaign=tmp_path / "missing.yaml")
    assert code == 0
    assert out.splitlines() == [
        "2019-04-01 07:20+00:00  redaktion@example.org  release  kita-leipzig  wieder freigegeben"
    ]


def test_item_filter_limit_and_diff(run: Run, database: Database) -> None:
    _changes(database)
    code, out, _ = run("--item", "kita-leipzig")
    assert code == 0 and [line.split("  ")[3] for line in out.splitlines()] == ["kita-leipzig"] * 2
    assert run("--item", "kita-leipzig", "--limit", "1")[1].count("\n") == 1
    assert run("--item", "gibt-es-nicht")[1] == (
        "No desk changes of item gibt-es-nicht recorded yet.\n"
    )
    code, out, _ = run("--item", "hafen-kiel", "--diff")
    assert out == (
        "2019-04-01 08:20+02:00  —  pin  hafen-kiel  auf Mi 03.04. gelegt\n" + PIN + "\n"
    )


def test_json_lists_every_change_with_its_diff_and_versions(run: Run, database: Database) -> None:
    _changes(database)
    listed = json.loads(run("--json")[1])
    assert [(c["action"], c["item"], c["editor"]) for c in listed] == [
        ("release", "kita-leipzig", "redaktion@example.org"),
        ("pin", "hafen-kiel", None),
        ("hold", "kita-leipzig", "redaktion@example.org"),
    ]
    assert listed[1] == {
        "id": listed[1]["id"],
        "at": "2019-04-01T06:20:00+00:00",
        "editor": None,
        "action": "pin",
        "item": "hafen-kiel",
        "summary": "auf Mi 03.04. gelegt",
        "version_before": f"{5:064d}",
        "version_after": f"{6:064d}",
        "diff": PIN,
    }


def test_a_limit_below_one_is_a_usage_error(run: Run) -> None:
    with pytest.raises(SystemExit) as exited:
        run("--limit", "0")
    assert exited.value.code == 2
