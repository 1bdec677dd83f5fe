"""Each reader's language in the ledger, on both databases: stored by every door that
creates a subscriber, changeable, and kept in the consent record (docs/subscribers.md)."""

from __future__ import annotations

import datetime as dt

import pytest

from dispatcher.ledger import subscribers as ledger
from dispatcher.ledger.subscriber_csv import Row, parse_csv
from dispatcher.ledger.tables import SubscriberState
from tests.support.database import Database

NOW = dt.datetime(2019, 4, 2, 6, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=1)
CONSENT = ledger.Consent(source="web:/subscribe", ip="192.0.2.0", text="Ja, ich möchte …")


def test_add_stores_the_language_and_none_means_the_default(database: Database) -> None:
    with database.engine.begin() as conn:
        ledger.add(conn, "anna@example.org", source="cli", now=NOW, lang="en")
        ledger.add(conn, "bernd@example.org", source="cli", now=NOW)
        anna = ledger.get(conn, "anna@example.org")
        bernd = ledger.get(conn, "bernd@example.org")
    assert anna is not None and bernd is not None
    assert (anna.lang, bernd.lang) == ("en", None)
    assert anna.lang_changed_at is None  # chosen at the start, not changed


def test_add_again_with_another_language_changes_it_and_says_who(database: Database) -> None:
    with database.engine.begin() as conn:
        ledger.add(conn, "anna@example.org", source="cli", now=NOW, lang="en")
        ledger.add(conn, "anna@example.org", source="cli", now=LATER)  # no --lang: unchanged
        unchanged = ledger.get(conn, "anna@example.org")
        ledger.add(conn, "anna@example.org", source="cli", now=LATER, lang="de")
        changed = ledger.get(conn, "anna@example.org")
    assert unchanged is not None and unchanged.lang == "en"
    assert changed is not None
    assert (changed.lang, changed.lang_changed_at, changed.lang_changed_by) == ("de", LATER, "cli")


def test_add_does_not_touch_the_language_of_someone_who_left(database: Database) -> None:
    with database.engine.begin() as conn:
        subscriber_id, _ = ledger.add(conn, "anna@example.org", source="cli", now=NOW, lang="en")
        ledger.unsubscribe(conn, subscriber_id, now=NOW)
        ledger.add(conn, "anna@example.org", source="cli", now=LATER, lang="de")
        row = ledger.get(conn, "anna@example.org")
    assert row is not None and (row.state, row.lang) == (SubscriberState.UNSUBSCRIBED, "en")


def test_a_language_no_campaign_offers_is_refused(database: Database) -> None:
    with database.engine.begin() as conn:
        with pytest.raises(ValueError, match='unknown language "fr"'):
            ledger.add(conn, "anna@example.org", source="cli", now=NOW, lang="fr")
        assert ledger.get(conn, "anna@example.org") is None


def test_web_sign_up_keeps_the_language_with_the_consent(database: Database) -> None:
    with database.engine.begin() as conn:
        row, send = ledger.request_subscription(
            conn, "anna@example.org", "Anna", consent=CONSENT, now=NOW, lang="en"
        )
        confirmed = ledger.confirm(conn, row.id, now=LATER)
    assert send is True
    assert (row.state, row.lang, row.consent_lang) == (SubscriberState.PENDING, "en", "en")
    assert confirmed is not None
    assert (confirmed.state, confirmed.lang, confirmed.consent_lang) == (
        SubscriberState.ACTIVE, "en", "en",
    )  # fmt: skip


def test_a_sign_up_for_a_known_address_changes_its_language_only_by_the_link(
    database: Database,
) -> None:
    with database.engine.begin() as conn:
        row, _ = ledger.request_subscription(
            conn, "anna@example.org", None, consent=CONSENT, now=NOW, lang="de"
        )
        ledger.confirm(conn, row.id, now=NOW)
        ledger.unsubscribe(conn, row.id, now=NOW)
        # Anyone can type Anna's address into the English form: nothing changes yet.
        typed, send = ledger.request_subscription(
            conn, "anna@example.org", None, consent=CONSENT, now=LATER, lang="en"
        )
        assert send is True and (typed.lang, typed.consent_lang) == ("de", "de")
        requested = ledger.Requested(None, CONSENT, at=LATER, lang="en")
        back = ledger.confirm(conn, row.id, now=LATER, requested=requested)
    assert back is not None and back.state is SubscriberState.ACTIVE
    assert (back.lang, back.consent_lang, back.consent_at) == ("en", "en", LATER)
    assert (back.lang_changed_at, back.lang_changed_by) == (LATER, "reader")


