"""rspamd as a second judge: every sample newsletter, received from the relay, scores ≤ 0.

Switched on by DISPATCHER_TEST_RSPAMD, the path of the `rspamd` binary (`.ci/run` sets it from
`scripts/rspamd-setup`); skipped elsewhere.

Each of the eight sample emails is rendered for a sample subscriber, signed with a fresh
RSA-2048 key for news.example.org (the From domain) and handed to a private rspamd with Debian's
stock rules (tests/support/rspamd.py) as a receiving mail server passes it on: the connection
came from the sender's relay — 192.0.2.25, HELO and verified host name relay.example.net (the
Postfix of tests/support/mta.py) — with the envelope sender newsletter@news.example.org. rspamd's only DNS server is a stub that
publishes what the sending domain publishes: the DKIM key, SPF (`ip4:192.0.2.25 -all`), DMARC
(`p=reject`), A records for the relay and the domain; every other name (blocklists, URL lists,
rspamd's map hosts) is NXDOMAIN, so nothing leaves the machine and no list lists us.

What a subscriber's provider would see: SPF, DKIM and DMARC pass (R_SPF_ALLOW, R_DKIM_ALLOW,
DMARC_POLICY_ALLOW) and no symbol scores positive — in particular no content symbol (the
newsletter once scored URI_COUNT_ODD +1.0, an image URL only in the HTML part, and
MANY_INVISIBLE_PARTS, a hidden preheader). The Date is the time of the test, not the
campaign's 2019 send time (DATE_IN_PAST would judge the test, not the mail). No Received header
is made up here (rspamd judges a hand-written Postfix line a forgery: INVALID_POSTFIX_RECEIVED);
with DISPATCHER_TEST_MTA set too, one newsletter goes through the real Postfix and OpenDKIM
first and is scored as delivered, with the relay's own Received header — then the only symbol
above 0 is RCVD_NO_TLS_LAST, which judges the test relay's plain loopback hop (RELAY_ARTEFACTS).

Controls show that the judge bites: the old hidden preheader and an HTML-only image URL, and the
same newsletter from an address SPF does not list.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from dispatcher.campaign.loading import load_campaign
from dispatcher.mail import dkim
from tests.support.dkim import DOMAIN, ROOT, SELECTOR, sample_message, signer_for
from tests.support.dnsstub import DnsStub, start_dns_stub
from tests.support.mta import HOSTNAME, start_mta
from tests.support.rspamd import Rspamd, Verdict, start_rspamd

RSPAMD = os.environ.get("DISPATCHER_TEST_RSPAMD")
pytestmark = pytest.mark.skipif(
    not RSPAMD,
    reason="rspamd tests need DISPATCHER_TEST_RSPAMD=<path of rspamd> "
    "(set by .ci/run from scripts/rspamd-setup)",
)
ITEM_IDS = [item.id for item in load_campaign(ROOT / "config" / "campaign.yaml").items]
MAX_SCORE = 0.0
RELAY_IP = "192.0.2.25"  #: TEST-NET-1 (RFC 5737): the sender's relay as the receiver sees it
RELAY = HOSTNAME  #: the relay's name: HELO and verified host name, as Postfix in mta.py
ELSEWHERE_IP, ELSEWHERE = "198.51.100.7", "mx.elsewhere.example"  #: TEST-NET-2: not in SPF
MAIL_FROM = f"newsletter@{DOMAIN}"
RECIPIENT = "erika.mustermann@example.org"  #: the sample subscriber (PREVIEW_ADDRESS)
AUTHENTICATED = {"R_SPF_ALLOW", "R_DKIM_ALLOW", "DMARC_POLICY_ALLOW"}


@dataclass(frozen=True)
class Signed:
    emails: dict[str, bytes]  #: item id -> the signed message, as `send_one` sends it
    signer: dkim.DkimSigner
    key_record: str  #: the DKIM key's TXT value


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    path, record = dkim.keygen(tmp_path_factory.mktemp("dkim"), SELECTOR, DOMAIN, kind="rsa")
    signer = signer_for(path)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    emails = {
        item_id: signer.sign(sample_message(index, date=now).as_bytes())
        for index, item_id in enumerate(ITEM_IDS)
    }
    return Signed(emails, signer, dkim.txt_value(record))


@pytest.fixture(scope="module")
def stub_dns(signed: Signed) -> Iterator[DnsStub]:
    txt = {
        f"{SELECTOR}._domainkey.{DOMAIN}": signed.key_record,
        DOMAIN: f"v=spf1 ip4:{RELAY_IP} -all",
        f"_dmarc.{DOMAIN}": "v=DMARC1; p=reject",
    }
    # The domain has an address (its public URL is https://news.example.org); the HELO
    # names resolve to their senders.
    a = {DOMAIN: "192.0.2.80", RELAY: RELAY_IP, ELSEWHERE: ELSEWHERE_IP}
    with start_dns_stub(txt=txt, a=a, port=0) as stub:
        yield stub


@pytest.fixture(scope="module")
def judge(stub_dns: DnsStub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rspamd]:
    assert RSPAMD
    with start_rspamd(Path(RSPAMD), tmp_path_factory.mktemp("rspamd"), dns=stub_dns) as server:
        yield server


def from_the_relay(judge: Rspamd, message: bytes, ip: str = RELAY_IP) -> Verdict:
    """rspamd's verdict as the subscriber's mail server asks for it after the SMTP session."""
    helo = RELAY if ip == RELAY_IP else ELSEWHERE
    return judge.check(
        message, ip=ip, mail_from=MAIL_FROM, rcpt=RECIPIENT, helo=helo, hostname=helo
    )


@pytest.mark.parametrize("item_id", ITEM_IDS)
def test_no_symbol_scores_against_the_newsletter(
    item_id: str, signed: Signed, judge: Rspamd, stub_dns: DnsStub
) -> None:
    verdict = from_the_relay(judge, signed.emails[item_id])
    print(f"rspamd {item_id}: {verdict}")
    assert f"{SELECTOR}._domainkey.{DOMAIN} TXT" in stub_dns.queries
    assert set(verdict.symbols) >= AUTHENTICATED, verdict
    assert verdict.positive() == {}, verdict
    assert verdict.score <= MAX_SCORE, verdict
    assert verdict.action == "no action", verdict


def test_the_judge_bites_hidden_text_and_an_html_only_url(signed: Signed, judge: Rspamd) -> None:
    """Control: the first newsletter (it has an image) as it was before — the preheader a
    hidden div, the image URL only in the HTML part."""
    newsletter = sample_message(0, date=dt.datetime.now(dt.UTC).replace(microsecond=0))
    html_part, text_part = newsletter.get_body(("html",)), newsletter.get_body(("plain",))
    assert isinstance(html_part, EmailMessage) and isinstance(text_part, EmailMessage)
    html, text = html_part.get_content(), text_part.get_content()
    hidden = '<div style="display: none; max-height: 0; overflow: hidden;">Kurz gesagt</div>'
    html = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + hidden, html, count=1)
    text, images = re.subn(r"\n\nBild: [^\n]*(\n[^\n]*)?\(https://[^)]+\.jpg\)", "", text)
    assert images == 1, text
    html_part.set_content(html, subtype="html")
    text_part.set_content(text)
    verdict = from_the_relay(judge, signed.signer.sign(newsletter.as_bytes()))
    print(f"rspamd control (hidden text, HTML-only URL): {verdict}")
    assert {"MANY_INVISIBLE_PARTS", "URI_COUNT_ODD"} <= set(verdict.positive()), verdict


def test_the_judge_bites_a_sender_spf_does_not_list(signed: Signed, judge: Rspamd) -> None:
    """Control: the same signed newsletter from another address fails SPF; DKIM still passes
    (it signs the message, not the path), so DMARC passes, by DKIM alone."""
    verdict = from_the_relay(judge, signed.emails[ITEM_IDS[0]], ip=ELSEWHERE_IP)
    print(f"rspamd control (not the relay): {verdict}")
    assert "R_SPF_FAIL" in verdict.symbols and "R_SPF_ALLOW" not in verdict.symbols, verdict
    assert "R_DKIM_ALLOW" in verdict.symbols, verdict
    assert verdict.score > MAX_SCORE, verdict


#: Symbols above 0 that judge the test's relay, not the newsletter: the reason for each.
RELAY_ARTEFACTS = {
    "RCVD_NO_TLS_LAST": "the test relay takes the dispatcher's mail over loopback without "
    "STARTTLS (the hop Postfix's Received header describes); TLS is the relay's setup",
}


def test_received_through_the_real_relay(signed: Signed, judge: Rspamd, tmp_path: Path) -> None:
    """The first newsletter submitted to the real Postfix, OpenDKIM verifying as its milter,
    and scored as Postfix delivered it: with its Received header and the milter's
    Authentication-Results. Needs DISPATCHER_TEST_MTA as well (skipped without)."""
    txt = {f"{SELECTOR}._domainkey.{DOMAIN}": signed.key_record}
    with start_dns_stub(txt) as dns, start_mta(tmp_path, [RECIPIENT], dns) as mta:
        with smtplib.SMTP(mta.host, mta.port, local_hostname=f"dispatcher.{DOMAIN}") as smtp:
            smtp.sendmail(MAIL_FROM, [RECIPIENT], signed.emails[ITEM_IDS[0]])
        (path,) = mta.wait_for_delivery(1)[RECIPIENT]
        delivered = path.read_bytes()
    head = delivered.partition(b"\n\n")[0].decode()
    received = rf"^Received: from dispatcher\.news\.example\.org .*?\sby {re.escape(RELAY)} "
    assert re.search(received, head, re.M | re.S), head
    assert re.search(rf"^Authentication-Results: {re.escape(RELAY)};\s+dkim=pass", head, re.M), head
    verdict = from_the_relay(judge, delivered)
    print(f"rspamd {ITEM_IDS[0]} through Postfix: {verdict}")
    assert set(verdict.symbols) >= AUTHENTICATED, verdict
    assert set(verdict.positive()) <= set(RELAY_ARTEFACTS), verdict
    assert verdict.score <= MAX_SCORE, verdict
