"""SpamAssassin as a judge: every sample newsletter, DKIM-signed, scores at most 0.0.

Switched on by DISPATCHER_TEST_SPAMASSASSIN, the path of the `spamassassin` binary
(`.ci/run` sets it from `scripts/spamassassin-setup`); skipped elsewhere.

Each of the eight sample emails is rendered for a sample subscriber, signed with a fresh
RSA-2048 key for news.example.org (the From domain) and scored twice, with the stock rules:

* `local`: `spamassassin -L -t`, local tests only. SpamAssassin's DKIM rules are network
  rules, so none of them fires here: the signature is neither rewarded nor checked.
* `dkim`: network tests on, but SpamAssassin's only DNS server is a stub on 127.0.0.1 that
  knows the DKIM key record and answers NXDOMAIN to everything else (blocklists, URIBLs).
  Nothing leaves the machine, and SpamAssassin's own verifier (Perl Mail::DKIM, independent of
  dkimpy) must find the signature valid and aligned: DKIM_VALID and DKIM_VALID_AU fire.

Bayes is off (an untrained database scores nothing, and autolearning would make runs depend
on earlier ones); HOME and the user preferences are a temporary directory. The score is the
exact sum of the rules' scores (`_TESTSSCORES_`), not the one-decimal `score=` of the report.
No Received header is added: the relay path (PTR, HELO, SPF) belongs to the mail server, not
to the message, so NO_RECEIVED/NO_RELAYS (−0.001 each, informational) fire.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from dispatcher.campaign.loading import load_campaign
from dispatcher.mail import dkim
from dispatcher.mail.mime import POLICY
from tests.support.dkim import DOMAIN, ROOT, SELECTOR, sample_message, signer_for
from tests.support.dnsstub import DnsStub, start_dns_stub

SPAMASSASSIN = os.environ.get("DISPATCHER_TEST_SPAMASSASSIN")
pytestmark = pytest.mark.skipif(
    not SPAMASSASSIN,
    reason="SpamAssassin tests need DISPATCHER_TEST_SPAMASSASSIN=<path of spamassassin> "
    "(set by .ci/run from scripts/spamassassin-setup)",
)
ITEM_IDS = [item.id for item in load_campaign(ROOT / "config" / "campaign.yaml").items]
MAX_SCORE = 0.0
COMMON_CONFIG = (
    "use_bayes 0",
    "bayes_auto_learn 0",
    # One header with every rule that fired and its exact score.
    "add_header all Tests _TESTSSCORES(,)_",
)


@dataclass(frozen=True)
class Verdict:
    score: float  #: exact sum of the rules' scores
    rules: dict[str, float]
    status: str  #: the X-Spam-Status header, unfolded


@pytest.fixture(scope="module")
def signed_emails(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], str]:
    """The eight newsletters, signed as `send_one` sends them; and the key's TXT record."""
    path, record = dkim.keygen(tmp_path_factory.mktemp("dkim"), SELECTOR, DOMAIN, kind="rsa")
    signer = signer_for(path)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    emails = {
        item_id: signer.sign(sample_message(index, date=now).as_bytes())
        for index, item_id in enumerate(ITEM_IDS)
    }
    return emails, record


@pytest.fixture(scope="module")
def stub_dns(signed_emails: tuple[dict[str, bytes], str]) -> Iterator[DnsStub]:
    record = {f"{SELECTOR}._domainkey.{DOMAIN}": dkim.txt_value(signed_emails[1])}
    with start_dns_stub(txt=record, port=0) as server:
        yield server


