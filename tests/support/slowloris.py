"""Slow HTTP clients ("slowloris") for tests of the web tier's connection limits.

`Slowloris(host, port, count)` opens `count` connections from a separate process (an
attacker is another machine: in the test process its event loop would take the GIL from
the test's own SMTP relay and skew what is measured). Each connection sends the start of
a request and then one more header line every `interval` seconds, never the blank line
that ends the headers; when the server closes it, it connects again, as a real attacker
would. Leaving the `with` block stops them and fills in the counts.

    python -m tests.support.slowloris HOST PORT COUNT INTERVAL   # runs until SIGTERM
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

REQUEST_START = b"GET /healthz HTTP/1.1\r\nHost: victim\r\n"
ROOT = Path(__file__).parents[2]


def raise_own_nofile(needed: int) -> None:
    """Let this process hold `needed` sockets (up to its hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Slowloris:
    def __init__(self, host: str, port: int, count: int, *, interval: float = 5.0) -> None:
        self.args = [host, str(port), str(count), str(interval)]
        self.connected = 0  #: successful connects, reconnects included
        self.closed_by_server = 0
        self.peak_open = 0  #: connections open at once, as the attacker saw it
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Slowloris:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.slowloris", *self.args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self._process.stdout.readline()  # "started": the loop runs
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        out, _ = self._process.communicate(timeout=60)
        lines = out.strip().splitlines()
        if lines:
            counts = json.loads(lines[-1])
            self.connected = counts["connected"]
            self.closed_by_server = counts["closed_by_server"]
            self.peak_open = counts["peak_open"]


class _Attack:
    def __init__(self, host: str, port: int, count: int, interval: float) -> None:
        self.host, self.port, self.count, self.interval = host, port, count, interval
        self.connected = self.closed_by_server = self.open = self.peak_open = 0

    async def run(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._report_and_exit)
        clients = [asyncio.create_task(self._client()) for _ in range(self.count)]
        print("started", flush=True)
        await asyncio.gather(*clients)

    def _report_and_exit(self) -> None:
        counts = {
            "connected": self.connected,
            "closed_by_server": self.closed_by_server,
            "peak_open": self.peak_open,
        }
        print(json.dumps(counts), flush=True)
        # Cancelling 10,000 clients one by one takes long on a busy machine; the exit closes
        # every socket at once.
        os._exit(0)

    async def _client(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), 10
                )
            except (OSError, TimeoutError):
                await asyncio.sleep(random.uniform(0.5, 1.5))
                continue
            self.connected += 1
            self.open += 1
            self.peak_open = max(self.peak_open, self.open)
            try:
                writer.write(REQUEST_START)
                while True:
                    try:
                        data = await asyncio.wait_for(
                            reader.read(1024), self.interval * random.uniform(0.5, 1.5)
                        )
                    except TimeoutError:
                        writer.write(b"X-Slow: a\r\n")  # one more header, never the last one
                        await writer.drain()
                        continue
                    if not data:
                        self.closed_by_server += 1
                        break
            except OSError:
                self.closed_by_server += 1
            finally:
                self.open -= 1
                writer.transport.abort()
            await asyncio.sleep(random.uniform(0.1, 0.5))


if __name__ == "__main__":
    host, port, count, interval = sys.argv[1:5]
    raise_own_nofile(int(count) + 1000)
    asyncio.run(_Attack(host, int(port), int(count), float(interval)).run())
