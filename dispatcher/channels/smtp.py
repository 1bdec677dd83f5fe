"""Email over SMTP: one long-lived connection per worker thread, replies kept verbatim.

Opening a connection (TCP, TLS, EHLO, AUTH) costs far more than a message, and
relays limit connections per client, so each of the `DISPATCHER_SMTP_CONNECTIONS`
worker threads keeps its own connection for the whole run. The low-level
MAIL/RCPT/DATA calls are used instead of `sendmail()` because the server's final
reply ("250 2.0.0 Ok: queued as ABC") is the only handle for tracing a message
through the relay's logs, and because we must know *where* a failure happened:
a connection lost after the message body went out may still have delivered it.

Timeouts follow RFC 5321 §4.5.3.2: a relay may take five minutes to answer a command
and ten minutes to answer the final "." (it may be scanning the message). Cutting that
short turns a slow relay into duplicates, so the defaults are the RFC's, and
`?timeout=`/`?data_timeout=` in the URL change them.

A connection lost *before* the final "." went out (relay restart, idle timeout, NAT:
mostly stale pooled connections) is retried once on a fresh connection: the server
cannot have accepted a message it never saw end. A loss or timeout *after* it leaves the
outcome open: the relay may have queued the message and lost only its reply. That is
never retried here; the error is marked `ambiguous`, and the pipeline resends it at most
once more before recording `unknown` (see docs/architecture.md).

Only the replies to RCPT TO and to the message itself are verdicts on a recipient. A server
that refuses the session — at connect, EHLO, STARTTLS, AUTH or MAIL FROM (`451 4.7.1` from
a relay whose milter is down, `452` for a full queue disk, `421`, greylisting of the
sender) — refuses every message alike: that is the channel's outage (`unavailable`), which
costs no recipient an attempt and backs the whole channel off.
"""

from __future__ import annotations

import ipaddress
import re
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from dispatcher.channels.base import ChannelError, Envelope, ErrorKind, Receipt
from dispatcher.channels.ratelimit import RateLimiter
from dispatcher.mail.addresses import wire_form

#: the settings email needs (DISPATCHER_<NAME>); without them it writes .eml files
CREDENTIALS = ("smtp_url",)

