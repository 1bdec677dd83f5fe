"""DKIM signing (dispatcher.mail.dkim): real newsletters, signed and verified offline with dkimpy.

Each signature is checked by `dkim.verify` with a DNS function that answers from the record
`keygen` printed, so the test also proves that the published record fits the key.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import re
import stat
import time
import traceback
from collections.abc import Callable
from email import message_from_bytes
from email import policy as email_policy
from pathlib import Path

import dkim as dkimpy  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from dispatcher.cli import dkim as cli_dkim
from dispatcher.cli.preview import PREVIEW_ADDRESS
from dispatcher.mail import dkim
from dispatcher.mail.mime import build_email
from dispatcher.settings import Settings
from tests.support.dkim import (
    DOMAIN,
    MAIL_FROM,
    SELECTOR,
    sample_message,
    sign_with_dkimpy,
    signer_for,
)

SECRET_MARK = "SECRET-KEY-MATERIAL"


def dns_for(
    record: str, *, selector: str = SELECTOR, domain: str = DOMAIN
) -> Callable[..., bytes | None]:
    """An offline `dnsfunc`: the TXT value of `record` for its name, nothing for any other."""
    name = f"{selector}._domainkey.{domain}.".encode()
    value = dkim.txt_value(record).encode()

    def dnsfunc(queried: bytes, timeout: int = 5) -> bytes | None:
        return value if queried.lower() == name else None

    return dnsfunc


def signature_tags(signed: bytes) -> dict[str, str]:
    header = message_from_bytes(signed, policy=email_policy.SMTP)["DKIM-Signature"]
    value = re.sub(r"\s+", "", str(header))
    return dict(part.split("=", 1) for part in value.split(";") if part)


def replace_header(data: bytes, name: bytes, value: bytes) -> bytes:
    """`data` with the (single-line) header `name` given another value, bytes untouched else."""
    pattern = re.compile(
        rb"^(" + re.escape(name) + rb":)[^\r\n]*(\r\n(?:[ \t][^\r\n]*\r\n)*)", re.I | re.M
    )
    changed, count = pattern.subn(lambda m: m[1] + b" " + value + b"\r\n", data, count=1)
    assert count == 1, name
    return changed


@pytest.fixture(scope="module", params=["rsa", "ed25519"])
def keypair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dkim.DkimSigner, str]:
    path, record = dkim.keygen(
        tmp_path_factory.mktemp("dkim"), SELECTOR, DOMAIN, kind=request.param
    )
    return signer_for(path), record


# --- signing and verifying -------------------------------------------------------------------


@pytest.mark.parametrize("index", range(8))
def test_every_sample_newsletter_verifies(keypair: tuple[dkim.DkimSigner, str], index: int) -> None:
    signer, record = keypair
    data = sample_message(index).as_bytes()
    signed = signer.sign(data)
    assert signed.startswith(b"DKIM-Signature: ") and signed.endswith(data)
    assert dkimpy.verify(signed, dnsfunc=dns_for(record))


def test_algorithm_follows_the_key(keypair: tuple[dkim.DkimSigner, str]) -> None:
    signer, record = keypair
    tags = signature_tags(signer.sign(sample_message().as_bytes()))
    expected = "ed25519-sha256" if "k=ed25519" in record else "rsa-sha256"
    assert signer.algorithm == tags["a"] == expected
    assert (tags["d"], tags["s"], tags["c"]) == (DOMAIN, SELECTOR, "relaxed/relaxed")


def test_h_tag_covers_the_one_click_headers_and_oversigns_from(
    keypair: tuple[dkim.DkimSigner, str],
) -> None:
    signer, _ = keypair
    message = sample_message()
    signed_headers = signature_tags(signer.sign(message.as_bytes()))["h"].split(":")
    for name in ("to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
                 "list-unsubscribe-post", "mime-version", "content-type"):  # fmt: skip
        assert name in signed_headers
    if message["Feedback-ID"] is not None:
        assert "feedback-id" in signed_headers
    assert signed_headers[0] == signed_headers[-1] == "from"
    assert signed_headers.count("from") == 2


def test_headers_the_message_lacks_are_not_listed(keypair: tuple[dkim.DkimSigner, str]) -> None:
    """dkimpy would list absent names in h= (signing them as absent); we list what exists."""
    signer, record = keypair
    confirm = build_email(  # transactional: no list headers
        subject="Bitte bestätigen Sie Ihr Abonnement",
        text="Guten Tag,\n",
        html="<p>Guten Tag,</p>",
        mail_from=MAIL_FROM,
        to=PREVIEW_ADDRESS,
        message_id=f"<c1@{DOMAIN}>",
        date=dt.datetime(2025, 4, 1, 8, tzinfo=dt.UTC),
    )
    signed = signer.sign(confirm.as_bytes())
    listed = signature_tags(signed)["h"].split(":")
    assert not {"list-id", "list-unsubscribe", "list-unsubscribe-post", "feedback-id"} & set(listed)
    assert dkimpy.verify(signed, dnsfunc=dns_for(record))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"Subject", b"Gewinnen Sie jetzt!"),
        (b"List-Unsubscribe-Post", b"List-Unsubscribe=Two-Clicks"),
        (b"List-Unsubscribe", b"<https://evil.example.net/u/1>"),
        (b"From", b"Bank <service@bank.example>"),
        (b"Date", b"Mon, 01 Jan 2024 00:00:00 +0000"),
    ],
)
def test_a_changed_header_breaks_the_signature(
    keypair: tuple[dkim.DkimSigner, str], name: bytes, value: bytes
) -> None:
    signer, record = keypair
    signed = signer.sign(sample_message().as_bytes())
    assert dkimpy.verify(signed, dnsfunc=dns_for(record))
    assert not dkimpy.verify(replace_header(signed, name, value), dnsfunc=dns_for(record))


def test_an_added_from_or_a_changed_body_breaks_the_signature(
    keypair: tuple[dkim.DkimSigner, str],
) -> None:
    signer, record = keypair
    signed = signer.sign(sample_message().as_bytes())
    head, _, body = signed.partition(b"\r\n\r\n")
    second_from = head + b"\r\nFrom: Bank <service@bank.example>\r\n\r\n" + body
    assert not dkimpy.verify(second_from, dnsfunc=dns_for(record))
    assert not dkimpy.verify(
        signed.replace(b"Zur Reportage", b"Zum Gewinnspiel"), dnsfunc=dns_for(record)
    )


def test_another_key_or_no_record_does_not_verify(
    tmp_path: Path, keypair: tuple[dkim.DkimSigner, str]
) -> None:
    signer, _ = keypair
    _, other_record = dkim.keygen(tmp_path, "other", DOMAIN)
    signed = signer.sign(sample_message().as_bytes())
    assert not dkimpy.verify(signed, dnsfunc=dns_for(other_record))
    assert not dkimpy.verify(signed, dnsfunc=lambda name, timeout=5: None)


def test_the_key_never_shows_in_repr(keypair: tuple[dkim.DkimSigner, str]) -> None:
    signer, _ = keypair
    assert signer.private_key
    assert signer.private_key.decode() not in repr(signer)
    assert "private_key" not in repr(signer)


# --- the OpenSSL path against dkimpy's own signing -------------------------------------------

_WSP = st.sampled_from([" ", "  ", "\t", " \t "])
_TEXT = st.text(alphabet=st.sampled_from("abcXYZ019=;:<>@.-_/\"'ä€"), min_size=0, max_size=12).map(
    lambda text: text.encode("utf-8")
)
_NAMES = st.sampled_from(
    [b"to", b"TO", b"Subject", b"Date", b"Message-ID", b"List-Id",
     b"List-Unsubscribe", b"List-Unsubscribe-Post", b"MIME-Version", b"Content-Type",
     b"Feedback-ID", b"X-Mailer", b"Received", b"Reply-To"]
)  # fmt: skip


@st.composite
def _header_value(draw: st.DrawFn) -> bytes:
    """Words with runs of spaces and tabs, sometimes folded, sometimes trailing whitespace."""
    words = draw(st.lists(_TEXT, min_size=0, max_size=5))
    value = b""
    for word in words:
        gap = draw(st.sampled_from([b" ", b"  ", b"\t", b"\r\n ", b"\r\n\t", b" \r\n  "]))
        value += gap + word
    return value + draw(st.sampled_from([b"", b" ", b"\t "]))


@st.composite
def random_messages(draw: st.DrawFn) -> bytes:
    """A message with one From (a receiver's verifier counts a second From as an addition),
    other headers in any order (some twice, any case, folded, with odd whitespace) and a body
    of lines with runs of whitespace and trailing empty lines."""
    headers = [(draw(st.sampled_from([b"From", b"FROM", b"from"])), draw(_header_value()))]
    headers += draw(st.lists(st.tuples(_NAMES, _header_value()), max_size=14))
    order = draw(st.permutations(range(len(headers))))
    head = b"".join(headers[i][0] + b":" + headers[i][1] + b"\r\n" for i in order)
    lines = draw(
        st.lists(
            st.lists(st.one_of(_TEXT, _WSP.map(str.encode)), max_size=8).map(b"".join),
            max_size=12,
        )
    )
    body = b"\r\n".join(lines) + draw(st.sampled_from([b"", b"\r\n", b"\r\n\r\n\r\n", b" "]))
    message = head + b"\r\n" + body
    if draw(st.integers(0, 9)) == 0:  # LF line ends: the path through dkimpy's own parser
        message = message.replace(b"\r\n", b"\n")
    return message


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=random_messages())
def test_random_messages_signed_both_ways_are_the_same_bytes_and_verify(
    keypair: tuple[dkim.DkimSigner, str], message: bytes
) -> None:
    """The OpenSSL path writes exactly the header dkimpy's `dkim.sign` (pure-Python RSA)
    writes, for messages far odder than the dispatcher's: both verify, and are one."""
    signer, record = keypair
    now = int(time.time())
    ours = signer.sign(message, timestamp=now)
    theirs = sign_with_dkimpy(signer, message, timestamp=now)
    assert ours == theirs
    assert dkimpy.verify(theirs, dnsfunc=dns_for(record))
    assert dkimpy.verify(ours, dnsfunc=dns_for(record))


@pytest.mark.parametrize("index", range(8))
def test_sample_newsletters_are_signed_as_dkimpy_signs_them(
    keypair: tuple[dkim.DkimSigner, str], index: int
) -> None:
    signer, _ = keypair
    data = sample_message(index).as_bytes()
    now = int(time.time())
    assert signer.sign(data, timestamp=now) == sign_with_dkimpy(signer, data, timestamp=now)


def test_signing_uses_openssl_and_the_key_parsed_once(
    keypair: tuple[dkim.DkimSigner, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither dkimpy's pure-Python RSA nor a key parser runs per message."""
    signer, record = keypair

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("called per message")

    monkeypatch.setattr(dkimpy, "RSASSA_PKCS1_v1_5_sign", refused)
    monkeypatch.setattr(dkimpy, "parse_pem_private_key", refused)
    monkeypatch.setattr(serialization, "load_pem_private_key", refused)
    monkeypatch.setattr(ed25519.Ed25519PrivateKey, "from_private_bytes", refused)
    signed = [signer.sign(sample_message(index).as_bytes()) for index in range(3)]
    monkeypatch.undo()
    assert all(dkimpy.verify(data, dnsfunc=dns_for(record)) for data in signed)


def test_a_domain_longer_than_a_header_line_still_verifies(tmp_path: Path) -> None:
    """dkim.fold would split the d= value itself (and its signature fails); ours folds at
    spaces only, so the long domain stays whole."""
    domain = ".".join(["a" * 60, "b" * 60, "c" * 60, "example", "org"])
    path, record = dkim.keygen(tmp_path, SELECTOR, DOMAIN)  # a file name of normal length
    key, algorithm = dkim.parse_private_key(path.read_bytes())
    signer = dkim.DkimSigner(domain, SELECTOR, key, algorithm)
    data = sample_message().as_bytes()
    signed = signer.sign(data)
    assert f"d={domain};".encode() in signed
    assert dkimpy.verify(signed, dnsfunc=dns_for(record, domain=domain))
    assert max(len(line) for line in signed[: -len(data)].split(b"\r\n")) < 998  # RFC 5322
    dkimpy_signed = sign_with_dkimpy(signer, data, timestamp=int(time.time()))
    assert not dkimpy.verify(dkimpy_signed, dnsfunc=dns_for(record, domain=domain))


@pytest.mark.parametrize(
    "message",
    [
        b"To: a@example.org\r\nSubject: no sender\r\n\r\nbody\r\n",
        b"From: a@example.org\r\nnot a header line\r\n\r\nbody\r\n",
        b" folded: first\r\nFrom: a@example.org\r\n\r\nbody\r\n",
    ],
)
def test_a_message_dkim_cannot_sign_is_refused_with_a_reason(
    keypair: tuple[dkim.DkimSigner, str], message: bytes
) -> None:
    signer, _ = keypair
    with pytest.raises(dkim.DkimError):
        signer.sign(message)


# --- keys from files and settings ------------------------------------------------------------


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, mail_from=MAIL_FROM, **values)  # type: ignore[call-arg, arg-type]


def test_no_dkim_settings_no_signer(tmp_path: Path) -> None:
    assert dkim.load_signer(settings(tmp_path)) is None


def test_load_signer_reads_the_configured_key(
    tmp_path: Path, keypair: tuple[dkim.DkimSigner, str]
) -> None:
    path, record = dkim.keygen(
        tmp_path,
        SELECTOR,
        DOMAIN,
        kind="ed25519" if keypair[0].algorithm.startswith("ed") else "rsa",
    )
    signer = dkim.load_signer(
        settings(
            tmp_path,
            dkim_domain=DOMAIN.upper() + ".",
            dkim_selector=SELECTOR,
            dkim_private_key_file=path,
        )
    )
    assert signer is not None and signer.domain == DOMAIN and signer.selector == SELECTOR
    assert dkimpy.verify(signer.sign(sample_message().as_bytes()), dnsfunc=dns_for(record))


def test_half_a_configuration_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(dkim.DkimError, match="DISPATCHER_DKIM_PRIVATE_KEY_FILE"):
        dkim.load_signer(settings(tmp_path, dkim_domain=DOMAIN, dkim_selector=SELECTOR))


def _load(tmp_path: Path, content: bytes) -> dkim.DkimSigner | None:
    path = tmp_path / "key.pem"
    path.write_bytes(content)
    return dkim.load_signer(
        settings(tmp_path, dkim_domain=DOMAIN, dkim_selector=SELECTOR, dkim_private_key_file=path)
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            f"-----BEGIN RSA PRIVATE KEY-----\n{base64.b64encode(SECRET_MARK.encode() * 20).decode()}\n-----END RSA PRIVATE KEY-----\n".encode(),
            "not a readable RSA private key",
        ),
        (
            f"-----BEGIN PRIVATE KEY-----\n{SECRET_MARK}!!\n-----END PRIVATE KEY-----\n".encode(),
            "not valid base64",
        ),
        (
            f"-----BEGIN ENCRYPTED PRIVATE KEY-----\n{base64.b64encode(SECRET_MARK.encode()).decode()}\n-----END ENCRYPTED PRIVATE KEY-----\n".encode(),
            "encrypted",
        ),
        (
            f"-----BEGIN CERTIFICATE-----\n{base64.b64encode(SECRET_MARK.encode()).decode()}\n-----END CERTIFICATE-----\n".encode(),
            "certificate",
        ),
        (SECRET_MARK.encode() * 3, "neither a PEM private key"),
        (base64.b64encode(SECRET_MARK.encode()[:16]), "neither a PEM private key"),
    ],
)
def test_invalid_keys_are_refused_without_showing_them(
    tmp_path: Path, content: bytes, message: str
) -> None:
    with pytest.raises(dkim.DkimError) as caught:
        _load(tmp_path, content)
    text = str(caught.value)
    assert message in text and str(tmp_path / "key.pem") in text
    assert SECRET_MARK not in text and content.decode(errors="replace") not in text
    assert base64.b64encode(SECRET_MARK.encode()).decode()[:12] not in text
    # Not in a chained exception either: a traceback in a log shows those too.
    shown = "".join(traceback.format_exception(caught.value))
    assert SECRET_MARK not in shown


