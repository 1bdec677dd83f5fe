"""Work the web answers for before doing it: one worker thread, in order, bounded.

`POST /subscribe` must answer in the same time whatever the address is (new,
pending, active, suppressed), or the time tells who is on the list: the ledger
work and the confirmation mail therefore run here, after the answer.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

logger = logging.getLogger("dispatcher.web")

MAX_WAITING = 1000  #: jobs queued at most; the per-client rate limit keeps it far below


class Background:
    def __init__(self, name: str, *, max_waiting: int = MAX_WAITING) -> None:
        self.name = name
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue(max_waiting)
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue `job`; False (and a warning) when the queue is full."""
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            logger.warning(
                f"{self.name}: {MAX_WAITING} jobs waiting; this one is dropped",
                extra={"event": "background_full"},
            )
            return False
        return True

    def join(self, timeout: float = 30.0) -> bool:
        """Wait until every queued job is done (tests, shutdown); False on timeout."""
        done = threading.Event()

        def wait() -> None:
            self._jobs.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:
                logger.exception(f"{self.name}: a job failed", extra={"event": "background_error"})
            finally:
                self._jobs.task_done()
