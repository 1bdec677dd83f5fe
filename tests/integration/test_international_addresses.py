"""IDN and UTF-8 addresses and hostile names through a real tick, a real relay and the web form.

The relay is aiosmtpd (`tests/support/smtpd.py`), once offering SMTPUTF8 and once
not, as real relays differ. Each test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections import Counter
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from dispatcher.ledger import subscribers as subscriber_store
from dispatcher.ledger.subscriber_csv import Row
from dispatcher.ledger.tables import deliveries, subscribers
from dispatcher.mail.addresses import normalise
from tests.support.database import Database
from tests.support.ledger import delivery_states, tick_at
from tests.support.smtpd import Received, SmtpServer
from tests.support.webapp import serve_webapp, web_settings

SEND = dt.datetime(2019, 4, 2, 8, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
ATTACKER_NAME = "Jürgen Müller, attacker@evil.example"
#: stored address, name -> what RCPT TO and To: carry
SUBSCRIBERS = {
    ("info@bücher.de", "Bücherstube"): "info@xn--bcher-kva.de",
    ("jürgen@example.de", "Jürgen"): "jürgen@example.de",
    ("leser@example.org", ATTACKER_NAME): "leser@example.org",
}


def _recipients_of(received: Received) -> tuple[list[str], list[str]]:
    """The To: addresses as policy.default reads them and as compat32 getaddresses does."""
    text = received.data.decode("utf-8")  # RFC 6532: UTF-8 headers when the address is
    modern = email.message_from_string(text, policy=email.policy.default)
    assert isinstance(modern, EmailMessage)
    old = email.message_from_bytes(received.data) if received.data.isascii() else (
        email.message_from_string(text)
    )  # fmt: skip
    return (
        [a.addr_spec for a in modern["To"].addresses],
        [addr for _, addr in getaddresses(old.get_all("To") or [])],
    )


@pytest.mark.parametrize("smtputf8", [True, False], ids=["smtputf8", "ascii-relay"])
def test_idn_utf8_and_hostile_names_one_tick(
    database: Database, smtputf8: bool, tmp_path: Path
) -> None:
    rows = [Row(i + 2, normalise(a), name) for i, (a, name) in enumerate(SUBSCRIBERS)]
    with database.engine.begin() as connection:
        subscriber_store.import_rows(connection, rows, source="test", now=SEND)

    with SmtpServer(smtputf8=smtputf8) as relay:
        report = tick_at(web_settings(database, relay, tmp_path), database, SEND)

    received = relay.received
    rcpts = Counter(r for message in received for r in message.rcpt_tos)
    expected = {wire for wire in SUBSCRIBERS.values() if smtputf8 or wire.isascii()}
    assert rcpts == Counter(expected)  # exactly one RCPT each, IDN as A-label
    assert "attacker@evil.example" not in rcpts
    for message in received:
        modern, old = _recipients_of(message)
        assert modern == old == message.rcpt_tos  # one address in To:, the subscriber's
        assert message.smtputf8 == (not message.rcpt_tos[0].isascii())
    hostile = next(m for m in received if m.rcpt_tos == ["leser@example.org"])
    assert hostile.message["To"].addresses[0].display_name == ATTACKER_NAME

    with database.engine.connect() as connection:
        outcome = {
            email_: (state, error)
            for email_, state, error in connection.execute(
                sa.select(subscribers.c.email, deliveries.c.state, deliveries.c.last_error).join(
                    subscribers, subscribers.c.id == deliveries.c.subscriber_id
                )
            )
        }
        states = dict(connection.execute(sa.select(subscribers.c.email, subscribers.c.state)).all())
    if smtputf8:
        assert delivery_states(database) == {"sent": 3}
        assert list(report.finished.values()) == ["done"]
    else:
        assert delivery_states(database) == {"sent": 2, "failed": 1}
        state, error = outcome["jürgen@example.de"]
        assert state == "failed"
        assert "needs SMTPUTF8" in error and "crashed" not in error
        assert "Traceback" not in error and "UnicodeEncodeError" not in error
    assert set(states.values()) == {"active"}  # a relay without SMTPUTF8 is no bounce


def test_subscribe_with_an_idn_address(database: Database, tmp_path: Path) -> None:
    with SmtpServer() as relay:  # no SMTPUTF8: an IDN domain needs none
        for app in serve_webapp(database, relay, tmp_path):
            answers = [
                requests.post(
                    f"{app.url}/subscribe",
                    data={"email": address, "name": ATTACKER_NAME, "consent": "ja"},
                    timeout=10,
                )
                for address in ("Info@Bücher.DE", "info@xn--bcher-kva.de", "jürgen@example.de")
            ]
            assert [a.status_code for a in answers] == [200, 200, 200]
            assert app.state.background.join()  # the ledger work and mail follow the answer
            with database.engine.connect() as connection:
                stored = sorted(connection.execute(sa.select(subscribers.c.email)).scalars())
            # One canonical form: the A-label spelling is the same subscriber.
            assert stored == ["info@bücher.de", "jürgen@example.de"]
            [confirmation] = relay.received  # the UTF-8 address: not sent, no 500
            assert confirmation.rcpt_tos == ["info@xn--bcher-kva.de"]
            modern, old = _recipients_of(confirmation)
            assert modern == old == ["info@xn--bcher-kva.de"]
