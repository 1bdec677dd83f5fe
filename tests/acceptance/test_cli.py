"""The editor's commands, run as a user runs them: `python -m dispatcher …` in a subprocess."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import processes

ROOT = Path(__file__).parents[2]


def dispatcher(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return processes.run(env, *args, cwd=cwd)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the bundled config and templates that a test may break."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path


def test_validate_sample_is_clean() -> None:
    result = dispatcher("validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout and "clusterwoche-2019" in result.stdout


def test_validate_reports_each_error_with_position(workdir: Path) -> None:
    path = workdir / "config" / "campaign.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        "url: https://www.clusterplattform.de/reportage/2019/logistik", "url: htps://x"
    )
    text = text.replace("timezone: Europe/Berlin", "timezone: Europe/Berlinn")
    path.write_text(text, encoding="utf-8")
    result = dispatcher("validate", cwd=workdir)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("config/campaign.yaml:11:13: campaign.timezone: unknown time zone")
    assert lines[1].startswith("config/campaign.yaml:")
    assert 'items[6].url: not a valid URL ("htps://x' in lines[1]


def test_validate_checks_templates_of_used_channels(workdir: Path) -> None:
    (workdir / "templates" / "social" / "mastodon.txt.j2").unlink()
    (workdir / "templates" / "social" / "bluesky.txt.j2").write_text("{{ title }\n")
    result = dispatcher("validate", cwd=workdir)
    assert result.returncode == 1
    assert "mastodon.txt.j2" in result.stdout
    assert "bluesky.txt.j2:1" in result.stdout


def test_validate_in_production_refuses_dev_defaults() -> None:
    result = dispatcher("validate", DISPATCHER_ENV="production")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("settings: DISPATCHER_SECRET_KEY is the development key")
    assert len([line for line in lines if "has no credentials" in line]) == 5


def test_run_refuses_a_mistyped_alert_webhook_without_a_traceback(tmp_path: Path) -> None:
    secret = "https://hooks.slack.com/services/T0/B0/geheim"
    result = dispatcher(
        "run",
        DISPATCHER_DATABASE_URL=f"sqlite:///{tmp_path}/ledger.sqlite3",
        DISPATCHER_HTTP_PORT="0",
        DISPATCHER_ALERT_WEBHOOK_URLS=f"{secret},not a url",
    )
    assert result.returncode == 1
    assert "error: DISPATCHER_ALERT_WEBHOOK_URLS entry 2: needs an http(s) URL" in result.stderr
    assert "Traceback" not in result.stderr and "geheim" not in result.stderr


def test_plan_json_for_the_sample_week() -> None:
    result = dispatcher("plan", "--json", "--at", "2019-04-01T12:00:00+02:00")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {tuple(sorted(r)) for r in rows} == {
        ("channel", "date", "item", "languages", "send_at_local", "send_at_utc", "state")
    }
    emails = [r for r in rows if r["channel"] == "email"]
    assert [r["date"] for r in emails] == [
        "2019-04-02", "2019-04-03", "2019-04-04", "2019-04-05",
        "2019-04-08", "2019-04-09", "2019-04-10", "2019-04-11",
    ]  # fmt: skip
    assert emails[0]["item"] == "nordwind-maritim" and emails[-1]["item"] == "niedersachsen-agrar"
    assert emails[0]["send_at_local"] == "2019-04-02T08:00:00+02:00"
    assert emails[0]["send_at_utc"] == "2019-04-02T06:00:00+00:00"
    assert {r["state"] for r in rows} == {"planned"}
    # Every item is in German and English: the email goes out in both, and so does Mastodon.
    assert all(r["languages"] == {"de": "own", "en": "own"} for r in emails)
    by_channel = {r["channel"]: r["languages"] for r in rows if r["date"] == "2019-04-02"}
    assert by_channel["mastodon"] == {"de": "own", "en": "own"}
    assert by_channel["bluesky"] == {"de": "own"}
    assert len(rows) == 8 * 5
    assert len({r["item"] for r in rows}) == 8


def test_plan_table_is_readable() -> None:
    result = dispatcher("plan", "--at", "2019-04-05T09:30:00+02:00")
    assert result.returncode == 0, result.stderr
    assert "2019-04-02  Di   email     08:00  2019-04-02 06:00Z  nordwind-maritim" in result.stdout
    assert "2019-04-08  Mo" in result.stdout
    assert "unscheduled items (no send day left): none" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line[:4] == "2019"]
    states = {row[7] for row in rows}  # date, day, channel, local, utc (two), item, state
    assert {"missed", "due", "planned"} <= states  # 2 April missed, 5 April due, later planned
    # Then the languages: email and Mastodon in German and English, the rest in German.
    assert {" ".join(row[8:]) for row in rows if row[2] in ("email", "mastodon")} == {"de en"}
    assert {" ".join(row[8:]) for row in rows if row[2] == "bluesky"} == {"de"}


def test_preview_writes_email_and_posts(tmp_path: Path) -> None:
    result = dispatcher("preview", "berlin-digital", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for channel, limit in (("mastodon", 500), ("bluesky", 300), ("linkedin", 3000)):
        line = next(ln for ln in result.stdout.splitlines() if ln.startswith(f"{channel}:"))
        length = int(line.split()[1].split("/")[0])
        assert 0 < length <= limit and f"/{limit}" in line
    message = email.message_from_bytes(
        (tmp_path / "email.eml").read_bytes(), policy=email.policy.default
    )
    assert message.get_content_type() == "multipart/alternative"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Digitalwirtschaft" in str(message["Subject"])
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "https://www.clusterplattform.de/reportage/2019/digitalwirtschaft-spree" in text
    assert "Künstliche Intelligenz" in text
    mastodon = (tmp_path / "mastodon.txt").read_text(encoding="utf-8")
    assert "#KünstlicheIntelligenz" in mastodon


def test_preview_unknown_item_says_what_exists() -> None:
    result = dispatcher("preview", "no-such-item")
    assert result.returncode == 1
    assert "unknown item 'no-such-item'" in result.stderr
    assert "nordwind-maritim" in result.stderr


def test_usage_error_exits_2() -> None:
    assert dispatcher("plan", "--no-such-flag").returncode == 2


def long_campaign(workdir: Path, items: int = 400) -> None:
    """The sample over three years with `items` more items: a plan of ~300 KB, more than a
    pipe holds, so the writer is still writing when the reader goes away."""
    path = workdir / "config" / "campaign.yaml"
    text = path.read_text(encoding="utf-8").replace("end: 2019-04-11", "end: 2021-12-31")
    text += "".join(
        f'  - id: extra-{n}\n    title: "Extra {n}"\n    teaser: "Kurz."\n'
        f'    url: https://example.org/{n}\n    initiative: "Cluster {n}"\n    region: Bayern\n'
        for n in range(items)
    )
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("args", [("plan",), ("plan", "--json")], ids=["table", "json"])
def test_piped_output_ends_quietly_when_the_reader_closes(
    workdir: Path, args: tuple[str, ...]
) -> None:
    long_campaign(workdir)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    with subprocess.Popen(
        [sys.executable, "-m", "dispatcher", *args, "--at", "2019-04-01T12:00+02:00"],
        cwd=workdir,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:  # like `dispatcher plan | head -1`
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline()
        process.stdout.close()
        errors = process.stderr.read().decode()
        returncode = process.wait(timeout=60)
    assert errors == ""
    assert returncode == 128 + signal.SIGPIPE  # what a shell shows for a SIGPIPE'd program


def test_tick_refuses_a_broken_template_before_sending(workdir: Path) -> None:
    (workdir / "templates" / "social" / "bluesky.txt.j2").write_text("{{ title }\n")
    result = dispatcher("tick", "--at", "2019-04-02T08:10+02:00", cwd=workdir)
    assert result.returncode == 1
    assert result.stderr == "error: templates/social/bluesky.txt.j2:1: unexpected '}'\n"
    assert result.stdout == ""
    assert not (workdir / "var").exists()  # no ledger: nothing was claimed or sent


def test_run_refuses_a_missing_template_instead_of_serving(workdir: Path) -> None:
    (workdir / "templates" / "email" / "newsletter.html.j2").unlink()
    (workdir / "templates" / "social" / "mastodon.txt.j2").write_text("{% if %}\n")
    result = dispatcher("run", "--at", "2019-04-02T08:10+02:00", cwd=workdir)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: templates/email/newsletter.html.j2: template not found",
        "templates/social/mastodon.txt.j2:1: Expected an expression, got 'end of statement block'",
    ]
