"""SmtpChannel against a real SMTP server (aiosmtpd on loopback): no smtplib mocks."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest

from dispatcher.channels.base import ChannelError, Envelope, ErrorKind
from dispatcher.channels.ratelimit import RateLimiter
from dispatcher.channels.smtp import (
    SmtpChannel,
    SmtpTarget,
    helo_name,
    is_bounce,
    parse_smtp_url,
)
from tests.support.smtpd import SmtpServer  # fixtures smtp_server, tls_cert: tests/conftest.py

SENDER = "newsletter@news.example.org"


def envelope(rcpt: str = "leser@example.org", n: int = 0) -> Envelope:
    data = (
        f"From: Clusterwoche <{SENDER}>\r\nTo: {rcpt}\r\nSubject: Ausgabe {n}\r\n"
        f"Message-ID: <{n}.{rcpt}@news.example.org>\r\n\r\nHallo {n}\r\n"
        ".Zeile mit Punkt am Anfang\r\n.\r\nEnde\r\n"
    ).encode()
    return Envelope(mail_from=SENDER, rcpt_to=rcpt, data=data)


@pytest.fixture
def channel(smtp_server: SmtpServer) -> Iterator[SmtpChannel]:
    channel = SmtpChannel(parse_smtp_url(smtp_server.url + "?timeout=5"))
    yield channel
    channel.close()


def test_one_thread_reuses_one_connection(smtp_server: SmtpServer, channel: SmtpChannel) -> None:
    sent = [envelope(f"r{n}@example.org", n) for n in range(50)]
    receipts = [channel.send(e, key=f"k{n}") for n, e in enumerate(sent)]

    assert smtp_server.connections == 1
    received = smtp_server.received
    assert [r.data for r in received] == [e.data for e in sent]  # exact bytes, dots unstuffed
    assert [(r.mail_from, r.rcpt_tos) for r in received] == [(SENDER, [e.rcpt_to]) for e in sent]
    assert receipts[0].provider_id == "250 2.0.0 Ok: queued as TEST0001"
    assert received[7].message["Subject"] == "Ausgabe 7"


def test_worker_threads_each_keep_one_connection(
    smtp_server: SmtpServer,
    channel: SmtpChannel,
) -> None:
    sent = {f"r{n}@example.org": envelope(f"r{n}@example.org", n) for n in range(100)}
    barrier = threading.Barrier(4, timeout=5)

    def worker(chunk: list[Envelope]) -> None:
        barrier.wait()  # all four threads are live at once, so none can inherit another's slot
        for e in chunk:
            channel.send(e, key=e.rcpt_to)

    chunks = [list(sent.values())[i::4] for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(worker, chunks))

    received = smtp_server.received
    assert smtp_server.connections == 4
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(sent)  # each exactly once
    assert all(r.data == sent[r.rcpt_tos[0]].data for r in received)


def test_temporary_failure_then_the_connection_still_works(
    smtp_server: SmtpServer,
    channel: SmtpChannel,
) -> None:
    smtp_server.script("a@example.org", "451 4.7.1 Try again later")

    with pytest.raises(ChannelError) as caught:
        channel.send(envelope("a@example.org"), key="1")
    assert (caught.value.permanent, caught.value.bounced, caught.value.ambiguous) == (
        False,
        False,
        False,
    )
    assert "451" in caught.value.message and "Try again later" in caught.value.message

    channel.send(envelope("a@example.org", 2), key="2")
    channel.send(envelope("b@example.org", 3), key="3")
    assert [r.rcpt_tos for r in smtp_server.received] == [["a@example.org"], ["b@example.org"]]
    assert smtp_server.connections == 1  # RSET kept the connection usable


@pytest.mark.parametrize(
    ("reply", "at", "bounced"),
    [
        ("550 5.1.1 <a@example.org>: Recipient address rejected: User unknown", "rcpt", True),
        ("550 Requested action not taken: mailbox unavailable", "rcpt", True),
        ("553 5.1.10 Recipient address rejected: null MX", "rcpt", True),
        ("552 5.2.2 Mailbox full", "rcpt", False),
        ("550 5.7.1 Message rejected as spam", "rcpt", False),
        ("554 5.6.0 Message content rejected", "data", False),
    ],
)
def test_permanent_failures(
    smtp_server: SmtpServer,
    channel: SmtpChannel,
    reply: str,
    at: str,
    bounced: bool,
) -> None:
    smtp_server.script("a@example.org", reply, at=at)  # type: ignore[arg-type]

    with pytest.raises(ChannelError) as caught:
        channel.send(envelope("a@example.org"), key="1")
    assert caught.value.permanent and caught.value.bounced is bounced
    assert reply[:3] in caught.value.message

    channel.send(envelope("b@example.org"), key="2")
    assert len(smtp_server.received) == 1 and smtp_server.connections == 1


def test_a_rejected_sender_is_not_a_bounce(smtp_server: SmtpServer, channel: SmtpChannel) -> None:
    """Every message would be refused: the channel is unusable until MAIL_FROM is fixed."""
    smtp_server.script(SENDER, "553 5.1.1 Sender address does not exist", at="mail")
    with pytest.raises(ChannelError) as caught:
        channel.send(envelope(), key="1")
    assert caught.value.unavailable and not caught.value.bounced
    assert "DISPATCHER_MAIL_FROM" in caught.value.message


def test_bounce_classification() -> None:
    assert is_bounce(550, "5.1.1 <x@example.org>: user unknown")
    assert is_bounce(551, "User not local; no such user here")
    assert is_bounce(550, "5.0.0 <x@example.org>... User unknown")
    assert not is_bounce(552, "5.2.2 mailbox full")
    assert not is_bounce(550, "5.7.1 mailbox unavailable: blocked by policy")
    assert not is_bounce(450, "4.1.1 user unknown")


def test_a_drop_after_the_message_is_not_resent_by_the_channel(
    smtp_server: SmtpServer,
    channel: SmtpChannel,
) -> None:
    smtp_server.drop_after(2)  # the server aborts at the end of DATA of the third message

    outcomes = []
    for n in range(6):
        try:
            channel.send(envelope(f"r{n}@example.org", n), key=str(n))
            outcomes.append("sent")
        except ChannelError as error:
            outcomes.append("ambiguous" if error.ambiguous else "error")

    # The relay may have queued message 3 before it died: resending it here would be a
    # second copy per attempt. The channel reports the doubt; the pipeline decides.
    assert outcomes == ["sent", "sent", "ambiguous", "sent", "sent", "sent"]
    received = smtp_server.received
    assert [r.rcpt_tos[0] for r in received] == [f"r{n}@example.org" for n in (0, 1, 3, 4, 5)]
    assert [r.connection for r in received] == [1, 1, 2, 2, 2]


def test_a_stale_connection_before_data_is_retried_on_a_new_one(
    smtp_server: SmtpServer,
    channel: SmtpChannel,
) -> None:
    smtp_server.script("a@example.org", "DROP")  # lost at RCPT: nothing can have arrived
    channel.send(envelope("a@example.org"), key="1")
    assert [r.rcpt_tos for r in smtp_server.received] == [["a@example.org"]]
    assert smtp_server.connections == 2


def test_a_late_reply_to_the_end_of_data_waits_for_data_timeout(
    smtp_server: SmtpServer,
) -> None:
    """RFC 5321 §4.5.3.2.6: the reply to "." may take minutes; the channel waits
    `data_timeout` for it (here 3 s against a relay that answers after 1 s)."""
    smtp_server.reply_delay = 1.0
    quick = SmtpChannel(parse_smtp_url(f"{smtp_server.url}?timeout=0.5&data_timeout=3"))
    try:
        receipt = quick.send(envelope("a@example.org"), key="1")
    finally:
        quick.close()
    assert receipt.provider_id.startswith("250")
    assert len(smtp_server.received) == 1


def test_no_reply_to_the_end_of_data_is_ambiguous(smtp_server: SmtpServer) -> None:
    smtp_server.reply_delay = 2.0  # stored, then answered after the client gave up
    impatient = SmtpChannel(parse_smtp_url(f"{smtp_server.url}?data_timeout=0.5"))
    try:
        with pytest.raises(ChannelError) as caught:
            impatient.send(envelope("a@example.org"), key="1")
    finally:
        impatient.close()
    assert caught.value.ambiguous and not caught.value.permanent
    assert "may have accepted" in caught.value.message
    assert len(smtp_server.received) == 1  # exactly one copy: the channel did not resend


# --- a server refusing the session is no verdict on any recipient ----------------------------

#: What Postfix answers at EHLO and MAIL FROM while its milter is down, with a full queue
#: disk, or when it is shutting down.
SESSION_REFUSALS = [
    "451 4.7.1 Service unavailable - try again later",
    "452 4.3.1 Insufficient system storage",
    "421 4.3.2 Service shutting down and closing transmission channel",
]


@pytest.mark.parametrize("reply", SESSION_REFUSALS)
def test_a_refused_session_makes_the_channel_unavailable(
    smtp_server: SmtpServer, channel: SmtpChannel, reply: str
) -> None:
    smtp_server.refusal = reply
    with pytest.raises(ChannelError) as caught:
        channel.send(envelope("a@example.org"), key="1")
    assert caught.value.kind is ErrorKind.UNAVAILABLE, caught.value.message
    assert reply.split()[0] in caught.value.message
    assert smtp_server.received == []

    smtp_server.refusal = None  # the relay is back: the next send opens a working session
    channel.send(envelope("a@example.org"), key="1")
    assert len(smtp_server.received) == 1


@pytest.mark.parametrize(
    "reply", ["451 4.3.0 Temporary lookup failure", "452 Insufficient system storage"]
)
def test_a_temporary_refusal_of_the_sender_is_the_channels(
    smtp_server: SmtpServer, channel: SmtpChannel, reply: str
) -> None:
    """Greylisting of the sender, a relay without disk: every message would get it."""
    smtp_server.script(SENDER, reply, at="mail")
    with pytest.raises(ChannelError) as caught:
        channel.send(envelope("a@example.org"), key="1")
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    channel.send(envelope("a@example.org"), key="2")
    assert len(smtp_server.received) == 1 and smtp_server.connections == 1


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("450 4.2.0 <a@example.org>: Recipient address rejected: Greylisted", ErrorKind.TEMPORARY),
        ("451 4.2.1 Mailbox temporarily unavailable", ErrorKind.TEMPORARY),
        ("452 4.3.1 Insufficient system storage", ErrorKind.UNAVAILABLE),
    ],
)
def test_a_temporary_refusal_of_a_recipient_is_only_about_the_system_when_it_says_so(
    smtp_server: SmtpServer, channel: SmtpChannel, reply: str, kind: ErrorKind
) -> None:
    smtp_server.script("a@example.org", reply)
    with pytest.raises(ChannelError) as caught:
        channel.send(envelope("a@example.org"), key="1")
    assert caught.value.kind is kind


def test_helo_is_a_host_name_never_an_ip_literal(smtp_server: SmtpServer) -> None:
    channel = SmtpChannel(
        parse_smtp_url(smtp_server.url + "?timeout=5"), helo="mail.news.example.org"
    )
    channel.send(envelope(), key="1")
    channel.close()
    assert smtp_server.helo_names == ["mail.news.example.org"]


@pytest.mark.parametrize(
    ("configured", "from_domain", "fqdn", "expected"),
    [
        (None, "news.example.org", "relay7.example.net", "relay7.example.net"),
        (None, "news.example.org", "c0ffee12", "news.example.org"),  # a container's short name
        (None, "news.example.org", "localhost.localdomain", "news.example.org"),
        (None, "bücher.example", "c0ffee12", "xn--bcher-kva.example"),
        ("mail.example.org.", "news.example.org", "c0ffee12", "mail.example.org"),
    ],
)
def test_helo_name_defaults(
    configured: str | None, from_domain: str, fqdn: str, expected: str
) -> None:
    assert helo_name(configured, from_domain, fqdn) == expected


@pytest.mark.parametrize("configured", ["[127.0.0.1]", "192.0.2.1", "::1", "mail", "a b.org"])
def test_a_configured_helo_must_be_a_host_name(configured: str) -> None:
    with pytest.raises(ValueError, match="DISPATCHER_SMTP_HELO"):
        helo_name(configured, "news.example.org", "relay7.example.net")


def test_rfc_5321_timeouts_are_the_defaults() -> None:
    target = parse_smtp_url("smtp://relay.example:25")
    assert (target.timeout, target.data_timeout) == (300.0, 600.0)
    with pytest.raises(ValueError, match="data_timeout"):
        parse_smtp_url("smtp://relay.example:25?data_timeout=0")


def test_dropped_twice_before_data_is_not_ambiguous(
    smtp_server: SmtpServer,
    channel: SmtpChannel,
) -> None:
    smtp_server.script("a@example.org", "DROP", "DROP")
    with pytest.raises(ChannelError) as caught:
        channel.send(envelope("a@example.org"), key="1")
    assert not caught.value.permanent and not caught.value.ambiguous


def test_server_down_makes_the_channel_unavailable() -> None:
    with SmtpServer() as server:
        url = server.url
    channel = SmtpChannel(parse_smtp_url(url + "?timeout=2"))
    with pytest.raises(ChannelError) as caught:
        channel.send(envelope(), key="1")
    assert caught.value.unavailable
    assert not caught.value.permanent and not caught.value.ambiguous


def test_rate_limiter_is_asked_once_per_message(channel: SmtpChannel) -> None:
    waits: list[float] = []
    limited = SmtpChannel(
        channel.target, rate_limiter=RateLimiter(2, clock=lambda: 0.0, sleep=waits.append)
    )
    for n in range(4):
        limited.send(envelope(n=n), key=str(n))
    limited.close()
    assert waits == [0.5, 1.0]


def test_starttls_with_auth(tls_cert: tuple[Path, Path]) -> None:
    password = "s3cr/et p@ss:w%rd#"
    with SmtpServer(tls_cert=tls_cert, require_starttls=True, auth=("mailer", password)) as server:
        base = (
            f"smtp://mailer:{{}}@{server.host}:{server.port}?starttls=true&verify=false&timeout=5"
        )
        good = SmtpChannel(parse_smtp_url(base.format(quote(password, safe=""))))
        receipt = good.send(envelope(), key="1")
        good.close()
        assert receipt.provider_id.startswith("250 ")
        assert server.received[0].tls

        wrong = "wrong-Pa55word"
        bad = SmtpChannel(parse_smtp_url(base.format(wrong)))
        with pytest.raises(ChannelError) as caught:
            bad.send(envelope(), key="2")
        assert caught.value.unavailable and not caught.value.permanent
        assert "DISPATCHER_SMTP_URL" in str(caught.value)
        assert wrong not in str(caught.value) and wrong not in repr(bad.target)


def test_certificate_is_verified_by_default(tls_cert: tuple[Path, Path]) -> None:
    with SmtpServer(tls_cert=tls_cert, require_starttls=True) as server:
        target = parse_smtp_url(server.url + "?starttls=true")
        with pytest.raises(ChannelError, match="verify=false") as caught:
            SmtpChannel(target).send(envelope(), key="1")
        assert caught.value.unavailable and not caught.value.permanent

        trusting = ssl.create_default_context(cafile=str(tls_cert[0]))
        channel = SmtpChannel(target, ssl_context=trusting)
        channel.send(envelope(), key="2")
        channel.close()
        assert len(server.received) == 1


def test_implicit_tls(tls_cert: tuple[Path, Path]) -> None:
    with SmtpServer(tls_cert=tls_cert, implicit_tls=True) as server:
        channel = SmtpChannel(parse_smtp_url(server.url + "?verify=false"))
        for n in range(3):
            channel.send(envelope(n=n), key=str(n))
        channel.close()
        assert len(server.received) == 3 and all(r.tls for r in server.received)
        assert server.connections == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.org", SmtpTarget("mail.example.org", 25, "plain")),
        ("smtps://u:p@mail.example.org", SmtpTarget("mail.example.org", 465, "tls", "u", "p")),
        (
            "smtp://user%40example.org:p%40ss%2Fw%3Ard@host:587?starttls=true&timeout=10",
            SmtpTarget("host", 587, "starttls", "user@example.org", "p@ss/w:rd", 10.0),
        ),
        ("smtp://h:2525?verify=false", SmtpTarget("h", 2525, "plain", verify=False)),
    ],
)
def test_parse_smtp_url(url: str, expected: SmtpTarget) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://u:Geheim99@host",
        "u:Geheim99@host",
        "smtp://u:Geheim99@",
        "smtp://u:Geheim99@host:99999",
        "smtp://u:Geheim99@host:abc",
        "smtp://u:Gehe/im99@host",  # unescaped "/": urlsplit would see port "Gehe"
        "smtp://u:Geheim99@host/path",
        "smtp://u:Geheim99@host?tls=yes",
        "smtp://u:Geheim99@host?timeout=soon",
        "smtps://u:Geheim99@host?starttls=true",
        "smtp://u:Geheim99%C3%A4@host",  # smtplib cannot AUTH with non-ASCII
    ],
)
def test_parse_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(ValueError, match="DISPATCHER_SMTP_URL") as caught:
        parse_smtp_url(url)
    error = caught.value
    assert "Geheim" not in str(error)
    # No chained exception whose traceback could print the URL parts.
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_password_stays_out_of_repr_and_str() -> None:
    target = parse_smtp_url("smtps://u:Geheim99@host")
    assert "Geheim99" not in repr(target) and "Geheim99" not in str(target)
