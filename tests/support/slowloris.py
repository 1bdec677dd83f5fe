"""Slow HTTP clients ("slowloris") for tests of the web tier's connection limits.

`Slowloris(host, port, count)` opens `count` connections from an asyncio loop in a
thread. Each sends the start of a request and then one more header line every
`interval` seconds, never the blank line that ends the headers; when the server
closes it, it connects again (as a real attacker would). `with` stops them all.
"""

from __future__ import annotations

import asyncio
import random
import resource
import threading
from types import TracebackType

REQUEST_START = b"GET /healthz HTTP/1.1\r\nHost: victim\r\n"


def raise_own_nofile(needed: int) -> None:
    """Let this test process hold `needed` sockets (up to its hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Slowloris:
    def __init__(self, host: str, port: int, count: int, *, interval: float = 5.0) -> None:
        self.host, self.port, self.count, self.interval = host, port, count, interval
        self.connected = 0  #: successful connects, reconnects included
        self.closed_by_server = 0
        self.open = 0  #: connections currently open from our side
        self.peak_open = 0
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)
        self._ready = threading.Event()

    def __enter__(self) -> Slowloris:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._ready.set()
        clients = [asyncio.create_task(self._client()) for _ in range(self.count)]
        await self._stop.wait()
        for client in clients:
            client.cancel()
        await asyncio.gather(*clients, return_exceptions=True)

    async def _client(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
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
