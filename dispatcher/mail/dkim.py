"""DKIM signing (RFC 6376, RFC 8463) of the exact bytes that are sent, at OpenSSL speed.

`load_signer` reads the key named by `DKIM_PRIVATE_KEY_FILE` once; `DkimSigner.sign` puts the
`DKIM-Signature` header in front of a serialised message. The header list is explicit because
dkimpy's default list leaves out `List-Unsubscribe-Post` and `Feedback-ID`, and RFC 8058 asks
receivers to offer one-click unsubscribe only when the signature covers both list headers.

The header is the one dkimpy's `dkim.sign` writes, byte for byte (same tags, same folding;
RSA PKCS#1 v1.5 and Ed25519 signatures are deterministic), but the work per message is done
here (docs/architecture.md, "The data path"): dkimpy signs RSA in pure Python (~9 ms a
message) and its canonicalisation runs a regex substitution per space of the body, so the
signature comes from OpenSSL (`cryptography`, ~0.4 ms for RSA-2048, without the GIL) and the
relaxed canonicalisation from a few C-speed `bytes` operations. dkimpy still does what it does
well: key validation, header folding (`dkim.fold`), the b= stripping regex, and every
verification in the tests, which also check the two paths give the same bytes. The key is
parsed once per signer, the constant tags and the h= list once per header set.

Keys: RSA as PEM (PKCS#1 or PKCS#8), Ed25519 as dkimpy stores it (base64 of the 32-byte seed)
or as PKCS#8 PEM (`openssl genpkey -algorithm ed25519`). No error message ever shows key bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import dkim  # type: ignore[import-untyped]  # dkimpy ships no type information
from dkim import crypto as dkim_crypto

if TYPE_CHECKING:
    from dispatcher.settings import Settings

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
KeyKind = Literal["rsa", "ed25519"]

#: Signed when present, in this order; `from` twice so that no second From can be added.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
    b"feedback-id",
    b"from",
)
#: relaxed/relaxed: survives relays that refold headers or touch trailing whitespace.
CANONICALIZE = (b"relaxed", b"relaxed")
RSA_BITS = 2048
MIN_RSA_BITS = 1024  #: below this Gmail and dkimpy's verify refuse the key
#: DER prefix of a PKCS#8 Ed25519 private key (RFC 8410); the 32-byte seed follows.
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
_SELECTOR = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}))*"
)
_DOMAIN = re.compile(
    r"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]"
    r"(?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


class DkimError(Exception):
    """DKIM is configured but cannot be used; the message says what to fix (never the key)."""


@dataclass(frozen=True)
class DkimSigner:
    """Signs messages for `domain` with the key published at `selector._domainkey.domain`."""

    domain: str
    selector: str
    private_key: bytes = field(repr=False)  #: as dkimpy takes it: PEM, or base64 Ed25519 seed
    algorithm: Algorithm = "rsa-sha256"
    #: The key as OpenSSL holds it, and the constant tags: made once, in `__post_init__`.
    _sign_hashed: Callable[[bytes], bytes] = field(init=False, repr=False, compare=False)
    _tags: list[tuple[bytes, bytes]] = field(init=False, repr=False, compare=False)
    _h_tags: dict[tuple[bytes, ...], bytes] = field(init=False, repr=False, compare=False)
    _plain_fold: dict[tuple[bytes, int, int], bool] = field(init=False, repr=False, compare=False)
    #: the relaxed line of a header value: From, Subject, List-Id … are one per dispatch
    _relaxed_lines: dict[tuple[bytes, bytes], bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sign_hashed", _openssl(self.private_key, self.algorithm))
        domain = self.domain.encode("ascii")
        tags = [  # dkim.sign's tags, in its order (t=, h=, bh=, b= follow per message)
            (b"v", b"1"),
            (b"a", self.algorithm.encode("ascii")),
            (b"c", b"/".join(CANONICALIZE)),
            (b"d", domain),
            (b"i", b"@" + domain),
            (b"q", b"dns/txt"),
            (b"s", self.selector.encode("ascii")),
        ]
        object.__setattr__(self, "_tags", tags)
        object.__setattr__(self, "_h_tags", {})
        object.__setattr__(self, "_plain_fold", {})
        object.__setattr__(self, "_relaxed_lines", {})

    def sign(self, data: bytes, *, timestamp: int | None = None) -> bytes:
        """`DKIM-Signature: …` + `data`: the exact bytes to hand to the SMTP server.

        `data` is the serialised message (CRLF line ends, as `message.as_bytes()` gives with
        the SMTP policy). Headers of `SIGNED_HEADERS` that the message lacks are left out of
        `h=`; From is signed twice, so a From added later breaks the signature. `timestamp`:
        the t= tag (default: now), for tests that compare with dkimpy's output.
        """
        headers, body = _split(data)
        positions: dict[bytes, list[int]] = {}
        for index, (name, _) in enumerate(headers):
            positions.setdefault(name.lower(), []).append(index)
        if b"from" not in positions:
            raise DkimError("cannot DKIM-sign a message without a From header")
        include = tuple(name for name in SIGNED_HEADERS if name in positions)
        h_tag = self._h_tags.get(include)
        if h_tag is None:
            h_tag = self._h_tags.setdefault(include, b" : ".join(include))
        body_hash = base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest())
        t_tag = str(int(time.time()) if timestamp is None else timestamp).encode("ascii")
        tags = [*self._tags, (b"t", t_tag), (b"h", h_tag), (b"bh", body_hash), (b"b", b"")]
        # Hashed (RFC 6376 3.7): each name of h= in relaxed form, taking a repeated header
        # from the bottom up (dkim.select_headers), then this header with b= empty and no
        # final CRLF. A name listed once more than it occurs (the second from) adds nothing.
        hashed = []
        relaxed = self._relaxed_lines
        for name in include:
            if left := positions[name]:
                _, value = headers[left.pop()]
                line = relaxed.get((name, value))
                if line is None:
                    if len(relaxed) >= _RELAXED_CACHE:
                        relaxed.clear()
                    line = relaxed[name, value] = name + b":" + _relaxed_value(value) + b"\r\n"
                hashed.append(line)
        joined = b"; ".join(b"=".join(tag) for tag in tags)
        plain = self._folds_at_spaces(tags)
        hashed.append(b"dkim-signature:" + (joined if plain else _relaxed_value(joined)))
        signature = self._sign_hashed(b"".join(hashed))
        value = joined + base64.b64encode(signature) + b"\r\n"
        header: bytes = dkim.fold(value, namelen=_NAME_LENGTH) if plain else _fold(value)
        return b"DKIM-Signature: " + header + data

    def _folds_at_spaces(self, tags: list[tuple[bytes, bytes]]) -> bool:
        """Whether dkim.fold breaks the header only at spaces (and inside b=).

        Then its bytes are dkim.sign's, and the hashed form (relaxed, b= empty) is simply
        the tags joined. It depends only on the tags' lengths, so it is found out once per
        h= and t= length. Not so when a tag is longer than a line (a domain of 60+
        characters): dkim.fold would split the d= value itself, which no verifier accepts,
        so `_fold` breaks such a header at spaces only.
        """
        shape = (tags[-3][1], len(tags[-4][1]), len(tags[-2][1]))  # h=, len(t=), len(bh=)
        plain = self._plain_fold.get(shape)
        if plain is None:
            dummy = [*tags[:-4], (b"t", b"9" * shape[1]), tags[-3], (b"bh", b"A" * shape[2])]
            probe = b"; ".join(b"=".join(tag) for tag in dummy) + b"; b=" + b"0" * 60
            folded = dkim.fold(probe, namelen=_NAME_LENGTH, linesep=b"\r\n")
            plain = folded.replace(b"\r\n ", b" ") == probe and _relaxed_value(probe) == probe
            self._plain_fold[shape] = plain
        return plain


_NAME_LENGTH = len(b"DKIM-Signature")
_RELAXED_CACHE = 256  #: header lines kept; the per-recipient ones come and go
_HEADER_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")  #: dkimpy's rfc822_parse: up to the colon


def _fold(value: bytes) -> bytes:
    """`value` (ending in CRLF) in lines of at most 72 characters, broken at spaces only —
    a longer word keeps a line of its own — except inside the final b= value, where folding
    white space is allowed (RFC 6376 3.5)."""
    head, _, signature = value.rstrip(b"\r\n").rpartition(b" b=")
    lines: list[bytes] = []
    line, width = b"", 72 - _NAME_LENGTH
    for word in [*head.split(b" "), b"b=" + signature[: 69 - 2]]:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line, width = word, 71
        else:
            line = line + b" " + word if line else word
    lines.append(line)
    lines += [signature[i : i + 70] for i in range(69 - 2, len(signature), 70)]
    return b"\r\n ".join(lines) + b"\r\n"


def _split(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers (name, raw value with its CRLFs) and body, as `dkim.rfc822_parse` gives them.

    A message with CRLF line ends only (what the dispatcher sends) is split here with
    `bytes` operations; any other goes through dkimpy's own (slower) parser.
    """
    end = data.find(b"\r\n\r\n")
    if end <= 0 or data.count(b"\n") != data.count(b"\r\n"):
        try:
            parsed, body = dkim.rfc822_parse(data)
        except (dkim.DKIMException, IndexError) as error:
            raise DkimError(f"DKIM signing failed: {error}"[:200]) from None
        return [(name, value) for name, value in parsed], body
    headers: list[tuple[bytes, bytes]] = []
    for line in data[:end].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not headers:
                raise DkimError("DKIM signing failed: the message starts with a continuation")
            name, value = headers[-1]
            headers[-1] = (name, value + line + b"\r\n")
            continue
        colon = line.find(b":")
        if colon > 0 and _HEADER_NAME.fullmatch(line, 0, colon):
            headers.append((line[:colon], line[colon + 1 :] + b"\r\n"))
        elif not line.startswith(b"From "):  # an mbox separator, skipped like dkimpy does
            raise DkimError("DKIM signing failed: a line of the header block is no header")
    return headers, data[end + 4 :]


