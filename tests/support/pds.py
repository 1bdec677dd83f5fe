"""The real AT Protocol PDS (`@atproto/pds` + a local PLC, all on loopback) as a pytest fixture.

A fake can only answer what its author believed; the reference PDS validates records against
the real lexicons and has the real put/swap semantics. `scripts/pds-setup` prepares it once
(`npm ci`) and prints its directory; `.ci/run` exports that as DISPATCHER_TEST_PDS_DIR.
Start-up takes ~2.5 s, so one server serves the whole session (tests use distinct rkeys).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

START_TIMEOUT = 60.0  #: seconds until the JSON line; ~2.5 s normally, more on a loaded CI box
ADMIN_PASSWORD = "admin-pass"  #: start_pds.mjs's fixed admin password (Basic auth as `admin`)


@dataclass(frozen=True)
class RealPds:
    pds_url: str
    handle: str
    password: str
    did: str


@pytest.fixture(scope="session")
def real_pds() -> Iterator[RealPds]:
    directory = os.environ.get("DISPATCHER_TEST_PDS_DIR")
    if not directory:
        pytest.skip(
            "real AT Protocol PDS tests need DISPATCHER_TEST_PDS_DIR "
            "(set by .ci/run after scripts/pds-setup)"
        )
    script = Path(directory) / "start_pds.mjs"
    if not (Path(directory) / "node_modules").is_dir() or not script.is_file():
        pytest.fail(f"DISPATCHER_TEST_PDS_DIR={directory} is not prepared; run scripts/pds-setup")
    # stderr to a file, not a pipe: nobody reads it while the server runs, and a full pipe
    # would block the server mid-test.
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            ["node", str(script)],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            info = _first_line(process, errors)
            yield RealPds(info["pds_url"], info["handle"], info["password"], info["did"])
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def _first_line(process: subprocess.Popen[str], errors: IO[str]) -> dict[str, str]:
    """The JSON line start_pds.mjs prints once the account exists (stderr only on failure)."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if selector.select(timeout=0.2):
                line = process.stdout.readline()
                if line:
                    info: dict[str, str] = json.loads(line)
                    return info
            if process.poll() is not None:
                break
    if process.poll() is None:
        process.kill()
    errors.seek(0)
    output = errors.read()[-2000:]
    pytest.fail(f"the AT Protocol PDS did not start (exit {process.poll()}):\n{output}")
