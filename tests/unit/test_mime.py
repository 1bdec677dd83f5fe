"""Raw bytes of the list headers, as a receiving mail server reads them (not re-decoded)."""

from __future__ import annotations

import datetime as dt
import email
from email.headerregistry import Address
from email.utils import getaddresses

from dispatcher.mail import mime


def test_long_list_unsubscribe_is_folded_never_encoded() -> None:
    https = "https://newsletter.clusterplattform.example.org/u/" + "t" * 90
    mailto = "mailto:unsubscribe@clusterplattform.example.org?subject=unsubscribe%20" + "t" * 60
    message = mime.build_email(
        subject="Grüße", text="Hallo", html="<p>Hallo</p>",
        mail_from="Clusterplattform <newsletter@clusterplattform.example.org>",
        to="erika@example.org", message_id="<m@clusterplattform.example.org>",
        date=dt.datetime(2019, 4, 2, 6, tzinfo=dt.UTC),
        list_headers=mime.ListHeaders("Clusterwoche <cw.example.org>", https, mailto),
    )  # fmt: skip
    data = message.as_bytes()
    start = data.index(b"List-Unsubscribe:")
    header = data[start : data.index(b"\r\nList-Unsubscribe-Post", start)]
    assert header == f"List-Unsubscribe: <{https}>,\r\n <{mailto}>".encode()
    assert b"=?utf-8?" not in header
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in data


def _build(mail_from: str, to: str | Address) -> bytes:
    return mime.build_email(
        subject="Grüße", text="Hallo", html="<p>Hallo</p>", mail_from=mail_from, to=to,
        message_id="<m@news.example.org>", date=dt.datetime(2019, 4, 2, 6, tzinfo=dt.UTC),
    ).as_bytes()  # fmt: skip


def test_a_sender_name_with_specials_stays_one_address() -> None:
    data = _build('"Cluster, Woche: Team" <newsletter@news.example.org>', "erika@example.org")
    assert b'From: "Cluster, Woche: Team" <newsletter@news.example.org>\r\n' in data
    assert getaddresses(email.message_from_bytes(data).get_all("From") or []) == [
        ("Cluster, Woche: Team", "newsletter@news.example.org")
    ]


def test_a_utf8_recipient_gets_a_utf8_header_and_an_idn_one_an_a_label() -> None:
    utf8 = _build("newsletter@news.example.org", mime.recipient("Jürgen", "jürgen@bücher.de"))
    assert "To: =?utf-8?q?J=C3=BCrgen?= <jürgen@bücher.de>\r\n".encode() in utf8
    idn = _build("newsletter@news.example.org", mime.recipient(None, "info@bücher.de"))
    assert b"To: info@xn--bcher-kva.de\r\n" in idn and idn.isascii()
