"""`bench/run` stays runnable: a tiny run (N=200, SQLite) must finish with passing ledger checks.

A smoke test, not a benchmark: nothing here asserts a speed. It needs Postfix's
smtp-sink/smtp-source (bench/run installs Debian's postfix when run as root with
apt-get); without them, and no way to install them, the test is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
NO_TOOLS = 4  #: bench/run's exit code when smtp-sink/smtp-source cannot be had


def _tools_available() -> bool:
    return all(
        shutil.which(t) or Path(f"/usr/sbin/{t}").exists() for t in ("smtp-sink", "smtp-source")
    )


def test_bench_smoke_run_prints_the_table_with_a_passing_ledger_check() -> None:
    """The default shape of a run, tiny: DKIM off and on, each with readers in one language
    and in two (every second one English), every case with its ledger check."""
    if not _tools_available() and (os.geteuid() != 0 or not shutil.which("apt-get")):
        pytest.skip("smtp-sink/smtp-source missing, and installing postfix needs root and apt-get")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    result = subprocess.run(
        [str(ROOT / "bench" / "run"), "--sizes", "200", "--databases", "sqlite", "--no-fanout",
         "--reference-count", "500", "--reference-reps", "1", "--case-timeout", "300"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    if result.returncode == NO_TOOLS:
        pytest.skip(f"bench/run could not install its tools: {result.stderr.strip()[-300:]}")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "| case | database | N | readers |" in out
    assert re.search(r"^- 1 session: \*\*[\d,]+ msgs/s\*\*", out, re.MULTILINE), out
    assert re.search(r"^- 16 sessions: \*\*[\d,]+ msgs/s\*\*", out, re.MULTILINE), out

    def row(prefix: str) -> str:
        return next((line for line in out.splitlines() if line.startswith(prefix)), "")

    once = "| ok: 200 sent / 200 subscribers, 200 rows, 0 not exactly once, sink 200"
    # one language: every reader German, no English email
    assert f"{once} |" in row("| tick | sqlite | 200 | de |"), out
    # the same case with DKIM signing, whose signatures the bench checked before it
    assert f"{once} |" in row("| tick + DKIM | sqlite | 200 | de |"), out
    assert "DKIM check: 3 of 3 messages" in out
    # two languages: the 100 English readers got the English email, no one else did
    english = f"{once}, 100 in English / 100 `en` readers |"
    assert english in row("| tick | sqlite | 200 | de + en |"), out
    assert english in row("| tick + DKIM | sqlite | 200 | de + en |"), out
    assert re.search(
        r"^Language check: .*the `en` reader's email is English \(Content-Language: en, "
        r"`<html lang=\"en\">`", out, re.MULTILINE,
    ), out  # fmt: skip
    # DKIM off and on side by side, per readers: both rates and their ratio
    for readers in ("de", r"de \+ en"):
        assert re.search(
            rf"^\| sqlite \| 200 \| {readers} \| [\d,]+ \| [\d,]+ \| \d+\.\d\d \|$",
            out,
            re.MULTILINE,
        ), out
    # one language and two side by side, per DKIM, with the verdict (never a speed asserted)
    for dkim in ("off", "on"):
        assert re.search(
            rf"^\| sqlite \| 200 \| {dkim} \| [\d,]+ \| [\d,]+ \| \d+\.\d\d \| [\d.]+ / [\d.]+ s \|$",
            out,
            re.MULTILINE,
        ), out
        assert re.search(
            rf"^- two languages within 10 % of one \(sqlite 200, DKIM {dkim}\): (met|NOT met) "
            r"\(\d+\.\d\d: [\d,]+ vs [\d,]+ msgs/s",
            out, re.MULTILINE,
        ), out  # fmt: skip
    assert "- machine: " in out


def test_desk_bench_smoke_run_times_the_three_pages() -> None:
    """`bench/run desk` with a tiny ledger: every page answered and got a row (no speed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    result = subprocess.run(
        [str(ROOT / "bench" / "run"), "desk", "--databases", "sqlite", "--subscribers", "200",
         "--requests", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| sqlite | GET ")]
    pages = [row.split(" | ")[1] for row in rows]
    assert pages == ["GET /desk/ (calendar)", "GET /desk/items/{id}", "GET /desk/plan.ics"], (
        result.stdout
    )
    assert "6,200 email deliveries" in result.stdout  # 31 days × 200 subscribers
    assert re.search(r"^Goal \(median and p90 under 200 ms on every page\): (met|NOT met)$",
                     result.stdout, re.MULTILINE), result.stdout  # fmt: skip