def test_an_unreadable_key_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.key"
    with pytest.raises(dkim.DkimError, match=r"cannot read .*nowhere\.key"):
        dkim.load_signer(
            settings(
                tmp_path, dkim_domain=DOMAIN, dkim_selector=SELECTOR, dkim_private_key_file=missing
            )
        )


def test_a_bad_selector_or_domain_is_refused(tmp_path: Path) -> None:
    path, _ = dkim.keygen(tmp_path, SELECTOR, DOMAIN)
    with pytest.raises(dkim.DkimError, match="DISPATCHER_DKIM_SELECTOR"):
        dkim.load_signer(
            settings(
                tmp_path,
                dkim_domain=DOMAIN,
                dkim_selector="a b\r\nBcc: x",
                dkim_private_key_file=path,
            )
        )
    with pytest.raises(dkim.DkimError, match="DISPATCHER_DKIM_DOMAIN"):
        dkim.load_signer(
            settings(
                tmp_path,
                dkim_domain="news example",
                dkim_selector=SELECTOR,
                dkim_private_key_file=path,
            )
        )


def _verify_with_public(signer: dkim.DkimSigner, kind: str, public: bytes) -> bool:
    record = f'"v=DKIM1; k={kind}; p={base64.b64encode(public).decode()}"'
    return bool(dkimpy.verify(signer.sign(sample_message().as_bytes()), dnsfunc=dns_for(record)))


