"""A real SMTP server on a loopback port, for tests of everything that sends mail.

Mocking smtplib would test our assumptions about SMTP, not SMTP: this runs
aiosmtpd in a thread, so the client under test does real EHLO/STARTTLS/AUTH/
MAIL/RCPT/DATA over a socket. Tests can script failures per recipient, drop a
connection mid-transaction, and count connections, which is what the retry and
connection-reuse logic needs.

Use it as a pytest plugin (`pytest_plugins = ["tests.support.smtpd"]` in
`tests/conftest.py`) for the `smtp_server` and `tls_cert` fixtures, or build
`SmtpServer(...)` directly as a context manager for TLS/AUTH variants.

Scripted replies: `server.script("a@example.org", "451 4.7.1 Try again later")`
makes the next RCPT for that address answer 451; after the queue is used up the
server accepts normally. `at="data"` scripts the reply to the end of DATA
(any recipient of the message matches), `at="mail"` the reply to MAIL FROM
(keyed by the sender). The reply `"DROP"` closes the connection without a reply.

Session refusals: `server.refusal = "451 4.7.1 Service unavailable - try again later"`
answers EHLO, HELO and MAIL FROM with that reply until it is set back to None — what
Postfix does while its milter is down (`milter_default_action = tempfail`), or with a full
queue disk (452). `server.helo_names` lists the names clients gave in EHLO/HELO.

Slow relays: `data_delay` seconds pass at the end of DATA before the message is stored
(a tarpitting or hanging relay), `reply_delay` seconds after it was stored before the
reply goes out (a relay whose answer to the final "." comes late).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import ssl
import subprocess
import threading
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.ports import free_port

DROP = "DROP"
Stage = Literal["mail", "rcpt", "data"]


@dataclass
class Received:
    """One message the server accepted (DATA answered 250)."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes  #: as received, dot-stuffing undone: equal to the bytes the client meant to send
    peer: tuple[Any, ...]
    message: EmailMessage  #: `data` parsed with `email.policy.default`
    connection: int  #: 1-based number of the connection it came in on
    tls: bool  #: whether the connection was encrypted (STARTTLS or implicit TLS)
    smtputf8: bool = False  #: MAIL FROM asked for SMTPUTF8 (UTF-8 addresses and headers)


