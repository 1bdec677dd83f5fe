"""10,000 slow HTTP clients for a minute cannot stop `dispatcher run` from sending.

`run` serves HTTP in the same process as the sender, under the usual limit of
1,024 file descriptors. The attack trickles header bytes on 10,000 connections
(reconnecting when dropped) while the week's first newsletter falls due; the
newsletter must reach every subscriber on time, /healthz must keep answering, and
the log must stay free of descriptor-exhaustion tracebacks.
"""

from __future__ import annotations

import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support.database import Database
from tests.support.ledger import add_subscribers
from tests.support.processes import environment
from tests.support.slowloris import Slowloris
from tests.support.smtpd import SmtpServer

ROOT = Path(__file__).parents[2]
SUBSCRIBERS = 300
SLOW_CLIENTS = 10_000
ATTACK_SECONDS = 60
LEAD = 20  #: seconds from start-up to the send, so that it falls inside the attack
DESCRIPTORS = 1024


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))


class Output:
    """Drains a pipe in a thread (a full pipe would block the service) and keeps the lines."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line)

    def join(self) -> None:
        self._thread.join(10)


class HealthProbe:
    """GET /healthz once a second; remembers each latency or failure."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(20)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            started = time.monotonic()
            try:
                response = requests.get(self.url, timeout=10)
            except requests.RequestException as error:
                self.failures.append(f"{type(error).__name__}: {error}"[:300])
                continue
            if response.status_code == 200:
                self.latencies.append(time.monotonic() - started)
            else:
                self.failures.append(f"HTTP {response.status_code}")


@pytest.mark.slow
def test_ten_thousand_slow_clients_leave_sending_on_time_and_healthz_answering(
    database: Database, smtp_server: SmtpServer
) -> None:
    if database.backend == "sqlite":
        pytest.skip("run on PostgreSQL: its sockets share the descriptor limit with the attack")
    addresses = set(add_subscribers(database, SUBSCRIBERS))
    directory = Path(tempfile.mkdtemp(prefix="dispatcher-slowloris-"))
    env = environment(database, smtp_server, directory)
    # The rehearsal clock starts LEAD seconds before the first newsletter (08:00 Berlin).
    due = time.monotonic() + LEAD
    service = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "run", "--at", f"2019-04-02T07:59:{60 - LEAD}+02:00"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_descriptors,
    )
    stdout, stderr = Output(service.stdout), Output(service.stderr)
    try:
        port = _http_port(stdout, timeout=15)
        with (
            HealthProbe(f"http://127.0.0.1:{port}/healthz") as health,
            Slowloris("127.0.0.1", port, SLOW_CLIENTS, interval=5.0) as attack,
        ):
            started = time.monotonic()
            first_sent_at: float | None = None
            all_sent_at: float | None = None
            while time.monotonic() - started < ATTACK_SECONDS:
                time.sleep(0.2)
                if first_sent_at is None and smtp_server.received:
                    first_sent_at = time.monotonic()
                if all_sent_at is None and len(smtp_server.received) >= SUBSCRIBERS:
                    all_sent_at = time.monotonic()
            sent_during_attack = len(smtp_server.received)
        service.terminate()
        service.wait(timeout=60)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
        stdout.join()
        stderr.join()
        for stream in (service.stdout, service.stderr):
            if stream is not None:
                stream.close()

    figures = {
        "slow connections opened (reconnects included)": attack.connected,
        "slow connections dropped by the server": attack.closed_by_server,
        "peak slow connections open at the client": attack.peak_open,
        "messages sent during the attack": sent_during_attack,
        "first sent, seconds after due": None
        if first_sent_at is None
        else round(first_sent_at - due, 1),
        "all sent, seconds after due": None if all_sent_at is None else round(all_sent_at - due, 1),
        "healthz answers": len(health.latencies),
        "healthz failures": health.failures,
        "healthz median s": round(statistics.median(health.latencies), 3)
        if health.latencies
        else None,
        "healthz max s": round(max(health.latencies), 3) if health.latencies else None,
    }
    print("slowloris figures:", json.dumps(figures))

    assert attack.peak_open >= 1000, f"the attack must actually hold connections: {figures}"
    assert {r.rcpt_tos[0] for r in smtp_server.received} == addresses, figures
    assert sent_during_attack == SUBSCRIBERS, figures
    assert all_sent_at is not None and all_sent_at - due < 30, "the newsletter went out late"
    assert not health.failures, figures
    assert len(health.latencies) >= ATTACK_SECONDS // 2, figures
    events = [json.loads(line) for line in stdout.lines if line.startswith("{")]
    assert not [e for e in events if e.get("event") == "tick_error"]
    everything = "".join(stdout.lines + stderr.lines)
    assert "Too many open files" not in everything
    assert "Traceback" not in everything


def _http_port(output: Output, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(output.lines):
            found = re.search(r"HTTP endpoints on http://[^:]+:(\d+)", line)
            if found:
                return int(found.group(1))
        time.sleep(0.05)
    raise AssertionError(f"`run` did not report its HTTP port: {output.lines[-5:]}")
