"""The fast message template sends exactly what `emails.compose` builds."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from dispatcher.campaign.loading import load_campaign
from dispatcher.content import rendering
from dispatcher.mail import compose as emails
from dispatcher.mail import wire
from dispatcher.mail.addresses import wire_form

ROOT = Path(__file__).parents[2]
SENDER = emails.Sender(
    "Clusterplattform <newsletter@news.example.org>", "https://news.example.org", "k" * 40
)
SEND_AT = dt.datetime(2019, 4, 2, 6, 0, tzinfo=dt.UTC)


def parse(data: bytes) -> EmailMessage:
    """`policy.default`; a message with a UTF-8 address (RFC 6532) is UTF-8 text."""
    message = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.fixture(scope="module")
def setup() -> tuple[rendering.RenderedEmail, wire.WireTemplate]:
    campaign = load_campaign(ROOT / "config" / "campaign.yaml")
    env = rendering.create_environment(ROOT / "templates")
    shared = rendering.render_email(
        env, campaign, campaign.items[0], day=dt.date(2019, 4, 2), published=[],
        imprint="Impressum\nMusterstraße 1", public_url=SENDER.public_url,
    )  # fmt: skip
    return shared, wire.WireTemplate(shared, campaign, SENDER, send_at=SEND_AT)


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("Erika Müller", "erika@example.org"),
        (None, "erika@example.org"),
        ('Mustermann, "Erika"', "erika@example.org"),
        ("Jürgen " * 12, "erika@example.org"),
        ("Jürgen Müller, attacker@evil.example", "erika@example.org"),
        ("Bücherstube", "info@bücher.de"),
        (None, "info@bücher.de"),
        ("Jürgen", "jürgen@example.de"),
    ],
)
def test_same_message_as_the_email_package(
    setup: tuple[rendering.RenderedEmail, wire.WireTemplate], name: str | None, address: str
) -> None:
    shared, template = setup
    campaign = load_campaign(ROOT / "config" / "campaign.yaml")
    values = dict(
        to_address=address,
        to_name=name,
        unsubscribe=emails.unsubscribe_url(SENDER, subscriber_id=42, campaign_id=campaign.id),
        message_id="<clusterwoche-2019.20190402.email.42@news.example.org>",
        date=dt.datetime(2019, 4, 2, 8, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    )
    fast_bytes = template.render(**values)  # type: ignore[arg-type]
    fast = parse(fast_bytes)
    slow = parse(emails.compose(shared, campaign, SENDER, **values).as_bytes())  # type: ignore[arg-type]
    assert sorted(fast.keys()) == sorted(slow.keys())
    for header in fast:
        if header != "Content-Type":  # only the random MIME boundary differs
            assert str(fast[header]) == str(slow[header]), header
    for kind in ("plain", "html"):
        fast_part, slow_part = fast.get_body((kind,)), slow.get_body((kind,))
        assert fast_part is not None and slow_part is not None
        assert fast_part.get_content() == slow_part.get_content()
        assert fast_part["Content-Transfer-Encoding"] == "quoted-printable"
    [to] = fast["To"].addresses
    assert to.addr_spec == wire_form(address)  # IDN domain as A-label
    # 7-bit clean, but for the UTF-8 address a relay only takes with SMTPUTF8
    assert fast_bytes.isascii() == wire_form(address).isascii()
    assert all(len(line) <= 998 for line in fast_bytes.split(b"\r\n"))
    assert b"\n" not in fast_bytes.replace(b"\r\n", b"")  # CRLF only


def test_a_name_cannot_inject_a_header(
    setup: tuple[rendering.RenderedEmail, wire.WireTemplate],
) -> None:
    _, template = setup
    data = template.render(
        to_address="erika@example.org",
        to_name="Erika\r\nBcc: victim@example.org",
        unsubscribe="https://news.example.org/u/x",
        message_id="<m@news.example.org>",
        date=SEND_AT,
    )
    message = parse(data)
    assert message["Bcc"] is None
    assert "Bcc" in str(message["To"])  # kept as harmless text inside the name
