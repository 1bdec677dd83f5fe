"""A real MTA for tests: a private Postfix instance with OpenDKIM as its verify milter.

Switched on by DISPATCHER_TEST_MTA (`.ci/run` sets it from `scripts/mta-setup`, which installs
Debian's postfix, opendkim and opendkim-tools); `require_mta()` skips a test elsewhere.

    with start_dns_stub(txt={key_name: key_record}) as dns, start_mta(tmp_path, mailboxes, dns) as mta:
        ...  # DISPATCHER_SMTP_URL=mta.url; mta.wait_for_delivery(n); mta.messages(address)

Everything lives in a fresh directory (see `start_mta` for why not in `tmp_path`; its logs
are copied there) — docs/architecture.md, testing. Postfix runs as
`postfix -c DIR start` with its own main.cf/master.cf, queue and data directories, listens on
a free port of 127.0.0.1 and delivers mail for example.org into Maildirs
(`virtual_mailbox_maps`: the addresses given; any other address gets Postfix's own
`550 5.1.1 … User unknown in virtual mailbox table`). Nothing leaves the machine: mail for
any other domain ends at the `error:` transport (default and relay). /etc/postfix and the
system's services are never touched.

OpenDKIM runs as `opendkim -f -x CONF` in verify mode on a unix socket, asks the DNS stub
for keys, and adds `Authentication-Results: relay.example.net; dkim=pass …` to each message.
Its default InternalHosts (127.0.0.1) would make it *sign* our loopback mail, so it is set
to an address no test uses. `milter_default_action = tempfail`: with OpenDKIM stopped
(`mta.stop_opendkim()`), Postfix answers `451 4.7.1 Service unavailable - try again later`
to MAIL FROM — a relay's temporary outage — until `mta.start_opendkim()`. (Its log shows the
refusal at CONNECT and EHLO already, but with `smtpd_delay_reject = yes`, the default, EHLO
is still answered 250 and the client meets the 451 at MAIL FROM.)

Postfix's daemons run as the `postfix` user and deliver as `nobody`: the directories they
reach have mode 0755 (the Maildir base belongs to `nobody`), and Postfix creates its queue
itself (owned by `postfix`). Needs root, as `postfix start` does.
"""

from __future__ import annotations

import email
import email.policy
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.dnsstub import DnsStub
from tests.support.ports import free_port

ENABLED = bool(os.environ.get("DISPATCHER_TEST_MTA"))
DOMAIN = "example.org"  #: the domain Postfix delivers into Maildirs
HOSTNAME = "relay.example.net"  #: Postfix's myhostname and OpenDKIM's AuthservID
UNUSED_HOST = "192.0.2.1"  #: TEST-NET-1 (RFC 5737): OpenDKIM's InternalHosts, never a client
SBIN = Path("/usr/sbin")
#: master.cf without chroot (the queue directory holds no chroot tree) and only what is used
MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def require_mta() -> None:
    """Skip the calling test unless the Postfix/OpenDKIM tests are switched on."""
    if not ENABLED:
        pytest.skip(
            "real-MTA tests need Postfix and OpenDKIM: set DISPATCHER_TEST_MTA=1 "
            "(.ci/run sets it from scripts/mta-setup, which installs them)"
        )


