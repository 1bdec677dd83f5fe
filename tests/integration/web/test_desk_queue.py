"""Changing the queue from the desk over real HTTP, a real ledger and the sample file.

Each action changes exactly the lines a person would have changed (the file is diffed before
and after); the change is in the history with its diff and can be undone; a stale form is
refused without overwriting; an invalid change is refused with `file:line:col` and writes
nothing; the ledger's past cannot be changed; a change close to a send asks first; a file the
service cannot write shows every action disabled; every POST needs the CSRF token.
"""

from __future__ import annotations

import datetime as dt
import difflib
import html
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dispatcher.campaign.loading import load_campaign
from dispatcher.ledger import changes
from dispatcher.settings import Settings
from tests.support.database import Database
from tests.support.delivery import email_time, settings_for
from tests.support.desk_items import ITEM, Desk, all_channels, serve
from tests.support.ledger import add_subscribers, tick_at
from tests.support.smtpd import SmtpServer

FIRST = "nordwind-maritim"  #: Tuesday 2 April in the sample
SECOND = "saxony-mikroelektronik"  #: Wednesday 3 April


@pytest.fixture
def desk(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[Desk]:
    """Every channel of the sample, on Monday 1 April 2019, 12:00 Berlin (nothing sent yet)."""
    yield from serve(all_channels(database, smtp_server, tmp_path), database)


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"the page has no hidden field {name!r}"
    return html.unescape(match.group(1))


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed, added) lines of a line diff."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [d[2:] for d in diff if d.startswith("- ")], [d[2:] for d in diff if d.startswith("+ ")]


def post_queue(desk: Desk, item_id: str, action: str, **extra: str) -> requests.Response:
    page = requests.get(f"{desk.url}/desk/items/{item_id}", headers=desk.headers, timeout=10)
    form = {"csrf_token": hidden(page.text, "csrf_token"), "version": hidden(page.text, "version")}
    return requests.post(f"{desk.url}/desk/items/{item_id}/queue", headers=desk.headers,
                         data={**form, "action": action, **extra}, timeout=30,
                         allow_redirects=False)  # fmt: skip


def file_of(desk: Desk) -> Path:
    return desk.state.settings.campaign_file


def test_hold_changes_one_line_and_is_in_the_history(desk: Desk) -> None:
    before = file_of(desk).read_text("utf-8")
    answer = post_queue(desk, FIRST, "hold")
    assert answer.status_code == 303, answer.text
    after = file_of(desk).read_text("utf-8")
    removed, added = changed_lines(before, after)
    assert (removed, added) == (["    status: ready"], ["    status: hold"])
    assert after.count("\n") == before.count("\n") and "# Die Redaktionsqueue" in after
    held = load_campaign(file_of(desk)).item(FIRST)
    assert held.status.value == "hold"

    change = requests.get(desk.url + answer.headers["location"], headers=desk.headers, timeout=10)
    text = html.unescape(change.text)
    assert "Gespeichert" in text and "-    status: ready" in text and "+    status: hold" in text
    with desk.database.engine.connect() as connection:
        [row] = changes.recent_changes(connection)
    assert (row.action, row.item_id, row.editor_email) == (
        "hold",
        FIRST,
        "rita.redaktion@example.org",
    )
    assert row.text_before == before
    # The process loaded the change at once (not at its next 2-s check).
    assert desk.state.campaign().item(FIRST).status.value == "hold"


def test_pin_and_unpin_add_and_remove_the_date_line(desk: Desk) -> None:
    original = file_of(desk).read_text("utf-8")
    assert post_queue(desk, SECOND, "pin", day="2019-04-09").status_code == 303
    pinned = file_of(desk).read_text("utf-8")
    removed, added = changed_lines(original, pinned)
    assert removed == [] and added == ["    date: 2019-04-09"]
    assert load_campaign(file_of(desk)).item(SECOND).date == dt.date(2019, 4, 9)

    assert post_queue(desk, SECOND, "unpin").status_code == 303
    assert file_of(desk).read_text("utf-8") == original


def test_move_down_swaps_the_item_with_the_next_unpinned_one(desk: Desk) -> None:
    before = file_of(desk).read_text("utf-8")
    order = [i.id for i in load_campaign(file_of(desk)).items]
    assert post_queue(desk, SECOND, "move-down").status_code == 303
    moved = [i.id for i in load_campaign(file_of(desk)).items]
    index = order.index(SECOND)
    assert moved[index] == order[index + 1] and moved[index + 1] == SECOND
    after = file_of(desk).read_text("utf-8")
    assert sorted(before.splitlines()) == sorted(after.splitlines())  # lines moved, none changed
    assert post_queue(desk, SECOND, "move-up").status_code == 303
    assert file_of(desk).read_text("utf-8") == before


