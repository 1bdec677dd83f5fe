"""The newsletter through a real relay: Postfix with OpenDKIM as verify milter.

Switched on by DISPATCHER_TEST_MTA (`.ci/run` sets it from `scripts/mta-setup`); skipped
elsewhere. Each test starts its own Postfix instance and OpenDKIM under its tmp_path
(`tests/support/mta.py`) with a DNS stub serving the DKIM key (`tests/support/dnsstub.py`),
and runs the dispatcher's real pipeline, DKIM-signed with a fresh RSA-2048 key, against it
on a simulated clock (`tick_at`). What is checked is what lands in the Maildirs and what
Postfix answered — not what the dispatcher believes it sent.
"""

from __future__ import annotations

import datetime as dt
import re
import smtplib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dispatcher.ledger import subscribers as subscriber_store
from dispatcher.ledger.subscriber_csv import Row
from dispatcher.ledger.tables import SubscriberState, deliveries
from dispatcher.mail import dkim
from dispatcher.settings import Settings
from tests.support.database import Database
from tests.support.delivery import SEND_DAYS, email_time, settings_for
from tests.support.dkim import DOMAIN, SELECTOR
from tests.support.dnsstub import start_dns_stub
from tests.support.ledger import add_subscribers, delivery_states, tick_at
from tests.support.mta import HOSTNAME, Mta, require_mta, start_mta

SUBSCRIBERS = 50
MAILBOXES = [f"leser{i:05d}@example.org" for i in range(SUBSCRIBERS)]  # as add_subscribers
UNKNOWN = "niemand@example.org"  #: subscribed, but no mailbox at the relay


@pytest.fixture
def relay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Mta, Path]]:
    """Postfix + OpenDKIM for MAILBOXES, and the DKIM private key whose record DNS serves
    (RSA-2048; `indirect` parametrisation with "ed25519" for an Ed25519 key)."""
    require_mta()
    kind: dkim.KeyKind = getattr(request, "param", "rsa")
    key, record = dkim.keygen(tmp_path / "dkim", SELECTOR, DOMAIN, kind=kind)
    txt = {f"{SELECTOR}._domainkey.{DOMAIN}": dkim.txt_value(record)}
    with start_dns_stub(txt) as dns, start_mta(tmp_path, MAILBOXES, dns) as mta:
        yield mta, key


def signed_settings(database: Database, mta: Mta, key: Path) -> Settings:
    return settings_for(
        database,
        mta,
        dkim_domain=DOMAIN,
        dkim_selector=SELECTOR,
        dkim_private_key_file=key,
    )


def attempts(database: Database) -> Counter[tuple[str, int]]:
    """(state, attempts) of every delivery."""
    with database.engine.connect() as connection:
        rows = connection.execute(sa.select(deliveries.c.state, deliveries.c.attempts))
        return Counter((state, count) for state, count in rows)


def test_every_subscriber_gets_one_message_and_its_signature_verifies(
    database: Database, relay: tuple[Mta, Path]
) -> None:
    mta, key = relay
    addresses = add_subscribers(database, SUBSCRIBERS, named=True)
    report = tick_at(signed_settings(database, mta, key), database, email_time(SEND_DAYS[0]))
    assert list(report.finished.values()) == ["done"] and report.channel_errors == []
    assert delivery_states(database) == {"sent": SUBSCRIBERS}

    delivered = mta.wait_for_delivery(SUBSCRIBERS)
    assert {address: len(files) for address, files in delivered.items()} == {
        address: 1 for address in addresses
    }
    results = []
    for address in addresses:
        [message] = mta.messages(address)
        assert message["To"] == f"Leserin {int(address[5:10])} <{address}>"
        [result] = message.get_all("Authentication-Results") or []
        results.append(str(result))
        assert re.match(
            rf"{re.escape(HOSTNAME)};\s+dkim=pass \(2048-bit key; unprotected\) "
            rf"header\.d={re.escape(DOMAIN)} header\.i=@{re.escape(DOMAIN)} "
            rf"header\.a=rsa-sha256 header\.s={SELECTOR} header\.b=",
            str(result),
        ), f"{address}: {result}"
    print(f"Authentication-Results of {addresses[0]}: {results[0]}")
    assert len({message["Message-ID"] for a in addresses for message in mta.messages(a)}) == (
        SUBSCRIBERS
    )


