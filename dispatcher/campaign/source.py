"""The campaign file as a running process sees it: the last good version and the problems
of the file as it is now.

One home for "load the campaign, keep the last good one, remember the problems", shared by
`dispatcher run` (the service checks every `CHECK_SECONDS` and on SIGHUP) and `dispatcher
web` (which has no scheduler and checks when a page asks, at most every `CHECK_SECONDS`).
An edit that does not validate never replaces the campaign in force; its `file:line:col`
problems are kept until the file is fixed, so the editors' desk can show them first
(docs/architecture.md, "The layers").
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dispatcher.campaign.loading import CampaignError, load_campaign
from dispatcher.campaign.model import Campaign

__all__ = ["CHECK_SECONDS", "CampaignSource", "Reload"]

CHECK_SECONDS = 2.0
"""How often a process looks whether the campaign file changed."""

log = logging.getLogger("dispatcher")

Stamp = tuple[int, int, int] | None


class Reload(enum.Enum):
    """What a check of the file found."""

    UNCHANGED = "unchanged"  #: the file is as it was at the last check
    LOADED = "loaded"  #: it changed and is valid: it is the campaign in force now
    REJECTED = "rejected"  #: it changed and has problems: the last good version stays


def _stamp(path: Path) -> Stamp:
    # Nanoseconds, size and inode: a save within the same second, or an editor that writes a
    # new file and renames it over the old one, still counts as a change.
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class CampaignSource:
    """The campaign in force, reloaded from `path` when the file changes.

    `campaign` is the version loaded at start (the caller has validated it: a process does
    not start on a broken file); without it the file is loaded now, and a `CampaignError`
    propagates. Thread-safe: the scheduler's reload job, SIGHUP and page requests may check
    at the same time.
    """

    def __init__(
        self,
        path: Path,
        campaign: Campaign | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        on_rejected: Callable[[], None] = lambda: None,
    ) -> None:
        self.path = path
        self._on_rejected = on_rejected  #: e.g. the process's reload-error metric
        self._stamp = _stamp(path)
        self._campaign = load_campaign(path) if campaign is None else campaign
        self._error: CampaignError | None = None
        self._rejected = 0
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._checked_at = monotonic()

    @property
    def campaign(self) -> Campaign:
        """The last good version: the one in force."""
        return self._campaign

    @property
    def error(self) -> CampaignError | None:
        """Why the file as it is now is not in force, or None when it is."""
        return self._error

    @property
    def problems(self) -> list[str]:
        """The current file's problems, one `file:line:col: path: message` each; empty when
        the campaign in force is the file as it is."""
        error = self._error
        return [] if error is None else [str(problem) for problem in error.problems]

    @property
    def rejected(self) -> int:
        """How many changed versions of the file were refused so far."""
        return self._rejected

    def check(self, *, force: bool = False) -> Reload:
        """Load the file again if it changed (or `force`); keep the last good one if invalid."""
        with self._lock:
            self._checked_at = self._monotonic()
            stamp = _stamp(self.path)
            if not force and stamp == self._stamp:
                return Reload.UNCHANGED
            self._stamp = stamp
            try:
                campaign = load_campaign(self.path)
            except CampaignError as error:
                self._error = error
                self._rejected += 1
                self._on_rejected()
                for problem in error.problems:
                    log.error(
                        "campaign reload rejected, keeping the last good version: %s",
                        problem,
                        extra={"event": "reload_rejected", "error": str(problem)},
                    )
                return Reload.REJECTED
            self._error = None
            self._campaign = campaign
            log.info("campaign reloaded", extra={"event": "reload_ok"})
            return Reload.LOADED

    def check_if_due(self) -> None:
        """`check()` unless one ran within `CHECK_SECONDS`: for a process without a
        scheduler, which checks when someone asks (a page of the desk, the archive)."""
        if self._monotonic() - self._checked_at >= CHECK_SECONDS:
            self.check()

    def current(self) -> Campaign:
        """The campaign in force, after a check if one is due."""
        self.check_if_due()
        return self._campaign

    def current_problems(self) -> list[str]:
        """The problems of the file, after a check if one is due."""
        self.check_if_due()
        return self.problems