Security = Literal["plain", "starttls", "tls"]
_VAR = "DISPATCHER_SMTP_URL"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_BOUNCE_STATUS = {"5.1.0", "5.1.1", "5.1.10"}
_BOUNCE_TEXT = re.compile(
    r"does not exist|doesn't exist|user unknown|unknown user|no such user|"
    r"mailbox unavailable|unknown recipient|recipient unknown",
    re.IGNORECASE,
)
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
_HOST_NAME = re.compile(r"(?i)^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect; the password is left out of `repr` so logs cannot leak it."""

    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 300.0  #: connect, greeting and each command (RFC 5321: 5 minutes)
    verify: bool = True  #: check the server certificate (off only for staging/test certs)
    data_timeout: float = 600.0  #: the reply to the final "." (RFC 5321: 10 minutes)

    def __str__(self) -> str:
        scheme = "smtps" if self.security == "tls" else "smtp"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def helo_name(configured: str | None, from_domain: str | None, fqdn: str | None = None) -> str:
    """The name we give in EHLO: `DISPATCHER_SMTP_HELO`, else this machine's fully
    qualified name, else the From domain — never an IP literal, which relays and
    receivers' spam filters count against a sender (smtplib's own fallback).

    Raises ValueError (naming the setting) for a configured value that is no host name.
    """
    if configured is not None:
        name = configured.strip().rstrip(".")
        if not _is_host_name(name):
            raise ValueError(
                "DISPATCHER_SMTP_HELO must be a fully qualified host name such as "
                f"mail.example.org (no IP address, no brackets), not {configured!r}"
            )
        return name.encode("idna").decode("ascii")
    fqdn = socket.getfqdn() if fqdn is None else fqdn
    if "." in fqdn and _is_host_name(fqdn) and not fqdn.endswith((".localdomain", ".local")):
        return fqdn
    if from_domain:
        try:
            return from_domain.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    return "localhost"


def _is_host_name(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return False
    except ValueError:
        pass
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return "." in ascii_name and _HOST_NAME.match(ascii_name) is not None


def _invalid(problem: str) -> ValueError:
    # Never quote the URL or a part of it: a password with an unescaped "/" or "#"
    # makes urlsplit cut it into the host, port or path.
    return ValueError(
        f"{_VAR}: {problem}. Expected smtp://host:25, smtp://user:password@host:587?starttls=true "
        "or smtps://user:password@host:465; percent-encode special characters in user and password"
    )


def _flag(value: str, name: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise _invalid(f"?{name}= must be true or false")


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse `DISPATCHER_SMTP_URL`; every error message is safe to log."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise _invalid("the URL cannot be parsed or the port is not a number 0-65535") from None
    if parts.scheme not in ("smtp", "smtps"):
        raise _invalid("the scheme must be smtp:// or smtps://")
    if not host:
        raise _invalid("no host name")
    if parts.path not in ("", "/") or parts.fragment:
        raise _invalid("unexpected path or '#' after the host")
    if port == 0:
        raise _invalid("port 0 is not valid")
    security: Security = "tls" if parts.scheme == "smtps" else "plain"
    timeouts = {"timeout": 300.0, "data_timeout": 600.0}
    verify = True
    for name, value in query:
        if name == "starttls":
            if _flag(value, name):
                if security == "tls":
                    raise _invalid("?starttls=true with smtps:// (smtps is already TLS)")
                security = "starttls"
        elif name == "verify":
            verify = _flag(value, name)
        elif name in timeouts:
            try:
                timeouts[name] = float(value)
            except ValueError:
                timeouts[name] = -1.0
            if not 0 < timeouts[name] <= 3600:
                raise _invalid(f"?{name}= must be a number of seconds between 0 and 3600")
        else:
            raise _invalid(
                "unknown query parameter (known: starttls, verify, timeout, data_timeout)"
            )
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise _invalid("a password without a user name")
    if not ((username or "") + (password or "")).isascii():
        # smtplib encodes AUTH as ASCII and would fail only at the first send.
        raise _invalid("user name and password must be ASCII")
    default_port = 465 if security == "tls" else 25
    return SmtpTarget(
        host,
        port or default_port,
        security,
        username,
        password,
        timeouts["timeout"],
        verify,
        timeouts["data_timeout"],
    )


@dataclass
class _Progress:
    """How far one message got: where a lost connection happened, and whether it leaves
    the outcome open (`in_doubt`: from the moment the end marker went out until the
    server's final reply arrives, the server may have queued the message and lost only
    its reply)."""

    stage: str = "MAIL FROM"
    in_doubt: bool = False

    @property
    def before_recipient(self) -> bool:
        """Nothing about the recipient was asked yet: a failure is the session's."""
        return self.stage == "MAIL FROM"


class _ConnectionLostError(OSError):
    """The connection is unusable (lost, timed out, or 421 "closing channel")."""


class SmtpChannel:
    """Sends over SMTP; thread-safe because no two threads ever share a connection."""

    kind: str = "email"
    idempotent: bool = False

    def __init__(
        self,
        target: SmtpTarget,
        *,
        rate_limiter: RateLimiter | None = None,
        ssl_context: ssl.SSLContext | None = None,
        helo: str | None = None,
    ) -> None:
        """`helo`: the name given in EHLO (see `helo_name`); smtplib's own default is an
        IP literal on a host without a dotted name, which relays and receivers score."""
        self.target = target
        self.helo = helo
        self._rate_limiter = rate_limiter
        self._ssl_context = ssl_context or _default_context(target.verify)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[smtplib.SMTP] = set()

    def send(self, envelope: Envelope, *, key: str) -> Receipt:
        if self._rate_limiter is not None:
            self._rate_limiter.acquire()
        last = ""
        progress = _Progress()
        for _attempt in range(2):
            connection = self._connection()
            progress = _Progress()
            try:
                return self._transact(connection, envelope, progress)
            except OSError as error:  # incl. SMTPServerDisconnected, timeouts, _ConnectionLostError
                self._discard(connection)
                last = f"{type(error).__name__}: {error}"
                if progress.in_doubt:
                    raise ChannelError(
                        f"no reply from SMTP server {self.target} to the end of the message "
                        f"({last}); the server may have accepted it",
                        kind=ErrorKind.AMBIGUOUS,
                    ) from None
        if progress.before_recipient:  # a fresh connection was dropped before any recipient
            raise ChannelError(
                f"SMTP server {self.target} closed the session at MAIL FROM twice ({last})",
                kind=ErrorKind.UNAVAILABLE,
            )
        raise ChannelError(
            f"SMTP connection to {self.target} lost twice at {progress.stage} ({last})"
        )

    def close(self) -> None:
        """QUIT all connections; call once the workers are done (it is not per thread)."""
        with self._lock:
            connections, self._open = self._open, set()
        for connection in connections:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()

    def _connection(self) -> smtplib.SMTP:
        connection: smtplib.SMTP | None = getattr(self._local, "connection", None)
        with self._lock:
            if connection is not None and connection in self._open:
                return connection
        connection = self._connect()
        self._local.connection = connection
        with self._lock:
            self._open.add(connection)
        return connection

    def _discard(self, connection: smtplib.SMTP) -> None:
        with self._lock:
            self._open.discard(connection)
        self._local.connection = None
        connection.close()

    def _connect(self) -> smtplib.SMTP:
        target = self.target
        try:
            return self._handshake()
        except smtplib.SMTPAuthenticationError as error:
            text = _reply_text(error.smtp_error)
            raise ChannelError(
                f"SMTP login as {target.username!r} on {target} failed "
                f"({error.smtp_code} {text}); check the credentials in {_VAR}",
                kind=ErrorKind.UNAVAILABLE,
            ) from None
        except smtplib.SMTPNotSupportedError as error:
            raise ChannelError(
                f"SMTP server {target}: {error}; check {_VAR}", kind=ErrorKind.UNAVAILABLE
            ) from None
        except ssl.SSLCertVerificationError as error:
            raise ChannelError(
                f"TLS certificate of {target} rejected ({error.verify_message}); "
                f"for a test server only, add ?verify=false to {_VAR}",
                kind=ErrorKind.UNAVAILABLE,
            ) from None
        except (smtplib.SMTPException, OSError) as error:
            raise ChannelError(
                f"cannot connect to SMTP server {target}: {error}", kind=ErrorKind.UNAVAILABLE
            ) from None

    def _handshake(self) -> smtplib.SMTP:
        target = self.target
        connection: smtplib.SMTP
        if target.security == "tls":
            connection = smtplib.SMTP_SSL(
                target.host,
                target.port,
                local_hostname=self.helo,
                timeout=target.timeout,
                context=self._ssl_context,
            )
        else:
            connection = smtplib.SMTP(
                target.host, target.port, local_hostname=self.helo, timeout=target.timeout
            )
        try:
            self._greet(connection)
            if target.security == "starttls":
                connection.starttls(context=self._ssl_context)  # raises if not offered
                self._greet(connection)  # RFC 3207: forget what the server said in clear text
            if target.username:
                connection.login(target.username, target.password or "")
        except BaseException:
            connection.close()
            raise
        return connection

    def _greet(self, connection: smtplib.SMTP) -> None:
        """EHLO, or HELO for a server without ESMTP; a refusal is the session's, so no
        message is tried on it (smtplib itself ignores the EHLO reply)."""
        code, reply = connection.ehlo()
        if 500 <= code < 600 and code != 554:  # 554 is a refusal, not "EHLO unknown"
            code, reply = connection.helo()
        if code != 250:
            raise ChannelError(
                f"SMTP server {self.target} refused the session at EHLO: "
                f"{code} {_reply_text(reply)}",
                kind=ErrorKind.UNAVAILABLE,
            )

    def _transact(
        self, connection: smtplib.SMTP, envelope: Envelope, progress: _Progress
    ) -> Receipt:
        # IDN domains as A-labels, which every relay takes; see `addresses.wire_form`.
        mail_from, rcpt_to = wire_form(envelope.mail_from), wire_form(envelope.rcpt_to)
        options = _mail_options(connection, mail_from, rcpt_to, envelope.data)
        code, reply = connection.mail(mail_from, options)
        if code != 250:
            raise self._refused(connection, "MAIL FROM", code, reply)
        progress.stage = "RCPT TO"
        code, reply = connection.rcpt(rcpt_to)
        if code not in (250, 251):
            raise self._refused(connection, "RCPT TO", code, reply)
        progress.stage = "DATA"
        code, reply = connection.docmd("DATA")
        if code != 354:
            raise self._refused(connection, "DATA", code, reply)
        progress.stage = "end of DATA"
        # If sending fails part-way, the end marker did not go out: the server cannot accept.
        connection.send(_dot_stuff(envelope.data) + b".\r\n")
        progress.in_doubt = True
        _set_timeout(connection, self.target.data_timeout)
        try:
            code, reply = connection.getreply()
        finally:
            _set_timeout(connection, self.target.timeout)
        progress.in_doubt = code == -1  # any real reply settles the outcome
        if code != 250:
            # A final reply ends the transaction on the server: no RSET needed.
            raise self._refused(None, "end of DATA", code, reply)
        return Receipt(provider_id=f"{code} {_reply_text(reply)}".strip())

    def _refused(
        self, connection: smtplib.SMTP | None, stage: str, code: int, reply: bytes
    ) -> Exception:
        """The error for a non-success reply; leaves the connection ready for the next message."""
        text = _reply_text(reply)
        if code == 421 or code == -1:
            return _ConnectionLostError(f"{code} {text}")
        if connection is not None:
            try:
                connection.rset()
            except (smtplib.SMTPException, OSError):
                self._discard(connection)
        message = f"SMTP server {self.target} refused {stage}: {code} {text}"
        if code in (530, 535):
            return ChannelError(
                f"{message}; check credentials and TLS in {_VAR}", kind=ErrorKind.UNAVAILABLE
            )
        if stage == "MAIL FROM" and code >= 500:
            # The sender is refused: every message would be; fix DISPATCHER_MAIL_FROM.
            return ChannelError(
                f"{message}; check DISPATCHER_MAIL_FROM", kind=ErrorKind.UNAVAILABLE
            )
        if 400 <= code < 500 and (stage == "MAIL FROM" or _system_trouble(code, text)):
            # Every message would get this answer now: the channel backs off, no attempt used.
            return ChannelError(message, kind=ErrorKind.UNAVAILABLE)
        if 400 <= code < 500:
            return ChannelError(message)
        bounced = stage != "MAIL FROM" and is_bounce(code, text)
        return ChannelError(message, kind=ErrorKind.BOUNCED if bounced else ErrorKind.PERMANENT)


def _system_trouble(code: int, text: str) -> bool:
    """A temporary reply about the server, not the recipient: `452` (RFC 5321: insufficient
    system storage; we send one recipient per transaction, so never "too many recipients")
    or an enhanced status of class X.3 (RFC 3463: mail system status, e.g. 4.3.1 full)."""
    match = _ENHANCED.match(text)
    return code == 452 or (match is not None and match.group(1).split(".")[1] == "3")


def is_bounce(code: int, text: str) -> bool:
    """Whether a 5xx reply says the recipient address does not exist.

    Only then may the subscriber be marked bounced; "mailbox full" (552, 5.2.2)
    or a policy rejection (5.7.x) says nothing about the address. A specific
    enhanced status code wins over the free text, which servers word freely.
    """
    if not 500 <= code < 600:
        return False
    match = _ENHANCED.match(text)
    status = match.group(1) if match else None
    if status in _BOUNCE_STATUS:
        return True
    if status not in (None, "5.0.0"):
        return False
    return code in (550, 551, 553) and _BOUNCE_TEXT.search(text) is not None


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


def _dot_stuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency, with the CRLF the end marker needs."""
    # The regex only where a line starts with a dot: most messages have none.
    needed = b"\n." in data or data.startswith(b".")
    stuffed = re.sub(rb"(?m)^\.", b"..", data) if needed else data
    return stuffed if stuffed.endswith(b"\r\n") else stuffed + b"\r\n"


def _mail_options(connection: smtplib.SMTP, mail_from: str, rcpt_to: str, data: bytes) -> list[str]:
    options = []
    if not (mail_from + rcpt_to).isascii():
        if not connection.has_extn("smtputf8"):
            # Nothing went out yet: the connection stays usable for the next message.
            which = "recipient" if mail_from.isascii() else "sender (return path)"
            raise ChannelError(
                f"the {which} address has a non-ASCII local part, which needs SMTPUTF8 "
                "(RFC 6531), and the SMTP server does not offer it; use a relay with "
                "SMTPUTF8 or an ASCII address",
                kind=ErrorKind.PERMANENT,
            )
        options.append("SMTPUTF8")
    if not data.isascii() and connection.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    return options


def _set_timeout(connection: smtplib.SMTP, seconds: float) -> None:
    if connection.sock is not None:
        connection.sock.settimeout(seconds)


def _default_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