@pytest.mark.parametrize("relay", ["ed25519"], indirect=True)
def test_ed25519_signatures_verify_at_the_relay_too(
    database: Database, relay: tuple[Mta, Path]
) -> None:
    mta, key = relay
    addresses = add_subscribers(database, 5)
    tick_at(signed_settings(database, mta, key), database, email_time(SEND_DAYS[0]))
    mta.wait_for_delivery(5)
    for address in addresses:
        [message] = mta.messages(address)
        result = str(message["Authentication-Results"])
        assert re.search(
            rf"dkim=pass (?:\([^)]*\) )?header\.d={re.escape(DOMAIN)} .*header\.a=ed25519-sha256 "
            rf"header\.s={SELECTOR}\b",
            result,
        ), f"{address}: {result}"
    print(f"Authentication-Results (Ed25519) of {addresses[0]}: {result}")


def test_a_relay_without_its_milter_costs_no_attempt_and_all_arrive_once_it_is_back(
    database: Database, relay: tuple[Mta, Path]
) -> None:
    mta, key = relay
    addresses = add_subscribers(database, 20)
    settings = signed_settings(database, mta, key)
    mta.stop_opendkim()
    with smtplib.SMTP(mta.host, mta.port, timeout=30) as probe:  # what the dispatcher meets
        probe.ehlo("probe.example.net")
        code, reply = probe.mail("newsletter@news.example.org")
    assert (code, reply) == (451, b"4.7.1 Service unavailable - try again later")

    start = email_time(SEND_DAYS[0])
    # Half an hour of ticks while the relay refuses: the retry schedule of a deferred
    # recipient (1, 2, 4, 8, 16 minutes) would have used up every attempt by now.
    for minutes in (0, 1, 3, 7, 15, 31):
        report = tick_at(settings, database, start + dt.timedelta(minutes=minutes))
        assert [failure.channel for failure in report.channel_errors] == ["email"], minutes
        assert report.finished == {} and report.failed_deliveries == 0, minutes
        assert attempts(database) == {("pending", 0): 20}, f"after the tick at +{minutes} min"
    assert mta.delivered() == {} and mta.queued() == 0
    assert "milter-reject" in mta.maillog()

    mta.start_opendkim()
    report = tick_at(settings, database, start + dt.timedelta(minutes=45))
    assert report.channel_errors == [] and list(report.finished.values()) == ["done"]
    assert delivery_states(database) == {"sent": 20}
    delivered = mta.wait_for_delivery(20)
    assert {address: len(files) for address, files in delivered.items()} == {
        address: 1 for address in addresses
    }
    for address in addresses:
        [message] = mta.messages(address)
        assert "dkim=pass" in str(message["Authentication-Results"])
    # A later tick finds nothing left to send.
    tick_at(settings, database, start + dt.timedelta(minutes=60))
    assert sum(len(files) for files in mta.delivered().values()) == 20


def test_an_unknown_mailbox_bounces_the_subscriber(
    database: Database, relay: tuple[Mta, Path]
) -> None:
    mta, key = relay
    addresses = add_subscribers(database, 3)
    with database.engine.begin() as connection:
        subscriber_store.import_rows(
            connection,
            [Row(2, UNKNOWN, None)],
            source="test",
            now=dt.datetime(2019, 3, 1, tzinfo=dt.UTC),
        )
    settings = signed_settings(database, mta, key)
    report = tick_at(settings, database, email_time(SEND_DAYS[0]))
    assert list(report.finished.values()) == ["partial"] and report.failed_deliveries == 1
    with database.engine.connect() as connection:
        subscriber = subscriber_store.get(connection, UNKNOWN)
        [error] = connection.execute(
            sa.select(deliveries.c.last_error).where(deliveries.c.state == "failed")
        ).scalars()
    assert subscriber is not None and subscriber.state is SubscriberState.BOUNCED
    assert error is not None and "550" in error and "5.1.1" in error
    assert "User unknown in virtual mailbox table" in error  # Postfix's own words
    assert f"reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <{UNKNOWN}>" in mta.maillog()
    assert set(mta.wait_for_delivery(3)) == set(addresses)

    tick_at(settings, database, email_time(SEND_DAYS[1]))  # the next day: not tried again
    mta.wait_for_delivery(6)
    refused = [line for line in mta.maillog().splitlines() if "reject: RCPT" in line]
    assert len(refused) == 1 and UNKNOWN in refused[0]  # a bounced address is not tried again
    assert delivery_states(database) == {"sent": 6, "failed": 1}
