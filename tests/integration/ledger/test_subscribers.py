"""Subscriber rules on the real databases: one row per mailbox, consent before reactivation."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from dispatcher.ledger import subscribers as ledger
from dispatcher.ledger.subscriber_csv import Row
from dispatcher.ledger.tables import SubscriberState
from dispatcher.mail.addresses import InvalidAddress
from tests.support.database import Database

NOW = dt.datetime(2019, 4, 2, 6, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=1)
ACTIVE, PENDING = SubscriberState.ACTIVE, SubscriberState.PENDING
UNSUBSCRIBED, BOUNCED = SubscriberState.UNSUBSCRIBED, SubscriberState.BOUNCED


def _add(
    conn: sa.Connection,
    email: str,
    name: str | None = None,
    *,
    state: SubscriberState = ACTIVE,
    now: dt.datetime = NOW,
    reactivate: bool = False,
) -> tuple[int, bool]:
    return ledger.add(conn, email, name, state=state, source="cli", now=now, reactivate=reactivate)


def test_add_upserts_by_normalised_address(database: Database) -> None:
    with database.engine.begin() as conn:
        first = _add(conn, "Erika.Mustermann@Example.ORG", "Erika")
        again = _add(conn, "erika.mustermann@example.org", now=LATER)
        renamed = _add(conn, " ERIKA.MUSTERMANN@example.org ", "Erika M.", now=LATER)
        row = ledger.get(conn, "erika.mustermann@EXAMPLE.org")
    assert first[1] is True and again == (first[0], False) and renamed == (first[0], False)
    assert row is not None
    assert (row.id, row.email, row.name, row.state, row.source) == (
        first[0], "erika.mustermann@example.org", "Erika M.", ACTIVE, "cli",
    )  # fmt: skip
    assert row.created_at == NOW and row.updated_at == LATER
    assert row.created_at.utcoffset() == dt.timedelta(0)


def test_add_idn_in_either_spelling_is_one_subscriber(database: Database) -> None:
    with database.engine.begin() as conn:
        subscriber_id, _ = _add(conn, "info@bücher.de")
        assert _add(conn, "info@xn--bcher-kva.de") == (subscriber_id, False)


def test_add_rejects_invalid_address(database: Database) -> None:
    with database.engine.begin() as conn, pytest.raises(InvalidAddress):
        _add(conn, "x@")


def test_unsubscribed_is_not_reactivated_without_consent(database: Database) -> None:
    with database.engine.begin() as conn:
        subscriber_id, _ = _add(conn, "erika@example.org", "Erika")
        assert ledger.remove(conn, "Erika@example.org", now=LATER) is True
        assert _add(conn, "erika@example.org", "New Name") == (subscriber_id, False)
        row = ledger.get(conn, "erika@example.org")
        assert row is not None and (row.state, row.name) == (UNSUBSCRIBED, "Erika")

        assert _add(conn, "erika@example.org", reactivate=True) == (subscriber_id, False)
        row = ledger.get(conn, "erika@example.org")
        assert row is not None and row.state is ACTIVE


def test_bounced_is_reactivated_only_on_request(database: Database) -> None:
    with database.engine.begin() as conn:
        subscriber_id, _ = _add(conn, "max@example.org")
        ledger.set_state(conn, subscriber_id, BOUNCED, now=LATER, reason="550 no such user")
        _add(conn, "max@example.org")
        row = ledger.get(conn, "max@example.org")
        assert row is not None and (row.state, row.last_error) == (BOUNCED, "550 no such user")
        _add(conn, "max@example.org", state=PENDING, reactivate=True)
        row = ledger.get(conn, "max@example.org")
        assert row is not None and (row.state, row.last_error) == (PENDING, None)


def test_pending_add_stays_pending(database: Database) -> None:
    with database.engine.begin() as conn:
        _add(conn, "eva@example.org", state=PENDING)
        _add(conn, "eva@example.org")
        row = ledger.get(conn, "eva@example.org")
    assert row is not None and row.state is PENDING


def test_remove_keeps_the_row(database: Database) -> None:
    with database.engine.begin() as conn:
        subscriber_id, _ = _add(conn, "erika@example.org")
        assert ledger.remove(conn, "erika@example.org", now=LATER) is True
        assert ledger.remove(conn, "erika@example.org", now=LATER) is False
        assert ledger.remove(conn, "nobody@example.org", now=LATER) is False
        row = ledger.get(conn, "erika@example.org")
    assert row is not None and (row.id, row.state, row.updated_at) == (
        subscriber_id,
        UNSUBSCRIBED,
        LATER,
    )


def test_set_state_unknown_id(database: Database) -> None:
    with database.engine.begin() as conn, pytest.raises(LookupError):
        ledger.set_state(conn, 4711, BOUNCED, now=NOW)


def _rows(*emails: str, name: str | None = None) -> list[Row]:
    return [Row(line, email, name) for line, email in enumerate(emails, start=2)]


def test_import_is_idempotent_and_merges_duplicates(database: Database) -> None:
    rows = _rows("a@example.org", "b@example.org", "a@example.org", "c@example.org")
    with database.engine.begin() as conn:
        first = ledger.import_rows(conn, rows, source="import", now=NOW)
    with database.engine.begin() as conn:
        second = ledger.import_rows(conn, rows, source="import", now=LATER)
        total = sum(ledger.count_by_state(conn).values())
    assert first == ledger.ImportReport(created=3, updated=0, unchanged=0, merged_duplicates=1)
    assert second == ledger.ImportReport(created=0, updated=0, unchanged=3, merged_duplicates=1)
    assert first.imported == second.imported == total == 3


def test_import_updates_names_but_never_reactivates(database: Database) -> None:
    with database.engine.begin() as conn:
        _add(conn, "a@example.org", "A")
        _add(conn, "b@example.org", "B")
        _add(conn, "gone@example.org", "G")
        ledger.remove(conn, "gone@example.org", now=NOW)
        rows = [
            Row(2, "a@example.org", "A. New"),
            Row(3, "b@example.org", None),  # no name given: keep the known one
            Row(4, "gone@example.org", "G. New"),
            Row(5, "new@example.org", "N", state=UNSUBSCRIBED),  # from an export
        ]
        report = ledger.import_rows(conn, rows, source="import", now=LATER)
        rows_by_email = {row.email: row for row in ledger.list_(conn)}
    assert report == ledger.ImportReport(created=1, updated=1, unchanged=2, merged_duplicates=0)
    assert rows_by_email["a@example.org"].name == "A. New"
    assert rows_by_email["a@example.org"].updated_at == LATER
    assert rows_by_email["b@example.org"].name == "B"
    assert (rows_by_email["gone@example.org"].state, rows_by_email["gone@example.org"].name) == (
        UNSUBSCRIBED,
        "G",
    )
    assert rows_by_email["new@example.org"].state is UNSUBSCRIBED
    assert rows_by_email["new@example.org"].source == "import"


def test_import_of_20000_rows(database: Database) -> None:
    rows = _rows(*(f"reader{i:05d}@example.org" for i in range(20_000)), name="Leser")
    with database.engine.begin() as conn:
        _add(conn, "reader00042@example.org")
        report = ledger.import_rows(conn, rows, source="import", now=NOW)
    assert report == ledger.ImportReport(
        created=19_999, updated=1, unchanged=0, merged_duplicates=0
    )
    with database.engine.connect() as conn:
        listed = list(ledger.list_(conn))
        assert ledger.count_by_state(conn)["active"] == 20_000
    assert len(listed) == 20_000 and len({row.email for row in listed}) == 20_000


def test_count_by_state_lists_every_state(database: Database) -> None:
    with database.engine.begin() as conn:
        assert ledger.count_by_state(conn) == dict.fromkeys(
            ["pending", "active", "unsubscribed", "bounced"], 0
        )
        for email in ("a@example.org", "b@example.org", "c@example.org"):
            _add(conn, email)
        _add(conn, "p@example.org", state=PENDING)
        ledger.remove(conn, "c@example.org", now=NOW)
        counts = ledger.count_by_state(conn)
    assert counts == {"pending": 1, "active": 2, "unsubscribed": 1, "bounced": 0}
    assert list(counts) == [state.value for state in SubscriberState]


def test_list_streams_in_id_order_across_pages(database: Database) -> None:
    emails = [f"r{i}@example.org" for i in range(ledger.BATCH * 2 + 7)]
    with database.engine.begin() as conn:
        ids = [_add(conn, email)[0] for email in reversed(emails)]
        for subscriber_id in ids[::3]:
            ledger.set_state(conn, subscriber_id, BOUNCED, now=LATER)
    with database.engine.connect() as conn:
        everyone = ledger.list_(conn)
        first = next(everyone)  # a generator: rows come while the caller reads
        listed = [first, *everyone]
        bounced = list(ledger.list_(conn, state=BOUNCED))
    assert [row.id for row in listed] == sorted(ids)
    assert [row.id for row in bounced] == sorted(ids[::3])
    assert all(row.state is BOUNCED for row in bounced)