class Mta:
    """A running Postfix + OpenDKIM pair; build it with `start_mta`."""

    host = "127.0.0.1"

    def __init__(
        self, directory: Path, mailboxes: Iterable[str], dns: DnsStub, *, timeout: float = 30
    ) -> None:
        self.directory = directory
        self.timeout = timeout
        self.mailboxes = sorted({address.lower() for address in mailboxes})
        self.conf = directory / "conf"
        self.queue = directory / "queue"
        self.mail = directory / "mail"  #: virtual_mailbox_base: mail/<address>/new/…
        self.log = directory / "log"
        self.milter = directory / "opendkim"
        self.socket = self.milter / "opendkim.sock"
        self.port = free_port()
        self._opendkim: subprocess.Popen[bytes] | None = None
        self._started = False
        nobody = pwd.getpwnam("nobody")
        for path in (directory, self.conf, self.queue, self.mail, self.log, self.milter):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o755)
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        (self.conf / "main.cf").write_text(self._main_cf(nobody.pw_uid, nobody.pw_gid))
        (self.conf / "master.cf").write_text(MASTER_CF.format(listen=f"{self.host}:{self.port}"))
        (self.conf / "vmailbox").write_text(
            "".join(f"{address} {address}/\n" for address in self.mailboxes)
        )
        _run(SBIN / "postmap", "-c", str(self.conf), f"hash:{self.conf / 'vmailbox'}")
        (self.milter / "opendkim.conf").write_text(
            "\n".join(
                (
                    "Mode v",
                    f"Socket local:{self.socket}",
                    "UMask 000",  # the socket: reachable by Postfix's smtpd (user postfix)
                    "Syslog no",
                    f"AuthservID {HOSTNAME}",
                    f"InternalHosts {UNUSED_HOST}",
                    f"Nameservers {dns.address}",
                    "AlwaysAddARHeader yes",
                    "",
                )
            )
        )

    @property
    def url(self) -> str:
        """DISPATCHER_SMTP_URL for the dispatcher: plain SMTP (no TLS, no AUTH) on the test port."""
        return f"smtp://{self.host}:{self.port}"

    def _main_cf(self, uid: int, gid: int) -> str:
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.directory / "data",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": HOSTNAME,
            "mydomain": "example.net",
            "myorigin": "$myhostname",
            "mydestination": "",
            "relayhost": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "smtpd_peername_lookup": "no",  # no DNS for 127.0.0.1
            "smtpd_error_sleep_time": "0",  # answer a refused command at once
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "default_transport": "error:this test relay delivers to example.org only",
            "relay_transport": "error:this test relay delivers to example.org only",
            "virtual_mailbox_domains": DOMAIN,
            "virtual_mailbox_base": self.mail,
            "virtual_mailbox_maps": f"hash:{self.conf / 'vmailbox'}",
            "virtual_uid_maps": f"static:{uid}",
            "virtual_gid_maps": f"static:{gid}",
            "virtual_minimum_uid": "1",
            "maillog_file": self.log / "maillog",
            "maillog_file_prefixes": self.log,
            "smtpd_milters": f"unix:{self.socket}",
            "non_smtpd_milters": "",
            "milter_default_action": "tempfail",
            "biff": "no",
        }
        return "".join(f"{name} = {value}\n" for name, value in settings.items())

    # Postfix ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start OpenDKIM and Postfix; return once Postfix greets on its port."""
        self.start_opendkim()
        _run(SBIN / "postfix", "-c", str(self.conf), "start")
        self._started = True
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=5) as connection:
                    if connection.recv(512).startswith(b"220"):
                        connection.sendall(b"QUIT\r\n")
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Postfix did not greet on port {self.port}:\n{self.maillog()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """`postfix -c DIR stop` (and wait for the master to exit), then OpenDKIM."""
        if self._started:
            pid_file = self.queue / "pid" / "master.pid"
            pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
            _run(SBIN / "postfix", "-c", str(self.conf), "stop")
            self._started = False
            deadline = time.monotonic() + self.timeout
            while pid is not None and _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.stop_opendkim()

    def maillog(self) -> str:
        path = self.log / "maillog"
        return path.read_text(errors="replace") if path.exists() else "(no maillog yet)"

    def queued(self) -> int:
        """Messages Postfix holds and has not delivered (or bounced) yet."""
        return sum(
            1
            for name in ("maildrop", "incoming", "active", "deferred", "hold")
            for path in (self.queue / name).rglob("*")
            if path.is_file()
        )

    # OpenDKIM --------------------------------------------------------------------------

    def start_opendkim(self) -> None:
        """Start the milter and wait for its socket (a restart after `stop_opendkim`)."""
        if self._opendkim is not None:
            return
        self.socket.unlink(missing_ok=True)
        with (self.milter / "opendkim.log").open("ab") as log:
            self._opendkim = subprocess.Popen(
                [SBIN / "opendkim", "-f", "-x", str(self.milter / "opendkim.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.timeout
        while not self.socket.exists():
            if self._opendkim.poll() is not None or time.monotonic() > deadline:
                log_text = (self.milter / "opendkim.log").read_text(errors="replace")
                self.stop_opendkim()
                raise RuntimeError(f"opendkim did not open {self.socket}:\n{log_text}")
            time.sleep(0.05)

    def stop_opendkim(self) -> None:
        """Kill the milter: Postfix then refuses sessions with 451 4.7.1 (tempfail).

        SIGKILL, not SIGTERM: libmilter notices a SIGTERM only at its next 5-second poll, and
        a milter that crashed is exactly the outage the tests want.
        """
        process, self._opendkim = self._opendkim, None
        if process is None:
            return
        process.kill()
        process.wait(timeout=10)
        self.socket.unlink(missing_ok=True)

    # Delivered mail --------------------------------------------------------------------

    def delivered(self) -> dict[str, list[Path]]:
        """Each mailbox's delivered message files (Maildir `new/`), by address."""
        return {
            address: sorted((self.mail / address / "new").glob("*"))
            for address in self.mailboxes
            if (self.mail / address / "new").is_dir()
        }

    def messages(self, address: str) -> list[EmailMessage]:
        """The messages in `address`'s Maildir, parsed with `email.policy.default`."""
        parsed = []
        for path in self.delivered().get(address.lower(), []):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed

    def wait_for_delivery(self, count: int) -> dict[str, list[Path]]:
        """Wait until `count` messages are in the Maildirs and Postfix's queue is empty."""
        deadline = time.monotonic() + self.timeout
        while True:
            delivered = self.delivered()
            total = sum(len(files) for files in delivered.values())
            if total >= count and self.queued() == 0:
                return delivered
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{total} of {count} messages delivered, {self.queued()} still queued "
                    f"after {self.timeout} s; maillog:\n{self.maillog()[-4000:]}"
                )
            time.sleep(0.1)


@contextmanager
def start_mta(tmp_path: Path, mailboxes: Iterable[str], dns: DnsStub) -> Iterator[Mta]:
    """Postfix + OpenDKIM delivering to `mailboxes`; stopped and removed afterwards.

    Their files live in a directory of their own under the system's temp dir, not in
    `tmp_path`: pytest resets its base directory to mode 0700 whenever any pytest session
    starts, which would lock the `postfix` user out of a running instance (its milter socket,
    the Maildirs). The logs (maillog, opendkim.log) are copied to `tmp_path/mta-logs` at the end.
    """
    require_mta()
    directory = Path(tempfile.mkdtemp(prefix="dispatcher-mta-"))
    mta = Mta(directory, mailboxes, dns)
    try:
        mta.start()
        yield mta
    finally:
        try:
            mta.stop()
        finally:
            logs = tmp_path / "mta-logs"
            logs.mkdir(exist_ok=True)
            for log in (mta.log / "maillog", mta.milter / "opendkim.log"):
                if log.exists():
                    shutil.copy(log, logs / log.name)
            shutil.rmtree(directory, ignore_errors=True)


def _run(*command: str | Path) -> None:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, command))} failed ({result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