def test_edit_preview_writes_nothing_and_save_changes_only_the_title(desk: Desk) -> None:
    before = file_of(desk).read_text("utf-8")
    url = f"{desk.url}{ITEM}/bearbeiten"
    page = requests.get(url, headers=desk.headers, timeout=10)
    assert page.status_code == 200
    form = {
        "csrf_token": hidden(page.text, "csrf_token"),
        "version": hidden(page.text, "version"),
        "title": "Vorhang auf: Nordwind Maritim – mit Werftbesuch",
        "teaser": load_campaign(file_of(desk)).item(FIRST).teaser,
        "body": load_campaign(file_of(desk)).item(FIRST).body or "",
        "tags": "Clusterwoche, Maritime Wirtschaft, Innovation",
        "image": "https://www.clusterplattform.de/bilder/reportage/nordwind-maritim.jpg",
        "image_alt": "Ein Containerschiff im Kieler Hafen bei Sonnenaufgang",
        "channels": ["email", "mastodon", "bluesky", "linkedin", "webhook"],
    }
    preview = requests.post(url, headers=desk.headers, data={**form, "action": "preview"},
                            timeout=30)  # fmt: skip
    assert preview.status_code == 200
    shown = html.unescape(preview.text)
    assert "Vorschau (noch nicht gespeichert)" in shown
    assert "Vorhang auf: Nordwind Maritim – mit Werftbesuch – 2. Clusterwoche" in shown  # subject
    assert "<strong>Kiel, im März.</strong>" in shown  # the Markdown body, rendered
    assert file_of(desk).read_text("utf-8") == before

    saved = requests.post(url, headers=desk.headers, data={**form, "action": "save"},
                          timeout=30, allow_redirects=False)  # fmt: skip
    assert saved.status_code == 303, saved.text
    removed, added = changed_lines(before, file_of(desk).read_text("utf-8"))
    assert removed == ['    title: "Vorhang auf: Nordwind Maritim e. V."']
    assert added == ['    title: "Vorhang auf: Nordwind Maritim – mit Werftbesuch"']


