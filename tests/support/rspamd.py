"""A private rspamd for tests: Debian's rules, its own directories, a DNS stub as resolver.

    with start_rspamd(Path(os.environ["DISPATCHER_TEST_RSPAMD"]), tmp_path, dns=stub) as judge:
        verdict = judge.check(message, ip="192.0.2.25", mail_from="newsletter@news.example.org")

The instance reads the stock configuration of the package (/etc/rspamd, rules under
/usr/share/rspamd) and overrides only what a test must: its run, database and log directories
and `local.d` live under the test's directory (`--var`), the normal worker and the controller
listen on free loopback ports, hyperscan is off (otherwise every fresh start compiles the
regular expressions for about a minute), and its only DNS server is the stub — so blocklists,
URL lists and map downloads find nothing and nothing leaves the machine. No Redis: Bayes,
reputation and the other Redis-backed modules stay idle. See docs/architecture.md (testing).

A message is scored with `rspamc`, as an MTA would hand it over: the connecting IP (`-i`),
HELO, the client's verified host name, envelope sender and recipient.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.dnsstub import DnsStub
from tests.support.ports import free_port

START_TIMEOUT = 180.0  # seconds; ~15 s on an idle core (the TLD list is compiled at start)

_TOP_CONFIG = """\
# Written by tests/support/rspamd.py: the package's rspamd.conf without the proxy and fuzzy
# workers, every path under this directory, loopback ports chosen by the test.
.include "$CONFDIR/common.conf"

options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}}

logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    .include "$CONFDIR/logging.inc"
}}

worker "normal" {{
    bind_socket = "127.0.0.1:{normal_port}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}

worker "controller" {{
    bind_socket = "127.0.0.1:{controller_port}";
    .include "$CONFDIR/worker-controller.inc"
}}
"""

_OPTIONS = """\
disable_hyperscan = true;
dns {{
    nameserver = ["{address}:{port}"];
    timeout = 1s;
    retransmits = 1;
}}
"""


@dataclass(frozen=True)
class Symbol:
    name: str
    score: float
    options: tuple[str, ...]

    def __str__(self) -> str:
        options = f"[{', '.join(self.options)}]" if self.options else ""
        return f"{self.name} {self.score:+.2f}{options}"


@dataclass(frozen=True)
class Verdict:
    score: float  #: rspamd's total
    action: str  #: "no action", "greylist", "add header", "reject", …
    symbols: dict[str, Symbol]

    def scores(self) -> dict[str, float]:
        return {name: symbol.score for name, symbol in self.symbols.items()}

    def positive(self) -> dict[str, float]:
        return {name: score for name, score in self.scores().items() if score > 0}

    def __str__(self) -> str:
        listed = "\n  ".join(str(s) for s in sorted(self.symbols.values(), key=lambda s: s.name))
        return f"score {self.score:+.2f} ({self.action}):\n  {listed}"


class Rspamd:
    """A running instance; use `start_rspamd`."""

    def __init__(self, binary: Path, directory: Path, dns: DnsStub) -> None:
        self.binary = binary
        self.rspamc = binary.with_name("rspamc")
        self.directory = directory
        self.port = free_port()
        self.controller_port = free_port()
        self.log = directory / "log" / "rspamd.log"
        local = directory / "local"
        for sub in ("run", "db", "log", "local/local.d", "local/override.d"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        config = directory / "rspamd.conf"
        config.write_text(
            _TOP_CONFIG.format(normal_port=self.port, controller_port=self.controller_port)
        )
        (local / "local.d" / "options.inc").write_text(
            _OPTIONS.format(address=dns.address, port=dns.port)
        )
        variables = {
            "LOCAL_CONFDIR": local,
            "RUNDIR": directory / "run",
            "DBDIR": directory / "db",
            "LOGDIR": directory / "log",
        }
        # As root, rspamd wants -u/-g for its workers; the test's directories belong to root,
        # so the workers stay root (-i: on purpose, for a private test instance).
        user = ["-u", "root", "-g", "root", "-i"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [
                str(binary),
                "--no-fork",
                "-c",
                str(config),
                *user,
                *(f"--var={name}={value}" for name, value in variables.items()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # main process and workers: one group of their own
        )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rspamd exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=2) as r:
                    if r.read().strip() == b"pong":
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"rspamd not ready after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        stderr = ""
        if self.process.poll() is not None and self.process.stderr is not None:
            stderr = self.process.stderr.read().decode(errors="replace")
        log = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join([*log[-lines:], stderr]).strip()

    def check(
        self,
        message: bytes,
        *,
        ip: str,
        mail_from: str,
        rcpt: str | None = None,
        helo: str | None = None,
        hostname: str | None = None,
    ) -> Verdict:
        """rspamd's verdict on `message` as an MTA would pass it on after the SMTP session."""
        command = [
            str(self.rspamc),
            "--connect",
            f"127.0.0.1:{self.port}",
            "--json",
            "--timeout",
            "60",
            "-i",
            ip,
            "-F",
            mail_from,
            *(["-r", rcpt] if rcpt else []),
            *(["--helo", helo] if helo else []),
            *(["--hostname", hostname] if hostname else []),
        ]
        result = subprocess.run(
            command, input=message, capture_output=True, timeout=90, check=False
        )
        output = result.stdout.decode(errors="replace")
        if result.returncode != 0 or not output.lstrip().startswith("{"):
            raise RuntimeError(
                f"rspamc failed ({result.returncode}): {output}{result.stderr.decode()}\n"
                + self.tail()
            )
        reply = json.loads(output)
        symbols = {
            name: Symbol(name, round(float(s["score"]), 3), tuple(s.get("options", ())))
            for name, s in reply["symbols"].items()
        }
        return Verdict(round(float(reply["score"]), 3), str(reply["action"]), symbols)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # the main process stops its workers
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only rspamd
                self.process.wait(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()


@contextmanager
def start_rspamd(binary: Path, directory: Path, *, dns: DnsStub) -> Iterator[Rspamd]:
    """rspamd from `binary` (its `rspamc` beside it), ready to score, until the block ends."""
    server = Rspamd(binary, directory, dns)
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()