def _relaxed_value(value: bytes) -> bytes:
    """A header value in relaxed form (RFC 6376 3.4.2), the same as dkimpy's `Relaxed`:
    unfolded, each run of spaces and tabs one space, stripped."""
    value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    if b"\t" in value or b"  " in value:
        value = _collapse(value)
    return value.strip()


def _relaxed_body(body: bytes) -> bytes:
    """The body in relaxed form (RFC 6376 3.4.4), the same bytes as dkimpy's
    `Relaxed.canonicalize_body`, whose regexes cost ~0.25 ms on a 7 KB newsletter."""
    if b"\t" in body or b"  " in body:
        body = _collapse(body)
    if b" \r\n" in body:  # after collapsing: at most one space before a line end
        body = body.replace(b" \r\n", b"\r\n")
    body = dkim.canonicalization.strip_trailing_lines(body)
    return b"" if body == b"\r\n" else body


def _collapse(text: bytes) -> bytes:
    """Each run of spaces and tabs as one space (a literal-led regex: ~10 µs on 7 KB)."""
    if b"\t" in text:
        text = text.replace(b"\t", b" ")
    return _SPACES.sub(b" ", text)


_SPACES = re.compile(b"  +")


def _openssl(key: bytes, algorithm: Algorithm) -> Callable[[bytes], bytes]:
    """The key of `parse_private_key`, parsed once by OpenSSL: a function from the hashed
    header bytes to the signature. Errors never quote the key. (Imported here: a process
    without DKIM does not load `cryptography`.)"""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

    try:
        if algorithm == "ed25519-sha256":
            seed = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(key))
            # RFC 8463: Ed25519 signs the SHA-256 digest of the hashed bytes
            return lambda hashed: seed.sign(hashlib.sha256(hashed).digest())
        loaded = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm, binascii.Error):
        raise DkimError(f"the DKIM key is not a usable {algorithm.split('-')[0]} key") from None
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise DkimError("the DKIM key is not an RSA private key")
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    return lambda hashed: loaded.sign(hashed, pkcs1, sha256)


