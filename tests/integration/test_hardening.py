"""Hardening promises end to end (issue 8, item 4): secrets never leave the process, the
sign-up form changes nothing without the email round trip, and names cannot inject headers
into the mail a real SMTP server receives. Unit-level promises: tests/unit/test_hardening.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import requests

from dispatcher.ledger import subscribers as ledger
from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.delivery import email_time, settings_for
from tests.support.headers import HEADERS
from tests.support.ledger import add_subscribers, delivery_states, tick_at
from tests.support.smtpd import SmtpServer
from tests.support.webapp import START, WebApp, serve_webapp

ROOT = Path(__file__).parents[2]
SECRETS = {
    "DISPATCHER_SECRET_KEY": "SecretKeyValue-0123456789-abcdefghijklmnop",
    "smtp": "SmtpPassw0rdValue",
    "DISPATCHER_MASTODON_ACCESS_TOKEN": "MastodonTokenValue123",
    "DISPATCHER_BLUESKY_APP_PASSWORD": "bsky-app-pass-value",
    "DISPATCHER_LINKEDIN_ACCESS_TOKEN": "LinkedInTokenValue456",
    "webhook": "WebhookPathSecret789",
    "DISPATCHER_BOUNCE_WEBHOOK_TOKEN": "BounceTokenValue0123456789",
    "database": "DatabasePassw0rdValue",
}
CLOSED = "127.0.0.1:9"  # the discard port: nothing listens, connections are refused


def _run(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    environment.update(env, DISPATCHER_LOG_FORMAT="json")
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        cwd=workdir, env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def test_no_secret_in_output_logs_status_ledger_or_outbox(tmp_path: Path) -> None:
    """tick against servers that refuse, then status: every word printed or stored is checked."""
    campaign = campaign_copy(
        tmp_path, channels=("email", "mastodon", "bluesky", "linkedin", "webhook")
    )
    env = {
        "DISPATCHER_CAMPAIGN_FILE": str(campaign),
        "DISPATCHER_TEMPLATES_DIR": str(ROOT / "templates"),
        "DISPATCHER_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        "DISPATCHER_OUTBOX_DIR": str(tmp_path / "outbox"),
        "DISPATCHER_SECRET_KEY": SECRETS["DISPATCHER_SECRET_KEY"],
        "DISPATCHER_SMTP_URL": f"smtp://mailer:{SECRETS['smtp']}@{CLOSED}?timeout=2",
        "DISPATCHER_MASTODON_BASE_URL": f"http://{CLOSED}",
        "DISPATCHER_MASTODON_ACCESS_TOKEN": SECRETS["DISPATCHER_MASTODON_ACCESS_TOKEN"],
        "DISPATCHER_BLUESKY_PDS_URL": f"http://{CLOSED}",
        "DISPATCHER_BLUESKY_HANDLE": "clusterwoche.example.org",
        "DISPATCHER_BLUESKY_APP_PASSWORD": SECRETS["DISPATCHER_BLUESKY_APP_PASSWORD"],
        "DISPATCHER_LINKEDIN_ACCESS_TOKEN": SECRETS["DISPATCHER_LINKEDIN_ACCESS_TOKEN"],
        "DISPATCHER_LINKEDIN_AUTHOR_URN": "urn:li:organization:1",
        "DISPATCHER_LINKEDIN_API_URL": f"http://{CLOSED}",
        "DISPATCHER_WEBHOOK_URLS": f"http://{CLOSED}/hooks/{SECRETS['webhook']}",
        "DISPATCHER_BOUNCE_WEBHOOK_TOKEN": SECRETS["DISPATCHER_BOUNCE_WEBHOOK_TOKEN"],
    }
    added = _run(tmp_path, "subscribers", "add", "leser@example.org", **env)
    assert added.returncode == 0, added.stderr
    outputs = []
    for args in (
        ("tick", "--at", "2019-04-02T09:30:00+02:00"),
        ("status",),
        ("status", "--json"),
        ("plan",),
        ("validate",),
    ):
        result = _run(tmp_path, *args, **env)
        outputs.append(result)
        assert "Traceback" not in result.stderr, result.stderr
    tick = outputs[0]
    assert tick.returncode == 3, tick.stdout + tick.stderr  # the SMTP server is down
    assert "cannot connect" in tick.stdout + tick.stderr
    for line in tick.stdout.splitlines():
        if line.startswith("{"):
            json.loads(line)  # JSON log lines
    everything = "\n".join(r.stdout + r.stderr for r in outputs)
    assert _leaks(everything) == [], everything

    # Production refuses bad settings naming the variable, never its value.
    bad = _run(tmp_path, "validate", **{**env, "DISPATCHER_ENV": "production",
               "DISPATCHER_SECRET_KEY": "short-" + SECRETS["database"]})  # fmt: skip
    assert bad.returncode == 1 and "DISPATCHER_SECRET_KEY" in bad.stdout + bad.stderr
    assert _leaks(bad.stdout + bad.stderr) == []

    # A database URL with a password that cannot be reached: the error names no password.
    pg = f"postgresql+psycopg://dispatcher:{SECRETS['database']}@{CLOSED}/dispatcher"
    down = _run(tmp_path, "status", **{**env, "DISPATCHER_DATABASE_URL": pg})
    assert down.returncode != 0 and "Traceback" not in down.stderr, down.stderr
    assert _leaks(down.stdout + down.stderr) == [], down.stdout + down.stderr

    # The ledger's stored errors and the files on disk.
    stored = (tmp_path / "ledger.sqlite3").read_bytes().decode("latin-1")
    assert _leaks(stored) == []

    # Without an endpoint (development) each social channel writes its exact request to the
    # outbox; tokens set without their base URL or handle must not end up in those files.
    outbox_env = {k: v for k, v in env.items() if not k.endswith(("_BASE_URL", "_HANDLE", "_URN"))}
    outbox_env.pop("DISPATCHER_WEBHOOK_URLS")
    outbox_env.pop("DISPATCHER_SMTP_URL")
    outbox_env["DISPATCHER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'outbox.sqlite3'}"
    _run(tmp_path, "subscribers", "add", "leser@example.org", **outbox_env)
    result = _run(tmp_path, "tick", "--at", "2019-04-02T09:30:00+02:00", **outbox_env)
    assert result.returncode == 0, result.stdout + result.stderr
    files = [p for p in (tmp_path / "outbox").rglob("*") if p.is_file()]
    assert {p.parent.name for p in files} >= {"mastodon", "bluesky", "linkedin", "webhook"}
    for path in files:
        assert _leaks(path.read_bytes().decode("utf-8", "replace")) == [], path
    assert _leaks(result.stdout + result.stderr) == []


def test_the_signup_form_changes_nothing_without_the_email_round_trip(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """A form POST from a foreign page is refused (Origin check); one that passes it can
    only *ask* for a confirmation mail.

    The whole round trip is test_double_opt_in_round_trip in tests/integration/web/.
    """
    add_subscribers(database, 1, named=True)
    for app in serve_webapp(database, smtp_server, tmp_path):
        with database.engine.connect() as conn:
            before = ledger.get(conn, "leser00000@example.org")
        forged = requests.post(
            f"{app.url}/subscribe",
            data={"email": "leser00000@example.org", "name": "Angreifer", "consent": "ja"},
            headers={"Origin": "https://evil.example", "Referer": "https://evil.example/"},
            timeout=10,
        )
        assert forged.status_code == 403
        anonymous = requests.post(  # no Origin, no Referer: passes, changes nobody
            f"{app.url}/subscribe",
            data={"email": "leser00000@example.org", "name": "Angreifer", "consent": "ja"},
            timeout=10,
        )
        new = requests.post(
            f"{app.url}/subscribe",
            data={"email": "opfer@example.org", "name": "Opfer", "consent": "ja"},
            timeout=10,
        )
        assert anonymous.status_code == new.status_code == 200
        assert "set-cookie" not in new.headers
        assert app.state.background.join()  # the ledger work and mail follow the answer
        with database.engine.connect() as conn:
            assert ledger.get(conn, "leser00000@example.org") == before  # name, consent, all
            assert ledger.get(conn, "opfer@example.org").state == "pending"  # type: ignore[union-attr]
        assert [r.rcpt_tos for r in smtp_server.received] == [["opfer@example.org"]]
    # A pending address gets no newsletter: only the active one is sent to.
    settings = settings_for(database, smtp_server)
    tick_at(settings, database, email_time(dt.date(2019, 4, 2)))
    newsletter = [r for r in smtp_server.received if "Bestätigen" not in str(r.message["Subject"])]
    assert [r.rcpt_tos for r in newsletter if "bestätigen" not in str(r.message["Subject"])] == [
        ["leser00000@example.org"]
    ]
    assert delivery_states(database) == {"sent": 1}


def test_a_name_built_to_inject_headers_reaches_the_server_as_one_header(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """Sign-up name → confirmation mail; ledger name → newsletter: both as received over SMTP."""
    evil = "=?utf-8?q?Erika=0D=0ABcc:_x@evil.example?="
    for app in serve_webapp(database, smtp_server, tmp_path):
        response = requests.post(
            f"{app.url}/subscribe",
            data={"email": "erika@example.org", "name": evil, "consent": "ja"},
            timeout=10,
        )
        assert response.status_code == 200
        assert app.state.background.join()  # the confirmation mail follows the answer
        _confirm(app, smtp_server)
    with database.engine.begin() as conn:
        ledger.add(
            conn, "erika2@example.org", "Erika\u2028Bcc: y@evil.example", source="t", now=START
        )
    tick_at(settings_for(database, smtp_server), database, email_time(dt.date(2019, 4, 2)))
    received = smtp_server.received
    assert len(received) == 3  # confirmation + two newsletters
    for mail in received:
        assert len(mail.rcpt_tos) == 1 and "evil" not in mail.rcpt_tos[0]
        head = mail.data.split(b"\r\n\r\n", 1)[0]
        assert not re.search(rb"(?im)^bcc:", head), head
        assert mail.message["Bcc"] is None and not mail.message.defects
        names = [n for n in mail.message if n not in ("X-Peer", "X-MailFrom", "X-RcptTo")]
        assert set(names) <= set(HEADERS) and len(names) == len(set(names)), names


def _confirm(app: WebApp, smtp: SmtpServer) -> None:
    [mail] = [r.message for r in smtp.received]
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [link] = re.findall(r"https?://\S+/confirm/\S+", text)
    path = link.split(app.settings.public_url, 1)[1]
    assert requests.get(app.url + path, timeout=10).status_code == 200