def test_a_link_without_a_language_keeps_the_stored_one(database: Database) -> None:
    with database.engine.begin() as conn:
        row, _ = ledger.request_subscription(
            conn, "anna@example.org", None, consent=CONSENT, now=NOW, lang="en"
        )
        confirmed = ledger.confirm(
            conn, row.id, now=LATER, requested=ledger.Requested(None, CONSENT, at=NOW)
        )
    assert confirmed is not None and (confirmed.lang, confirmed.consent_lang) == ("en", "en")


def test_set_language_changes_it_and_records_the_change(database: Database) -> None:
    with database.engine.begin() as conn:
        row, _ = ledger.request_subscription(
            conn, "anna@example.org", None, consent=CONSENT, now=NOW, lang="de"
        )
        changed = ledger.set_language(conn, row.id, "en", now=LATER)
        again = ledger.set_language(conn, row.id, "en", now=LATER + dt.timedelta(hours=1))
        default = ledger.set_language(conn, row.id, None, now=LATER + dt.timedelta(hours=2))
    assert changed is not None
    assert (changed.lang, changed.lang_changed_at, changed.lang_changed_by) == (
        "en", LATER, "reader",
    )  # fmt: skip
    assert changed.consent_lang == "de"  # what they agreed in stays on record
    assert again is not None and again.lang_changed_at == LATER  # no change, no new record
    assert default is not None and default.lang is None


def test_set_language_by_the_operator_names_them(database: Database) -> None:
    with database.engine.begin() as conn:
        subscriber_id, _ = ledger.add(conn, "anna@example.org", source="cli", now=NOW)
        row = ledger.set_language(conn, subscriber_id, "en", now=LATER, by="api:helpdesk")
    assert row is not None and (row.lang, row.lang_changed_by) == ("en", "api:helpdesk")


def test_set_language_of_an_unknown_or_erased_subscriber_is_none(database: Database) -> None:
    with database.engine.begin() as conn:
        subscriber_id, _ = ledger.add(conn, "anna@example.org", source="cli", now=NOW, lang="en")
        ledger.erase(conn, "anna@example.org", now=NOW)
        assert ledger.set_language(conn, subscriber_id, "de", now=LATER) is None
        assert ledger.set_language(conn, subscriber_id + 1000, "de", now=LATER) is None
        erased = ledger.get_by_id(conn, subscriber_id)
    assert erased is not None
    assert (erased.lang, erased.consent_lang, erased.lang_changed_by) == (None, None, None)


def test_set_language_refuses_a_language_no_campaign_offers(database: Database) -> None:
    with database.engine.begin() as conn:
        subscriber_id, _ = ledger.add(conn, "anna@example.org", source="cli", now=NOW)
        with pytest.raises(ValueError, match="unknown language"):
            ledger.set_language(conn, subscriber_id, "xx", now=LATER)


def test_import_stores_languages_and_changes_them_for_active_rows(database: Database) -> None:
    rows, problems = parse_csv("email,lang\nanna@example.org,en\nbernd@example.org,\n")
    assert problems == []
    with database.engine.begin() as conn:
        first = ledger.import_rows(conn, rows, source="import", now=NOW)
        again = ledger.import_rows(conn, rows, source="import", now=LATER)
        switched = ledger.import_rows(
            conn,
            [Row(1, "anna@example.org", None, lang="de"), Row(2, "bernd@example.org", None)],
            source="import",
            now=LATER,
        )
        anna = ledger.get(conn, "anna@example.org")
        bernd = ledger.get(conn, "bernd@example.org")
    assert (first.created, again.unchanged, switched.updated, switched.unchanged) == (2, 2, 1, 1)
    assert anna is not None and bernd is not None
    assert (anna.lang, anna.lang_changed_by, bernd.lang) == ("de", "import", None)