def load_signer(settings: Settings) -> DkimSigner | None:
    """The signer of `DKIM_DOMAIN`/`DKIM_SELECTOR`/`DKIM_PRIVATE_KEY_FILE`; None when none is set.

    Setting only some of the three is an error rather than silently unsigned mail.
    """
    values = {
        "DISPATCHER_DKIM_DOMAIN": settings.dkim_domain,
        "DISPATCHER_DKIM_SELECTOR": settings.dkim_selector,
        "DISPATCHER_DKIM_PRIVATE_KEY_FILE": settings.dkim_private_key_file,
    }
    missing = [name for name, value in values.items() if not value]
    if len(missing) == len(values):
        return None
    if missing:
        raise DkimError(
            f"DKIM is half configured: set {' and '.join(missing)} too "
            "(or unset all three DISPATCHER_DKIM_* variables to send unsigned)"
        )
    assert settings.dkim_domain and settings.dkim_selector and settings.dkim_private_key_file
    domain = _checked_domain(settings.dkim_domain, "DISPATCHER_DKIM_DOMAIN")
    selector = _checked_selector(settings.dkim_selector, "DISPATCHER_DKIM_SELECTOR")
    path = settings.dkim_private_key_file
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DkimError(
            f"DISPATCHER_DKIM_PRIVATE_KEY_FILE: cannot read {path} ({error.strerror}); "
            "check the path and that the dispatcher's user may read it"
        ) from None
    key, algorithm = parse_private_key(raw, source=str(path))
    return DkimSigner(domain=domain, selector=selector, private_key=key, algorithm=algorithm)