@pytest.mark.parametrize(
    "form", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_rsa_keys_from_openssl_load_in_both_pem_forms(
    tmp_path: Path, form: serialization.PrivateFormat
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())
    signer = _load(tmp_path, pem.replace(b"\n", b"\r\n"))  # CRLF files too
    assert signer is not None and signer.algorithm == "rsa-sha256"
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert _verify_with_public(signer, "rsa", public)


def test_ed25519_pkcs8_pem_from_openssl_loads(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = _load(tmp_path, pem)
    assert signer is not None and signer.algorithm == "ed25519-sha256"
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert _verify_with_public(signer, "ed25519", public)


# --- keygen ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_keygen_writes_a_private_key_and_a_publishable_record(
    tmp_path: Path, kind: dkim.KeyKind
) -> None:
    path, record = dkim.keygen(tmp_path / "keys", SELECTOR, DOMAIN, kind=kind)
    assert path.parent == tmp_path / "keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert re.fullmatch(
        rf'{SELECTOR}\._domainkey\.{re.escape(DOMAIN)}\. IN TXT( "[^"]{{1,255}}")+', record
    )
    value = dkim.txt_value(record)
    assert value.startswith(f"v=DKIM1; k={kind}; p=")
    assert path.read_bytes().strip().decode() not in record
    assert dkimpy.verify(
        signer_for(path).sign(sample_message().as_bytes()), dnsfunc=dns_for(record)
    )


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    path, _ = dkim.keygen(tmp_path, SELECTOR, DOMAIN)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        dkim.keygen(tmp_path, SELECTOR, DOMAIN, kind="ed25519")
    assert path.read_bytes() == before