def spamassassin(message: bytes, home: Path, *options: str, local: bool = False) -> Verdict:
    assert SPAMASSASSIN
    home.mkdir(parents=True, exist_ok=True)
    prefs = home / "user_prefs"
    prefs.touch()
    config = [f"--cf={line}" for line in (*COMMON_CONFIG, *options)]
    result = subprocess.run(
        [SPAMASSASSIN, *(["-L"] if local else []), "-t", "-x", "-p", str(prefs), *config],
        input=message,
        capture_output=True,
        timeout=120,
        env={**os.environ, "HOME": str(home), "LANG": "C.UTF-8"},
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    output = result.stdout.replace(b"\r\n", b"\n")  # SpamAssassin keeps the input's CRLF
    head = output.partition(b"\n\n")[0].decode("utf-8", errors="replace")
    unfolded = head.replace("\n\t", " ").replace("\n ", " ").splitlines()
    fields = {
        name.lower(): value.strip()
        for name, _, value in (line.partition(":") for line in unfolded)
        if name in ("X-Spam-Status", "X-Spam-Tests")
    }
    assert "x-spam-status" in fields, head
    rules: dict[str, float] = {}
    for pair in filter(None, fields.get("x-spam-tests", "").replace(" ", "").split(",")):
        name, _, score = pair.partition("=")
        rules[name] = float(score)
    return Verdict(round(sum(rules.values()), 3), rules, fields["x-spam-status"])


def describe(item_id: str, mode: str, verdict: Verdict) -> str:
    rules = ", ".join(f"{name} {score:+g}" for name, score in sorted(verdict.rules.items()))
    return f"spamassassin [{mode}] {item_id}: score {verdict.score:+.3f} — {rules or 'no rules'}"


@pytest.mark.parametrize("item_id", ITEM_IDS)
def test_local_rules_score_at_most_zero(
    item_id: str, signed_emails: tuple[dict[str, bytes], str], tmp_path: Path
) -> None:
    verdict = spamassassin(signed_emails[0][item_id], tmp_path / "home", local=True)
    print(describe(item_id, "local", verdict))
    assert verdict.score <= MAX_SCORE, describe(item_id, "local", verdict)
    assert not {"DKIM_INVALID", "MIME_HTML_ONLY", "MISSING_MID", "MISSING_DATE"} & set(
        verdict.rules
    )


@pytest.mark.parametrize("item_id", ITEM_IDS)
def test_with_the_dkim_key_in_dns_the_signature_counts(
    item_id: str, signed_emails: tuple[dict[str, bytes], str], stub_dns: DnsStub, tmp_path: Path
) -> None:
    verdict = spamassassin(
        signed_emails[0][item_id],
        tmp_path / "home",
        f"dns_server 127.0.0.1:{stub_dns.port}",
        "dns_available yes",
        # The network checks that do not go through DNS: off (and not installed by Debian).
        "use_razor2 0",
        "use_pyzor 0",
        "use_dcc 0",
    )
    print(describe(item_id, "dkim", verdict))
    assert f"{SELECTOR}._domainkey.{DOMAIN} TXT" in stub_dns.queries
    assert {"DKIM_SIGNED", "DKIM_VALID", "DKIM_VALID_AU"} <= set(verdict.rules), verdict.status
    assert "DKIM_INVALID" not in verdict.rules
    assert verdict.score <= MAX_SCORE, describe(item_id, "dkim", verdict)


def test_the_judge_bites(signed_emails: tuple[dict[str, bytes], str], tmp_path: Path) -> None:
    """Control: the same newsletter as HTML only, unsigned, with a shouting subject scores > 0."""
    newsletter = sample_message(0, date=dt.datetime.now(dt.UTC).replace(microsecond=0))
    html = newsletter.get_body(("html",))
    assert html is not None
    message = EmailMessage(policy=POLICY)
    for name in ("From", "To", "Date", "Message-ID"):
        message[name] = newsletter[name]
    message["Subject"] = "GEWINNEN SIE JETZT!!! 100% KOSTENLOS"
    message.set_content(html.get_content(), subtype="html")  # no text part
    verdict = spamassassin(message.as_bytes(), tmp_path / "home", local=True)
    print(describe("control (HTML only)", "local", verdict))
    assert "MIME_HTML_ONLY" in verdict.rules and verdict.score > MAX_SCORE
