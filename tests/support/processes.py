"""Start `python -m dispatcher …` as a real process against a test ledger and relay."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.smtpd import SmtpServer

ROOT = Path(__file__).parents[2]


def environment(
    database: Database, smtp: SmtpServer, directory: Path | None = None, **extra: str
) -> dict[str, str]:
    """Email only (the social channels have their own tests); campaign copy and outbox in
    `directory` (default: a fresh one)."""
    directory = directory or Path(tempfile.mkdtemp(prefix="dispatcher-test-"))
    # The developer's own DISPATCHER_* settings must not leak into the process under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(
        DISPATCHER_DATABASE_URL=database.url,
        DISPATCHER_SMTP_URL=smtp.url,
        DISPATCHER_CAMPAIGN_FILE=str(campaign_copy(directory)),
        DISPATCHER_OUTBOX_DIR=str(directory / "outbox"),
        DISPATCHER_TEMPLATES_DIR=str(ROOT / "templates"),
        DISPATCHER_MAIL_FROM="Clusterplattform <newsletter@news.example.org>",
        DISPATCHER_LOG_FORMAT="json",
        DISPATCHER_HTTP_PORT="0",  # `run` serves HTTP: any free port
    )
    env.update(extra)
    return env


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`python -m dispatcher *args` from the repository root, output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "dispatcher", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(settings: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`python -m dispatcher *args` in `cwd` to its end, output captured as text;
    `settings` (`DISPATCHER_…`) are the only dispatcher settings in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(settings)
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