class SmtpServer:
    """aiosmtpd on 127.0.0.1 and a free port; `with SmtpServer() as server: ...`."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        tls_cert: tuple[Path, Path] | None = None,
        require_starttls: bool = False,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
        smtputf8: bool = False,
    ) -> None:
        """`tls_cert` is (certificate, key); it enables STARTTLS, or implicit TLS when asked.
        `smtputf8` offers SMTPUTF8 (RFC 6531: UTF-8 addresses), as some relays do and others not.
        """
        if (require_starttls or implicit_tls) and tls_cert is None:
            raise ValueError("require_starttls and implicit_tls need tls_cert")
        self.port = free_port(self.host)
        self.implicit_tls = implicit_tls
        self._auth = auth
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._scripts: dict[tuple[Stage, str], deque[str]] = defaultdict(deque)
        self._drop_at: int | None = None
        self._data_count = 0
        self._connections: list[SMTP] = []
        self._started = False
        self.data_delay = 0.0
        self.reply_delay = 0.0
        self.refusal: str | None = None
        self.helo_names: list[str] = []
        context = None
        if tls_cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls_cert)
        kwargs: dict[str, Any] = {}
        if auth is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        self._controller = _CountingController(
            self,
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ssl_context=context if implicit_tls else None,
            tls_context=None if implicit_tls else context,
            require_starttls=require_starttls,
            server_hostname="smtp.test",
            enable_SMTPUTF8=smtputf8,
            **kwargs,
        )

    @property
    def url(self) -> str:
        """A `DISPATCHER_SMTP_URL` for this server, without credentials or TLS options."""
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def received(self) -> list[Received]:
        """A snapshot of the accepted messages, in arrival order."""
        with self._lock:
            return list(self._received)

    @property
    def connections(self) -> int:
        """TCP connections accepted since start (or the last `clear()`)."""
        with self._lock:
            return len(self._connections)

    def script(self, rcpt: str, *replies: str, at: Stage = "rcpt") -> None:
        """Queue replies for the next commands about `rcpt` (the sender for `at="mail"`)."""
        with self._lock:
            self._scripts[at, rcpt.lower()].extend(replies)

    def drop_after(self, count: int) -> None:
        """Abort the connection, once, at the end of DATA of message number `count + 1`.

        Messages are counted across the whole server from now on (scripted and
        accepted alike). The dropped message has been fully received but is not
        recorded, like a server that crashes before queueing it.
        """
        with self._lock:
            self._drop_at = self._data_count + count + 1

    def clear(self) -> None:
        """Forget received messages, scripts, a pending drop and the connection count."""
        with self._lock:
            self._received.clear()
            self._scripts.clear()
            self._drop_at = None
            self._data_count = 0
            self._connections.clear()

    def start(self) -> SmtpServer:
        self._controller.start()
        self._started = True
        self.clear()  # forget the controller's own readiness probe
        return self

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- called from the server thread -----------------------------------------------------

    def _add_connection(self, smtp: SMTP) -> None:
        with self._lock:
            self._connections.append(smtp)

    def _next_reply(self, stage: Stage, addresses: list[str]) -> str | None:
        with self._lock:
            for address in addresses:
                queue = self._scripts.get((stage, address.lower()))
                if queue:
                    return queue.popleft()
        return None

    def _data_arrived(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self._data_count += 1
            if self._drop_at == self._data_count:
                self._drop_at = None
                return DROP
        reply = self._next_reply("data", envelope.rcpt_tos)
        if reply is not None:
            return reply
        data = cast(bytes, envelope.original_content)
        with self._lock:
            number = self._connections.index(smtp) + 1 if smtp in self._connections else 0
            self._received.append(
                Received(
                    mail_from=cast(str, envelope.mail_from),
                    rcpt_tos=list(envelope.rcpt_tos),
                    data=data,
                    peer=tuple(session.peer or ()),
                    message=_parse(data),
                    connection=number,
                    tls=session.ssl is not None or self.implicit_tls,
                    smtputf8=bool(envelope.smtp_utf8),
                )
            )
            queued = len(self._received)
        return f"250 2.0.0 Ok: queued as TEST{queued:04d}"

    def _authenticate(
        self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self._auth is not None
        ok = (
            isinstance(data, LoginPassword)
            and (
                data.login.decode(),
                data.password.decode(),
            )
            == self._auth
        )
        return AuthResult(success=ok, handled=False)  # False: aiosmtpd answers 535 itself


class _Handler:
    """aiosmtpd hooks; each may answer from the script instead of accepting."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_EHLO(  # noqa: N802 (aiosmtpd's hook name)
        self, smtp: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        self.server.helo_names.append(hostname)
        if self.server.refusal is not None:
            return [self.server.refusal]
        session.host_name = hostname  # this style of hook must accept the name itself
        return responses

    async def handle_HELO(  # noqa: N802
        self, smtp: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        self.server.helo_names.append(hostname)
        if self.server.refusal is not None:
            return self.server.refusal
        session.host_name = hostname
        return f"250 {smtp.hostname}"

    async def handle_MAIL(  # noqa: N802
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.server.refusal is not None:
            return self.server.refusal
        reply = self.server._next_reply("mail", [address])
        if reply is not None and not reply.startswith("2"):
            return _answer(smtp, reply)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return reply or "250 2.1.0 Ok"

    async def handle_RCPT(  # noqa: N802
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.server._next_reply("rcpt", [address])
        if reply is not None and not reply.startswith("2"):
            return _answer(smtp, reply)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return reply or "250 2.1.5 Ok"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.server.data_delay:
            await asyncio.sleep(self.server.data_delay)
        reply = self.server._data_arrived(smtp, session, envelope)
        if self.server.reply_delay:
            await asyncio.sleep(self.server.reply_delay)
        return _answer(smtp, reply)


def _answer(smtp: SMTP, reply: str) -> str:
    if reply == DROP:
        assert isinstance(smtp.transport, asyncio.Transport)
        smtp.transport.abort()  # RST, no reply: what a crashed relay or a NAT timeout looks like
    return reply


class _CountingController(Controller):
    """Counts connections: aiosmtpd builds one SMTP instance per accepted socket."""

    def __init__(self, owner: SmtpServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner

    def factory(self) -> SMTP:
        smtp = cast(SMTP, super().factory())  # type: ignore[no-untyped-call]
        self._owner._add_connection(smtp)
        return smtp


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS tests need the openssl command line tool")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) of a self-signed certificate for 127.0.0.1, made once per run."""
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server (no TLS, no AUTH) accepting everything unless scripted."""
    with SmtpServer() as server:
        yield server
