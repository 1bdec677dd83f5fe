"""`dispatcher run` processes started by a test, with their JSON logs, stopped at the end."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).parents[2]


class Fleet:
    """Started `run` processes, their logs in files, stopped at the end of the test."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, at: str, *extra: str) -> subprocess.Popen[bytes]:
        index = len(self.processes)
        with (self.logs / f"run-{index}.log").open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "dispatcher", "run", "--at", at, *extra],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.processes.append(process)
        return process

    def events(self, process: subprocess.Popen[bytes]) -> list[dict[str, object]]:
        path = self.logs / f"run-{self.processes.index(process)}.log"
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def leader(self) -> subprocess.Popen[bytes] | None:
        holders = [
            p
            for p in self.processes
            if p.poll() is None
            and [
                e["event"] for e in self.events(p) if str(e.get("event", "")).startswith("leader_")
            ][-1:]
            == ["leader_acquired"]
        ]
        assert len(holders) <= 1, "two processes think they schedule"
        return holders[0] if holders else None

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started
