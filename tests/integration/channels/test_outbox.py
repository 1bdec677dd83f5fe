"""The file outbox that stands in for SMTP when no relay is configured."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dispatcher.channels.base import ChannelError, Envelope
from dispatcher.channels.outbox import Outbox, file_name
from dispatcher.channels.smtp import SmtpChannel
from dispatcher.delivery.wiring import email_channel
from dispatcher.settings import Settings


def envelope(body: str = "Hallo") -> Envelope:
    data = f"From: a@example.org\r\nTo: b@example.org\r\nSubject: Test\r\n\r\n{body}\r\n".encode()
    return Envelope(mail_from="a@example.org", rcpt_to="b@example.org", data=data)


def test_one_eml_per_key(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "var" / "outbox")  # missing directories are created

    first = outbox.send(envelope("eins"), key="2024-04-02:email:17")
    second = outbox.send(envelope("zwei"), key="2024-04-02:email:18")

    files = sorted((tmp_path / "var" / "outbox").iterdir())
    assert [str(f) for f in files] == sorted([first.provider_id, second.provider_id])
    assert Path(first.provider_id).read_bytes() == envelope("eins").data
    assert first.details == {"mail_from": "a@example.org", "rcpt_to": "b@example.org"}


def test_same_key_twice_is_one_file(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    first = outbox.send(envelope("alt"), key="k")
    second = outbox.send(envelope("neu"), key="k")

    assert first.provider_id == second.provider_id
    assert [p.name for p in tmp_path.iterdir()] == ["k.eml"]  # no temp files left behind
    assert Path(second.provider_id).read_bytes() == envelope("neu").data


def test_concurrent_writes_of_one_key_leave_one_complete_file(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    bodies = [("x" * 200_000) + str(n) for n in range(8)]
    threads = [
        threading.Thread(target=outbox.send, args=(envelope(b),), kwargs={"key": "same"})
        for b in bodies
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [p.name for p in tmp_path.iterdir()] == ["same.eml"]
    assert (tmp_path / "same.eml").read_bytes() in {envelope(b).data for b in bodies}


@pytest.mark.parametrize("key", ["../../etc/passwd", "a/b", "a_b", "ä", ".hidden", "x" * 500])
def test_file_names_are_safe_and_distinct(key: str) -> None:
    name = file_name(key)
    assert "/" not in name and not name.startswith(".") and name.endswith(".eml")
    assert len(name) < 200
    assert name == file_name(key)


def test_sanitised_keys_do_not_collide() -> None:
    assert len({file_name(k) for k in ["a/b", "a_b", "a:b", "a?b"]}) == 4


def test_unwritable_directory_is_a_temporary_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ChannelError) as caught:
        Outbox(blocker / "outbox").send(envelope(), key="k")
    assert not caught.value.permanent


def test_factory_chooses_outbox_or_smtp(tmp_path: Path) -> None:
    outbox = email_channel(Settings.model_validate({"outbox_dir": tmp_path, "smtp_url": None}))
    assert isinstance(outbox, Outbox) and outbox.idempotent
    url = "smtp://u:p@relay.example.org:587?starttls=true"
    smtp = email_channel(Settings.model_validate({"smtp_url": url}))
    assert isinstance(smtp, SmtpChannel) and not smtp.idempotent
    assert smtp.target.host == "relay.example.org" and smtp.target.security == "starttls"
