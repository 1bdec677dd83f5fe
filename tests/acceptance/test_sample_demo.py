"""`dispatcher demo` (what `scripts/demo` runs): the sample week reaches its German and its
English readers, each every day with exactly one email in their language, and Mastodon gets
one post in each language."""

from __future__ import annotations

import collections
import email
import email.policy
import json
import os
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).parents[2]
ENGLISH_READERS = {"emma.walsh@example.ie", "reader@example.net"}
SEND_DAYS = 8


def read(path: Path) -> EmailMessage:
    with path.open("rb") as file:
        message = email.message_from_binary_file(file, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_the_demo_sends_every_reader_the_week_in_their_language(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    result = subprocess.run(
        [sys.executable, "-m", "dispatcher", "demo", "--dir", str(tmp_path / "demo")],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    outbox = tmp_path / "demo" / "outbox"

    received: dict[str, list[EmailMessage]] = collections.defaultdict(list)
    for path in sorted(outbox.glob("*.eml")):
        message = read(path)
        received[message["To"].addresses[0].addr_spec].append(message)
    assert len(received) == 5
    for address, messages in received.items():
        english = address in ENGLISH_READERS
        assert len(messages) == SEND_DAYS, address  # one a day, not one per language
        assert {str(m["Content-Language"]) for m in messages} == {"en" if english else "de"}
        series = "Spotlight: " if english else "Vorhang auf: "
        assert all(str(m["Subject"]).startswith(series) for m in messages), address
        first = messages[0].get_body(("plain",))
        assert first is not None
        text = first.get_content()
        if english:
            assert "Tuesday, 2 April 2019" in text and "Spotlight: Nordwind Maritim" in text
            assert "Vorhang auf" not in text and "Dienstag" not in text
        else:
            assert "Dienstag, 2. April 2019" in text and "Vorhang auf: Nordwind Maritim" in text
            assert "Spotlight" not in text and "Tuesday" not in text
    emma = received["emma.walsh@example.ie"][0].get_body(("plain",))
    assert emma is not None and "Hello Emma Walsh," in emma.get_content()

    statuses = [json.loads(p.read_text()) for p in sorted((outbox / "mastodon").glob("*.json"))]
    assert len(statuses) == 2 * SEND_DAYS
    day_one = [s["json"] for s in statuses if "-20190402-" in s["headers"]["Idempotency-Key"]]
    by_language = {status["language"]: status["status"] for status in day_one}
    assert by_language.keys() == {"de", "en"}
    assert by_language["de"].startswith("Vorhang auf: Nordwind Maritim e. V.")
    assert by_language["en"].startswith("Spotlight: Nordwind Maritim e. V.")
    assert "#ClusterWeek" in by_language["en"] and "#Clusterwoche" in by_language["de"]
    # The other networks post in the default language only, once a day.
    assert len(list((outbox / "bluesky").glob("*.json"))) == SEND_DAYS