def parse_private_key(raw: bytes, *, source: str = "the key") -> tuple[bytes, Algorithm]:
    """The key as dkimpy takes it and its algorithm, detected from the format."""
    text = raw.replace(b"\r\n", b"\n").strip()
    where = f"DISPATCHER_DKIM_PRIVATE_KEY_FILE: {source}"
    block = _PEM_BLOCK.search(text)
    if block is None:
        seed = _b64(text)
        if seed is not None and len(seed) == 32:
            return _checked_ed25519(base64.b64encode(seed), where), "ed25519-sha256"
        raise DkimError(
            f"{where} is neither a PEM private key (RSA) nor a base64 Ed25519 key; "
            "create one with `dispatcher dkim keygen`"
        )
    kind = block[1].decode("ascii")
    if "ENCRYPTED" in kind:
        raise DkimError(
            f"{where} is encrypted; the dispatcher needs it unencrypted "
            "(protect it with file permissions 0600 instead)"
        )
    der = _b64(block[2])
    if der is None:
        raise DkimError(f"{where}: the PEM block is not valid base64")
    if kind == "PRIVATE KEY" and der.startswith(_ED25519_PKCS8_PREFIX) and len(der) == 48:
        seed = der[len(_ED25519_PKCS8_PREFIX) :]
        return _checked_ed25519(base64.b64encode(seed), where), "ed25519-sha256"
    if kind not in ("RSA PRIVATE KEY", "PRIVATE KEY"):
        raise DkimError(f"{where} holds a {kind.lower()}, not an RSA or Ed25519 private key")
    pem = b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (block[1], block[2], block[1])
    try:
        parsed = dkim_crypto.parse_pem_private_key(pem)
    except Exception:
        # The parser's message may quote key bytes: give our own.
        raise DkimError(f"{where} is not a readable RSA private key (PKCS#1 or PKCS#8)") from None
    bits = int(parsed["modulus"]).bit_length()
    if bits < MIN_RSA_BITS:
        raise DkimError(
            f"{where} is an RSA key of {bits} bits; receivers need at least {MIN_RSA_BITS}, "
            f"create a {RSA_BITS}-bit key with `dispatcher dkim keygen`"
        )
    return pem, "rsa-sha256"


