"""The ledger's history of desk changes to the campaign file, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from dispatcher.ledger import changes, editors
from tests.support.database import Database

T0 = dt.datetime(2019, 4, 1, 6, 15, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
# The file before a change, exactly: a restore gives an item back from this text.
TEXT = 'items:\n  - id: kita-leipzig\n    title: "Grüße aus Leipzig"\n    status: ready\n'
DIFF = (
    "--- a/campaign.yaml\n+++ b/campaign.yaml\n@@ -4 +4 @@\n-    status: ready\n+    status: hold\n"
)


def _record(
    database: Database,
    *,
    at: dt.datetime,
    item_id: str = "kita-leipzig",
    action: str = "hold",
    editor_id: int | None = None,
    summary: str = "zurückgestellt",
) -> int:
    with database.engine.begin() as connection:
        return changes.record_change(
            connection,
            editor_id=editor_id,
            action=action,
            item_id=item_id,
            summary=summary,
            version_before="a" * 64,
            version_after="b" * 64,
            diff=DIFF,
            text_before=TEXT,
            now=at,
        )


def _editor(database: Database, email: str = "redaktion@example.org") -> int:
    with database.engine.begin() as connection:
        row, _ = editors.add(connection, email, "Erika Muster", now=T0)
    return row.id


def _recent(
    database: Database, item_id: str | None = None, limit: int = 100
) -> list[changes.ChangeRow]:
    with database.engine.connect() as connection:
        return changes.recent_changes(connection, item_id=item_id, limit=limit)


def test_a_change_comes_back_whole_with_its_editor(database: Database) -> None:
    editor_id = _editor(database)
    berlin = dt.timezone(dt.timedelta(hours=2))
    change_id = _record(database, at=T0.astimezone(berlin), editor_id=editor_id)
    with database.engine.connect() as connection:
        row = changes.get_change(connection, change_id)
        assert changes.get_change(connection, change_id + 1) is None
    assert row == changes.ChangeRow(
        id=change_id,
        at=T0,
        editor_email="redaktion@example.org",
        editor_name="Erika Muster",
        action="hold",
        item_id="kita-leipzig",
        summary="zurückgestellt",
        version_before="a" * 64,
        version_after="b" * 64,
        diff=DIFF,
        text_before=TEXT,
    )
    assert row.at.utcoffset() == dt.timedelta(0)


def test_changes_come_newest_first_filtered_by_item_and_limited(database: Database) -> None:
    first = _record(database, at=T0, item_id="kita-leipzig")
    second = _record(database, at=T0 + 2 * MINUTE, item_id="hafen-kiel", action="pin")
    third = _record(database, at=T0 + MINUTE, item_id="kita-leipzig", action="release")
    same_instant = _record(database, at=T0 + 2 * MINUTE, item_id="kita-leipzig", action="edit")
    assert [row.id for row in _recent(database)] == [same_instant, second, third, first]
    assert [row.id for row in _recent(database, item_id="kita-leipzig")] == [
        same_instant,
        third,
        first,
    ]
    assert [row.id for row in _recent(database, item_id="kita-leipzig", limit=2)] == [
        same_instant,
        third,
    ]
    assert _recent(database, item_id="gibt-es-nicht") == []


def test_no_editor_and_a_removed_editor_are_told_apart(database: Database) -> None:
    editor_id = _editor(database)
    _record(database, at=T0, editor_id=editor_id)
    _record(database, at=T0 + MINUTE, editor_id=None)
    with database.engine.begin() as connection:
        editors.remove(connection, "redaktion@example.org", now=T0 + 2 * MINUTE)
    [anonymous, removed] = _recent(database)
    assert (anonymous.editor_email, anonymous.editor_name) == (None, None)
    assert (removed.editor_email, removed.editor_name) == ("redaktion@example.org", "Erika Muster")


def test_deleting_an_editor_row_keeps_the_change(database: Database) -> None:
    change_id = _record(database, at=T0, editor_id=_editor(database))
    with database.engine.begin() as connection:
        connection.execute(editors.editors.delete())
    with database.engine.connect() as connection:
        row = changes.get_change(connection, change_id)
    assert row is not None and row.editor_email is None and row.text_before == TEXT


def test_a_long_summary_is_cut_and_a_long_action_refused(database: Database) -> None:
    """Both backends alike: SQLite would keep an over-long value that PostgreSQL refuses."""
    _record(database, at=T0, summary="ä" * 600)
    assert _recent(database)[0].summary == "ä" * 500
    with pytest.raises(ValueError, match="action"):
        _record(database, at=T0, action="x" * 33)
    with pytest.raises(ValueError, match="item id"):
        _record(database, at=T0, item_id="x" * 201)
    assert len(_recent(database)) == 1
