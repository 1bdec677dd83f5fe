"""`dispatcher run` as ops see it: every stdout line is JSON, whichever library wrote it,
and an alias bomb written into the campaign file is a rejected reload, not an outage."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from tests.support.campaigns import campaign_copy
from tests.support.database import Database

ROOT = Path(__file__).parents[2]


def alias_bomb() -> str:
    lines = [f"a0: &a0 [{','.join(['lol'] * 142)}]"]
    lines += [f"a{n}: &a{n} [{','.join([f'*a{n - 1}'] * 142)}]" for n in range(1, 10)]
    return "\n".join(lines) + "\ncampaign: *a9\n"


class Lines:
    """A process's output, read as it comes (a full pipe would block the service)."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        with stream:
            for line in stream:
                self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} in {timeout} s:\n" + "\n".join(self.lines))

    def join(self) -> list[str]:
        self._thread.join(timeout=10)
        return self.lines


def test_run_logs_only_json_and_rejects_an_alias_bomb_on_reload(
    sqlite_database: Database, tmp_path: Path
) -> None:
    campaign = campaign_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(  # no DISPATCHER_LOG_FORMAT: JSON because stdout is a pipe, not a terminal
        DISPATCHER_DATABASE_URL=sqlite_database.url,
        DISPATCHER_CAMPAIGN_FILE=str(campaign),
        DISPATCHER_OUTBOX_DIR=str(tmp_path / "outbox"),
        DISPATCHER_TEMPLATES_DIR=str(ROOT / "templates"),
        DISPATCHER_HTTP_PORT="0",
        PYTHONWARNINGS="default",
    )
    service = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "run"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = Lines(service.stdout), Lines(service.stderr)
    try:
        started = json.loads(out.wait_for('"http_started"'))
        base = started["message"].removeprefix("HTTP endpoints on ")
        port = int(base.rsplit(":", 1)[1])

        # uvicorn logs a malformed request itself (logger uvicorn.error).
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"\x16\x03\x01 NOT HTTP\r\n\r\n")
            raw.recv(1024)
        out.wait_for("Invalid HTTP request")

        started_at = time.monotonic()
        campaign.write_text(alias_bomb(), encoding="utf-8")
        rejected = json.loads(out.wait_for('"reload_rejected"', timeout=10))
        noticed = time.monotonic() - started_at
        metrics = requests.get(f"{base}/metrics", timeout=10).text
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=40)
        finally:
            if service.poll() is None:
                service.kill()
    stdout, stderr = out.join(), err.join()

    assert service.returncode == 0, stderr
    events = [json.loads(line) for line in stdout]  # every line, not only the dispatcher's
    assert [line for line in stderr if line.strip()] == []
    loggers = {event["logger"] for event in events}
    assert {"dispatcher", "uvicorn.error"} <= loggers, loggers
    assert f"{campaign}:3:" in rejected["error"] and "alias *a1" in rejected["error"]
    assert noticed < 2 + 2  # the file is checked every 2 s; refusing it takes milliseconds
    assert "dispatcher_config_reload_errors_total 1.0" in metrics
    assert events[-1]["event"] == "service_stopped"
