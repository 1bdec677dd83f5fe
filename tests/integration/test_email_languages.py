"""Each reader gets the day's newsletter once, in their language: one dispatch per day,
one wire template per language, against a real SMTP server and a real ledger."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dispatcher.campaign import planning
from dispatcher.campaign.loading import load_campaign
from dispatcher.ledger.tables import deliveries, dispatches, subscribers
from dispatcher.settings import Settings
from tests.support.database import Database
from tests.support.delivery import ROOT, SECRET, email_time
from tests.support.ledger import add_subscribers, tick_at
from tests.support.outbox_mail import body_text
from tests.support.smtpd import Received, SmtpServer

CAMPAIGN = textwrap.dedent(
    """\
    campaign:
      id: zwei-sprachen
      name: "Clusterwoche"
      timezone: Europe/Berlin
      start: 2019-04-02
      end: 2019-04-03
      weekdays: [mon, tue, wed, thu, fri]
      locales: [de, en]
      fallback: FALLBACK
    send:
      email: "08:00"
    items:
      - id: nordwind
        title: "Vorhang auf: Nordwind Maritim"
        teaser: "Werften und Hochschulen an der Küste entwickeln emissionsarme Antriebe."
        url: https://example.org/nordwind
        initiative: "Nordwind Maritim e. V."
        region: Schleswig-Holstein
        body: |
          Im Hafen liegt ein **Versuchsschiff**.
        translations:
          en:
            title: "Curtain up: Nordwind Maritime"
            teaser: "Shipyards and universities on the coast develop low-emission propulsion."
            body: |
              A **test ship** lies in the harbour.
            url: https://example.org/en/nordwind
      - id: elbtal
        title: "Vorhang auf: Mikroelektronik Elbtal"
        teaser: "Drei KMU testen gemeinsam einen Sensor."
        url: https://example.org/elbtal
        initiative: "Mikroelektronik-Netzwerk Elbtal"
        region: Sachsen
    """
)
TUESDAY, WEDNESDAY = dt.date(2019, 4, 2), dt.date(2019, 4, 3)


def settings_with(
    database: Database, smtp: SmtpServer, tmp_path: Path, fallback: str = "default"
) -> Settings:
    campaign_file = tmp_path / "campaign.yaml"
    campaign_file.write_text(CAMPAIGN.replace("FALLBACK", fallback), encoding="utf-8")
    # Any: the values are checked by Settings itself, as they would be from the environment.
    values: dict[str, Any] = dict(
        database_url=database.url,
        smtp_url=smtp.url,
        campaign_file=campaign_file,
        outbox_dir=tmp_path / "outbox",
        templates_dir=ROOT / "templates",
        public_url="https://news.example.org",
        mail_from="Clusterplattform <newsletter@news.example.org>",
        secret_key=SECRET,
        clock_jump_hours=48,
    )
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def readers(database: Database) -> dict[str, str]:
    """Four named readers: German, English, one in a language the campaign does not
    offer (French: gets the default) and one who never chose (NULL: the default)."""
    addresses = add_subscribers(database, 4, named=True)
    chosen = dict(zip(addresses, ["de", "en", "fr", None], strict=True))
    with database.engine.begin() as connection:
        for address, lang in chosen.items():
            connection.execute(
                subscribers.update().where(subscribers.c.email == address).values(lang=lang)
            )
    return {"de": addresses[0], "en": addresses[1], "fr": addresses[2], "none": addresses[3]}


def text_of(received: Received) -> str:
    return body_text(received.message, "plain")


def html_of(received: Received) -> str:
    return body_text(received.message, "html")


def test_a_german_and_an_english_reader_each_get_one_email_in_their_language(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    who = readers(database)
    settings = settings_with(database, smtp_server, tmp_path)
    report = tick_at(settings, database, email_time(TUESDAY))
    assert list(report.finished.values()) == ["done"]

    received = smtp_server.received
    assert Counter(r.rcpt_tos[0] for r in received) == Counter(who.values())  # once each
    with database.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(dispatches)).scalar() == 1
    by_reader = {r.rcpt_tos[0]: r for r in received}

    english = by_reader[who["en"]]
    assert str(english.message["Subject"]) == "Curtain up: Nordwind Maritime – Clusterwoche"
    assert english.message["Content-Language"] == "en"
    text, html = text_of(english), html_of(english)
    assert "Hello Leserin 1," in text and "Hello Leserin 1," in html
    assert "Tuesday, 2 April 2019" in text
    assert "A test ship lies in the harbour." in text.replace("*", "")
    assert "Read the report: https://example.org/en/nordwind" in text
    assert "Unsubscribe: https://news.example.org/u/" in text
    assert "All reports in the archive: https://news.example.org/en/archive" in text
    assert '<html lang="en">' in html and "Legal notice" in html
    assert "Guten Tag" not in text and "Impressum\n" not in text

    for key in ("de", "fr", "none"):
        german = by_reader[who[key]]
        assert str(german.message["Subject"]) == "Vorhang auf: Nordwind Maritim – Clusterwoche"
        assert german.message["Content-Language"] == "de"
        text = text_of(german)
        assert "Guten Tag Leserin" in text and "Dienstag, 2. April 2019" in text
        assert "Zur Reportage: https://example.org/nordwind" in text
        assert "Alle Reportagen im Archiv: https://news.example.org/archive" in text
        assert '<html lang="de">' in html_of(german)

    # The ledger records which language each delivery went out in.
    with database.engine.connect() as connection:
        langs = dict(
            connection.execute(
                sa.select(subscribers.c.email, deliveries.c.lang).join(
                    subscribers, subscribers.c.id == deliveries.c.subscriber_id
                )
            ).all()
        )
    assert langs == {who["de"]: "de", who["en"]: "en", who["fr"]: "de", who["none"]: "de"}


def test_without_an_english_version_english_readers_get_the_german_one_by_default(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    who = readers(database)
    settings = settings_with(database, smtp_server, tmp_path)
    tick_at(settings, database, email_time(WEDNESDAY))
    received = {r.rcpt_tos[0]: r for r in smtp_server.received}
    assert set(received) == set(who.values())
    english_reader = received[who["en"]]
    assert str(english_reader.message["Subject"]).startswith("Vorhang auf: Mikroelektronik")
    assert english_reader.message["Content-Language"] == "de"
    assert "Guten Tag Leserin 1," in text_of(english_reader)
    with database.engine.connect() as connection:
        written = set(connection.execute(sa.select(deliveries.c.lang)).scalars())
    assert written == {"de"}  # the ledger says what was sent, not what was wished


def test_under_fallback_skip_english_readers_get_nothing_that_day_and_the_plan_says_so(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    who = readers(database)
    settings = settings_with(database, smtp_server, tmp_path, fallback="skip")
    campaign = load_campaign(settings.campaign_file)
    plan = planning.plan(campaign, now=email_time(TUESDAY) - dt.timedelta(hours=1))
    wednesday = next(r for r in plan.rows if r.day == WEDNESDAY)
    assert wednesday.to_json()["languages"] == {"de": "own", "en": "none"}

    tick_at(settings, database, email_time(TUESDAY))
    tick_at(settings, database, email_time(WEDNESDAY))
    days = Counter(
        (r.rcpt_tos[0], str(r.message["Subject"]).split(":")[0]) for r in smtp_server.received
    )
    assert days == Counter(
        {
            (who["de"], "Vorhang auf"): 2,
            (who["fr"], "Vorhang auf"): 2,
            (who["none"], "Vorhang auf"): 2,
            (who["en"], "Curtain up"): 1,  # Tuesday only: Wednesday's item has no English
        }
    )
    with database.engine.connect() as connection:
        wednesday_rows = connection.execute(
            sa.select(deliveries.c.subscriber_id, deliveries.c.state)
            .join(dispatches, dispatches.c.id == deliveries.c.dispatch_id)
            .where(dispatches.c.day == WEDNESDAY)
        ).all()
        states = {state for _, state in wednesday_rows}
        dispatch_state = connection.execute(
            sa.select(dispatches.c.state).where(dispatches.c.day == WEDNESDAY)
        ).scalar_one()
    assert len(wednesday_rows) == 3 and states == {"sent"} and dispatch_state == "done"