def test_cli_keygen_prints_record_and_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("DISPATCHER_MAIL_FROM", MAIL_FROM)
    parser = argparse.ArgumentParser()
    cli_dkim.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["dkim", "keygen", "--selector", SELECTOR, "--out", "keys"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    path = (tmp_path / "keys" / f"{SELECTOR}.{DOMAIN}.key").resolve()
    assert f"DISPATCHER_DKIM_PRIVATE_KEY_FILE={path}" in out
    assert (
        f"DISPATCHER_DKIM_DOMAIN={DOMAIN}" in out and f"DISPATCHER_DKIM_SELECTOR={SELECTOR}" in out
    )
    record = next(line.strip() for line in out.splitlines() if " IN TXT " in line)
    assert dkimpy.verify(
        signer_for(path).sign(sample_message().as_bytes()), dnsfunc=dns_for(record)
    )
    assert path.read_text().strip() not in out
    assert "warning" not in out


# --- alignment -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mail_from", "dkim_domain"),
    [
        (MAIL_FROM, DOMAIN),
        (MAIL_FROM, "example.org"),  # From on a subdomain of the signing domain
        ("Clusterwoche <newsletter@example.org>", DOMAIN),  # signing on a subdomain of From's
        ("newsletter@NEWS.Example.org", "news.example.org."),
        (MAIL_FROM, None),  # no DKIM: nothing to align
    ],
)
def test_aligned_domains_give_no_warning(mail_from: str, dkim_domain: str | None) -> None:
    assert dkim.alignment_warning(mail_from, dkim_domain) is None


@pytest.mark.parametrize(
    ("mail_from", "dkim_domain"),
    [
        (MAIL_FROM, "mailer.example.net"),
        ("newsletter@evilexample.org", "example.org"),  # a suffix, but not at a dot
        ("Clusterplattform <newsletter@localhost>", DOMAIN),  # the development default
    ],
)
def test_misaligned_domains_say_what_to_change(mail_from: str, dkim_domain: str) -> None:
    warning = dkim.alignment_warning(mail_from, dkim_domain)
    assert warning is not None
    assert "DISPATCHER_MAIL_FROM" in warning and "DISPATCHER_DKIM_DOMAIN" in warning
    assert dkim_domain in warning


def test_a_from_without_domain_is_reported() -> None:
    warning = dkim.alignment_warning("Newsletter", DOMAIN)
    assert warning is not None and "DISPATCHER_MAIL_FROM" in warning