def test_a_stale_form_is_refused_and_two_racing_changes_land_once(desk: Desk) -> None:
    page = requests.get(desk.url + ITEM, headers=desk.headers, timeout=10)
    form = {"csrf_token": hidden(page.text, "csrf_token"), "version": hidden(page.text, "version")}
    answers: list[int] = []

    def send(action: str) -> None:
        answer = requests.post(desk.url + ITEM + "/queue", headers=desk.headers, timeout=30,
                               data={**form, "action": action}, allow_redirects=False)  # fmt: skip
        answers.append(answer.status_code)

    threads = [threading.Thread(target=send, args=(a,)) for a in ("hold", "move-down")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [303, 409]
    with desk.database.engine.connect() as connection:
        assert len(changes.recent_changes(connection)) == 1

    before = file_of(desk).read_text("utf-8")
    stale = requests.post(desk.url + ITEM + "/queue", headers=desk.headers, timeout=30,
                          data={**form, "action": "hold"})  # fmt: skip
    assert stale.status_code == 409
    assert "Datei inzwischen geändert" in html.unescape(stale.text)
    assert file_of(desk).read_text("utf-8") == before


def test_an_invalid_change_is_refused_with_its_position_and_writes_nothing(desk: Desk) -> None:
    before = file_of(desk).read_text("utf-8")
    answer = post_queue(desk, SECOND, "pin", day="2019-04-06")  # a Saturday: no send day
    assert answer.status_code == 422
    text = html.unescape(answer.text)
    assert re.search(r"campaign\.yaml:\d+:\d+: items\[1\]\.date", text), text[:3000]
    assert file_of(desk).read_text("utf-8") == before


def test_restore_gives_the_item_back_as_a_new_change(desk: Desk) -> None:
    original = file_of(desk).read_text("utf-8")
    first = post_queue(desk, SECOND, "pin", day="2019-04-09")
    assert post_queue(desk, SECOND, "hold").status_code == 303
    change = requests.get(desk.url + first.headers["location"], headers=desk.headers, timeout=10)
    form = {
        "csrf_token": hidden(change.text, "csrf_token"),
        "version": hidden(change.text, "version"),
    }
    change_id = first.headers["location"].split("/")[-1].split("?")[0]
    undo = requests.post(f"{desk.url}/desk/history/{change_id}/restore", headers=desk.headers,
                         data=form, timeout=30, allow_redirects=False)  # fmt: skip
    assert undo.status_code == 303, undo.text
    assert file_of(desk).read_text("utf-8") == original  # before the pin: unpinned and ready
    history = html.unescape(requests.get(desk.url + "/desk/history", headers=desk.headers,
                                         timeout=10).text)  # fmt: skip
    assert history.count("Änderung ") >= 3 and "wiederhergestellt" in history


def test_every_post_needs_the_csrf_token(desk: Desk) -> None:
    before = file_of(desk).read_text("utf-8")
    page = requests.get(desk.url + ITEM, headers=desk.headers, timeout=10)
    version = hidden(page.text, "version")
    for path, data in (
        (ITEM + "/queue", {"action": "hold"}),
        (ITEM + "/bearbeiten", {"action": "save", "title": "X", "teaser": "Y"}),
        ("/desk/history/1/restore", {}),
    ):
        answer = requests.post(desk.url + path, headers=desk.headers, timeout=10,
                               data={**data, "version": version, "csrf_token": "falsch"})  # fmt: skip
        assert answer.status_code == 403, path
    assert file_of(desk).read_text("utf-8") == before


def _sent_first_day(database: Database, smtp_server: SmtpServer) -> Settings:
    settings = settings_for(database, smtp_server, clock_jump_hours=72)
    add_subscribers(database, 2)
    tick_at(settings, database, email_time(dt.date(2019, 4, 2)))
    return settings


def test_the_ledgers_past_cannot_be_changed_but_a_hold_stops_what_has_not_begun(
    database: Database, smtp_server: SmtpServer
) -> None:
    settings = _sent_first_day(database, smtp_server)
    for desk in serve(
        settings, database, now=email_time(dt.date(2019, 4, 2)) + dt.timedelta(hours=2)
    ):
        before = settings.campaign_file.read_text("utf-8")
        page = html.unescape(requests.get(desk.url + ITEM, headers=desk.headers, timeout=10).text)
        assert "schon versendet worden" in page
        refused = post_queue(desk, FIRST, "pin", day="2019-04-09")
        assert refused.status_code == 409
        assert "schon versendet worden" in html.unescape(refused.text)
        taken = post_queue(desk, SECOND, "pin", day="2019-04-02")  # a day the ledger has
        assert taken.status_code == 409 and "gehört" in html.unescape(taken.text)
        assert settings.campaign_file.read_text("utf-8") == before
        assert post_queue(desk, FIRST, "hold").status_code == 303


def test_a_change_close_to_a_send_asks_for_confirmation(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = all_channels(database, smtp_server, tmp_path)
    soon = email_time(dt.date(2019, 4, 2)) - dt.timedelta(minutes=5)  # 07:55 Berlin
    for desk in serve(settings, database, now=soon):
        before = settings.campaign_file.read_text("utf-8")
        ask = post_queue(desk, FIRST, "hold")
        assert ask.status_code == 200
        text = html.unescape(ask.text)
        assert "Bitte bestätigen" in text and "E-Mail am Dienstag, 2. April 2019, 08:00 Uhr" in text
        assert settings.campaign_file.read_text("utf-8") == before
        form = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', ask.text))
        assert form["confirm"] == "1" and form["action"] == "hold"
        done = requests.post(desk.url + ITEM + "/queue", headers=desk.headers, data=form,
                             timeout=30, allow_redirects=False)  # fmt: skip
        assert done.status_code == 303
        assert "status: hold" in settings.campaign_file.read_text("utf-8")
        # A change of days further ahead needs no confirmation (Tuesday now has SECOND).
        assert post_queue(desk, "hessen-logistik", "hold").status_code == 303


def test_a_file_the_service_cannot_write_disables_every_action(desk: Desk) -> None:
    path = file_of(desk)
    before = path.read_text("utf-8")
    # Root ignores file modes; an immutable file cannot be written or replaced even by root.
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this file system")
    try:
        page = html.unescape(requests.get(desk.url + ITEM, headers=desk.headers, timeout=10).text)
        assert "Nur lesen:" in page and "beschreibbares Volume" in page
        buttons = re.findall(r"<button[^>]*>", page.split('id="queue"')[1].split("</section>")[0])
        assert buttons and all("disabled" in b for b in buttons)
        refused = post_queue(desk, FIRST, "hold")
        assert refused.status_code in (409, 422) and path.read_text("utf-8") == before
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
