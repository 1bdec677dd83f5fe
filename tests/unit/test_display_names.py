"""Whatever a subscriber types as their name, `To:` names exactly one mailbox: theirs.

The attack: a name like `Jürgen Müller, attacker@evil.example` used to come out of the
stdlib's folder half-encoded, and receivers read two recipients. Every name is
checked with two independent parsers, `email.policy.default` and the compat32 parser
with `email.utils.getaddresses` (the code path of most older tools), on the bytes
both the fast wire template and `emails.compose` write.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import functools
import re
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import getaddresses
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dispatcher.campaign.loading import load_campaign
from dispatcher.campaign.model import Campaign
from dispatcher.content import rendering
from dispatcher.mail import compose as emails
from dispatcher.mail import mime, wire

ROOT = Path(__file__).parents[2]
SENDER = emails.Sender(
    "Clusterplattform <newsletter@news.example.org>", "https://news.example.org", "k" * 40
)
SEND_AT = dt.datetime(2019, 4, 2, 6, 0, tzinfo=dt.UTC)
#: stored address -> what RCPT TO and `To:` must carry
ADDRESSES = {
    "erika@example.org": "erika@example.org",
    "info@bücher.de": "info@xn--bcher-kva.de",
    "jürgen@example.de": "jürgen@example.de",  # only over SMTPUTF8, in a UTF-8 header
}
ADJACENT_WORDS = re.compile(rb"\?=\s+=\?")
SPECIALS = ',@:;"<>()\\.[]=?'
names = st.text(
    alphabet=st.one_of(
        st.sampled_from(SPECIALS),
        st.sampled_from(" \t\r\nabcXYZ019-_'"),
        st.characters(codec="utf-8"),  # any Unicode but lone surrogates (not valid text)
    ),
    max_size=120,
)


@functools.cache
def _setup() -> tuple[rendering.RenderedEmail, Campaign, wire.WireTemplate]:
    campaign = load_campaign(ROOT / "config" / "campaign.yaml")
    env = rendering.create_environment(ROOT / "templates")
    shared = rendering.render_email(
        env, campaign, campaign.items[0], day=dt.date(2019, 4, 2), published=[],
        imprint="Impressum", public_url=SENDER.public_url,
    )  # fmt: skip
    return shared, campaign, wire.WireTemplate(shared, campaign, SENDER, send_at=SEND_AT)


def _messages(name: str | None, address: str) -> tuple[bytes, bytes]:
    """(fast template, email package) bytes for one subscriber."""
    shared, campaign, template = _setup()
    values = dict(
        to_address=address,
        to_name=name,
        unsubscribe="https://news.example.org/u/token",
        message_id="<clusterwoche-2019.20190402.email.42@news.example.org>",
        date=SEND_AT,
    )
    fast = template.render(**values)  # type: ignore[arg-type]
    slow = emails.compose(shared, campaign, SENDER, **values).as_bytes()  # type: ignore[arg-type]
    return fast, slow


def _to_lines(data: bytes) -> bytes:
    head = data.partition(b"\r\n\r\n")[0]
    start = head.index(b"To:") if head.startswith(b"To:") else head.index(b"\r\nTo:") + 2
    end = head.find(b"\r\n", start)
    while head[end + 2 : end + 3] in (b" ", b"\t"):
        end = head.find(b"\r\n", end + 2)
    return head[start:end]


def parse_default(data: bytes) -> EmailMessage:
    """RFC 6532: a message with a UTF-8 address is UTF-8 text."""
    parsed = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parse_compat32(data: bytes) -> Message:
    if data.isascii():
        return email.message_from_bytes(data)  # the raw bytes, as old tools read them
    return email.message_from_string(data.decode("utf-8"))


def _without_spaces(text: str) -> str:
    return "".join(text.split())


def check_one_recipient(data: bytes, expected_address: str, expected_name: str) -> None:
    modern = parse_default(data)
    assert len(modern.get_all("To") or []) == 1
    [address] = modern["To"].addresses
    assert address.addr_spec == expected_address
    if ADJACENT_WORDS.search(_to_lines(data)):
        # policy.default (3.11) keeps the whitespace between two encoded words, which
        # RFC 2047 says to drop: only a long name needs two, and only spacing differs.
        assert _without_spaces(address.display_name) == _without_spaces(expected_name)
    else:
        assert address.display_name == expected_name
    for header in ("Cc", "Bcc", "Reply-To"):
        assert modern[header] is None

    old = parse_compat32(data)
    pairs = getaddresses(old.get_all("To") or [])
    assert len(pairs) == 1, pairs
    raw_name, addr = pairs[0]
    assert addr == expected_address
    assert str(make_header(decode_header(raw_name))) == expected_name  # RFC 2047 decoding

    assert max(len(line) for line in data.split(b"\r\n")) <= 998


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(name=names, stored=st.sampled_from(sorted(ADDRESSES)))
@example(name="Jürgen Müller, attacker@evil.example", stored="erika@example.org")
@example(name='"Erika" <erika@evil.example>, x@evil.example', stored="info@bücher.de")
@example(name="=?utf-8?q?x=0D=0ABcc:_evil@example.org?=", stored="erika@example.org")
@example(name="Müller (Büro); Team: A\\B", stored="jürgen@example.de")
@example(name="Jürgen " * 30, stored="info@bücher.de")
def test_to_parses_to_exactly_the_subscriber(name: str, stored: str) -> None:
    # Not through `clean_name`: the send path must be safe on its own, also for rows
    # stored before the ledger checked names as it does now.
    fast, slow = _messages(name[:200], stored)
    expected_name = mime.safe_name(name[:200])
    for data in (fast, slow):
        check_one_recipient(data, ADDRESSES[stored], expected_name)
    assert _to_lines(fast) == _to_lines(slow)  # the two send paths write the same header
    assert (fast.isascii(), slow.isascii()) == (2 * (ADDRESSES[stored].isascii(),))


def test_the_reported_name_keeps_the_foreign_address_inside_the_phrase() -> None:
    fast, _ = _messages("Jürgen Müller, attacker@evil.example", "erika@example.org")
    assert _to_lines(fast) == (
        b'To: =?utf-8?b?SsO8cmdlbiBNw7xsbGVyLA==?= "attacker@evil.example"\r\n <erika@example.org>'
    )
    check_one_recipient(fast, "erika@example.org", "Jürgen Müller, attacker@evil.example")


def test_a_title_is_quoted_not_left_as_an_obsolete_phrase() -> None:
    """ "Dr." bare is RFC 5322's obsolete phrase; inside an encoded run it made Python's
    parser read the long name with a stray space."""
    name = "Dr. Maximiliane Müller-Lüdenscheidt von und zu Hohenzollern-Sigmaringen-Württemberg"
    fast, slow = _messages(name, "erika@example.org")
    assert _to_lines(fast) == _to_lines(slow)
    assert _to_lines(fast).startswith(b'To: "Dr. Maximiliane" =?utf-8?')
    assert not ADJACENT_WORDS.search(_to_lines(fast))
    assert parse_default(fast)["To"].addresses[0].display_name == name  # exactly, no stray space
    check_one_recipient(fast, "erika@example.org", name)


TITLES = ["Dr.", "Prof.", "Dipl.-Ing.", "M.Sc.", "(Vorstand)", "Sr.", "a.b", "von", "zu", "Erika"]
UMLAUT_WORDS = ["Jürgen", "Müller-Lüdenscheidt", "Ölmann", "Hohenzollern-Württemberg", "Ärztin"]
#: realistic long names: umlaut words between ASCII ones (titles, particles, first names)
long_names = st.lists(
    st.tuples(st.sampled_from(TITLES), st.sampled_from(UMLAUT_WORDS)), min_size=1, max_size=6
).map(lambda pairs: " ".join(f"{a} {b}" for a, b in pairs))


@settings(max_examples=200, deadline=None, database=None)
@given(name=long_names)
def test_long_names_read_the_same_in_every_parser(name: str) -> None:
    fast, slow = _messages(name, "erika@example.org")
    assert _to_lines(fast) == _to_lines(slow)
    assert not ADJACENT_WORDS.search(_to_lines(fast))
    assert parse_default(fast)["To"].addresses[0].display_name == name
    check_one_recipient(fast, "erika@example.org", name)  # also compat32 + RFC 2047


def test_plain_and_special_ascii_names_stay_readable() -> None:
    assert _to_lines(_messages("Leserin 7", "erika@example.org")[0]) == (
        b"To: Leserin 7 <erika@example.org>"
    )
    assert _to_lines(_messages('Mustermann, "Erika"', "erika@example.org")[0]) == (
        b'To: "Mustermann, \\"Erika\\"" <erika@example.org>'
    )
    assert _to_lines(_messages(None, "info@bücher.de")[0]) == b"To: info@xn--bcher-kva.de"