def keygen(
    directory: Path, selector: str, domain: str, *, kind: KeyKind = "rsa"
) -> tuple[Path, str]:
    """Write a new private key (mode 0600) into `directory`; return its path and the DNS record.

    The record is a zone-file line; its value is split into strings of at most 255 characters,
    as DNS requires (`txt_value` joins them again). An existing key file is never overwritten.
    """
    selector = _checked_selector(selector, "selector")
    domain = _checked_domain(domain, "domain")
    if kind == "rsa":
        private, public = _rsa_keypair()
    elif kind == "ed25519":
        private, public = _ed25519_keypair()
    else:
        raise ValueError(f"unknown key type {kind!r}")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{selector}.{domain}.key"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(private)
    value = f"v=DKIM1; k={kind}; p={public}"
    chunks = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
    return path, f"{selector}._domainkey.{domain}. IN TXT {chunks}"


def txt_value(record: str) -> str:
    """The TXT value of a zone-file line from `keygen` (its quoted strings joined)."""
    return "".join(re.findall(r'"([^"]*)"', record))


def alignment_warning(mail_from: str, dkim_domain: str | None) -> str | None:
    """A warning when the From domain does not align (DMARC relaxed) with `DKIM_DOMAIN`.

    Aligned: equal, or one a subdomain of the other (`news.example.org` and `example.org`).
    Two sibling subdomains of one registered domain also align under DMARC, but telling them
    apart from public suffixes (`co.uk`) needs the Public Suffix List, so they get a warning
    that says so.
    """
    if not dkim_domain:
        return None
    from_domain = address_domain(mail_from)
    signing = dkim_domain.strip().rstrip(".").lower()
    if from_domain is None:
        return (
            f"DISPATCHER_MAIL_FROM {mail_from!r} has no domain, so DKIM for {signing} cannot "
            "align with it; set DISPATCHER_MAIL_FROM to an address on " + signing
        )
    if (
        from_domain == signing
        or from_domain.endswith("." + signing)
        or signing.endswith("." + from_domain)
    ):
        return None
    return (
        f"the From domain {from_domain} does not align with DISPATCHER_DKIM_DOMAIN {signing}: "
        "DMARC checks (Gmail, Yahoo, Outlook) fail unless both share one registered domain; "
        f"set DISPATCHER_MAIL_FROM to an address on {signing} or set DISPATCHER_DKIM_DOMAIN "
        f"to {from_domain} (with a key published under it)"
    )


def address_domain(mail_from: str) -> str | None:
    """The lower-case domain of an address like `Name <local@domain>`; None without one."""
    from email.utils import parseaddr

    address = parseaddr(mail_from)[1]
    local, at, domain = address.rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    return domain if at and local and domain else None


# --- helpers ---------------------------------------------------------------------------------


def _b64(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _checked_ed25519(seed_b64: bytes, where: str) -> bytes:
    try:
        import nacl.exceptions
        import nacl.signing
    except ImportError:
        raise DkimError(f"{where} is an Ed25519 key, which needs the pynacl package") from None
    try:
        nacl.signing.SigningKey(base64.b64decode(seed_b64))
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise DkimError(f"{where} is not a usable Ed25519 private key") from None
    return seed_b64


def _checked_selector(selector: str, name: str) -> str:
    if not _SELECTOR.fullmatch(selector):
        raise DkimError(
            f"{name} {selector!r} is not a DKIM selector: letters, digits, '-' and '_' "
            "in dot-separated labels, e.g. cw2025"
        )
    return selector


def _checked_domain(domain: str, name: str) -> str:
    domain = domain.strip().rstrip(".")
    if not _DOMAIN.fullmatch(domain):
        raise DkimError(
            f"{name} {domain!r} is not a domain name like news.example.org "
            "(internationalised names in their xn-- form)"
        )
    return domain.lower()


def _rsa_keypair() -> tuple[bytes, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(public).decode("ascii")


def _ed25519_keypair() -> tuple[bytes, str]:
    import nacl.signing

    key = nacl.signing.SigningKey.generate()
    private = base64.b64encode(bytes(key)) + b"\n"  # dkimpy's format: base64 of the seed
    public = base64.b64encode(bytes(key.verify_key)).decode("ascii")
    return private, public
