"""The desk's calendar as a view-model: campaign + plan + ledger facts + now -> what each
cell of the table shows. No I/O: the plan comes from `planning.plan` with a hand-made
ledger history (tests/integration/web/test_desk_calendar.py reads a real ledger)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from dispatcher.campaign.loading import load_campaign
from dispatcher.campaign.model import Campaign, Channel, ItemStatus
from dispatcher.campaign.planning import PastDispatch, PlanState, plan
from dispatcher.web.desk.calendar import (
    CalendarView,
    Day,
    LedgerFacts,
    Progress,
    calendar_view,
    item_href,
)
from tests.support.calendar_campaigns import (
    HOLIDAY_SEND_DAYS,
    NO_DAY_LEFT,
    REFORMATIONSTAG,
    SKIPPED,
    holiday_week_copy,
)
from tests.support.campaigns import campaign_copy

BERLIN = dt.timezone(dt.timedelta(hours=2))  # CEST, April 2019


def day_of(view: CalendarView, day: dt.date) -> Day:
    return next(d for week in view.weeks for d in week.days if d.date == day)


def sample(tmp_path: Path, channels: tuple[str, ...] = ("email", "mastodon")) -> Campaign:
    return load_campaign(campaign_copy(tmp_path, channels=channels))


def test_the_sample_week_as_weeks_by_send_weekdays(tmp_path: Path) -> None:
    campaign = sample(tmp_path)
    now = dt.datetime(2019, 4, 1, 12, 0, tzinfo=BERLIN)
    view = calendar_view(campaign, plan(campaign, now=now), LedgerFacts(), now)

    assert view.columns == ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag")
    assert [w.label for w in view.weeks] == ["KW 14", "KW 15"]
    assert view.caption == (
        "Sendeplan 2. Clusterwoche Deutschland, 2. April 2019 bis 11. April 2019"
    )
    monday = day_of(view, dt.date(2019, 4, 1))
    assert monday.kind == "outside" and monday.is_today and monday.item is None
    tuesday = day_of(view, dt.date(2019, 4, 2))
    assert tuesday.label == "Dienstag, 2. April 2019"
    assert tuesday.item is not None
    assert (tuesday.item.title, tuesday.item.initiative, tuesday.item.region) == (
        "Vorhang auf: Nordwind Maritim e. V.",
        "Nordwind Maritim e. V.",
        "Schleswig-Holstein",
    )
    assert tuesday.item.href == "/desk/items/nordwind-maritim"
    assert [(s.label, s.time, s.state_label) for s in tuesday.sends] == [
        ("E-Mail", "08:00", "geplant"),
        ("Mastodon", "08:05", "geplant"),
    ]
    # the next send: the first channel at the first send time, nothing else
    assert tuesday.is_next and [s.is_next for s in tuesday.sends] == [True, False]
    assert not day_of(view, dt.date(2019, 4, 3)).is_next
    assert view.next_send is not None
    assert view.next_send.label == "Dienstag, 2. April 2019, 08:00 Uhr"
    assert view.next_send.channels == ("E-Mail",)
    assert view.unscheduled == () and day_of(view, dt.date(2019, 4, 12)).kind == "outside"


def test_sent_running_and_missed_days_from_the_ledger(tmp_path: Path) -> None:
    campaign = sample(tmp_path)
    # the file now says something else about the item of the day that went out
    sent_item = campaign.item("nordwind-maritim")
    edited = dataclasses.replace(sent_item, title="Vorhang auf: Nordwind (neu)")
    campaign = dataclasses.replace(
        campaign, items=tuple(edited if i.id == sent_item.id else i for i in campaign.items)
    )
    history = [
        PastDispatch(dt.date(2019, 4, 2), Channel.EMAIL, "nordwind-maritim", "done"),
        PastDispatch(dt.date(2019, 4, 2), Channel.MASTODON, "nordwind-maritim", "partial"),
        PastDispatch(dt.date(2019, 4, 3), Channel.EMAIL, "saxony-mikroelektronik", "running"),
        PastDispatch(dt.date(2019, 4, 3), Channel.MASTODON, "saxony-mikroelektronik", "failed"),
        PastDispatch(dt.date(2019, 4, 4), Channel.EMAIL, "bayern-medizintechnik", "missed"),
        PastDispatch(dt.date(2019, 4, 4), Channel.MASTODON, "bayern-medizintechnik", "missed"),
    ]
    facts = LedgerFacts(
        snapshots={
            dt.date(2019, 4, 2): sent_item,
            dt.date(2019, 4, 3): campaign.item("saxony-mikroelektronik"),
        },
        progress={(dt.date(2019, 4, 3), Channel.EMAIL): Progress(1200, 5000, complete=True)},
    )
    now = dt.datetime(2019, 4, 5, 8, 1, tzinfo=BERLIN)
    view = calendar_view(campaign, plan(campaign, now=now, history=history), facts, now)

    sent = day_of(view, dt.date(2019, 4, 2))
    assert sent.item is not None and sent.item.as_sent
    assert sent.item.title == "Vorhang auf: Nordwind Maritim e. V."  # the snapshot, not the file
    assert sent.item.href == "/desk/items/nordwind-maritim?tag=2019-04-02"
    assert [(s.state, s.state_label) for s in sent.sends] == [
        (PlanState.SENT, "gesendet"),
        (PlanState.PARTIAL, "teilweise gesendet"),
    ]
    running = day_of(view, dt.date(2019, 4, 3))
    assert [s.state_label for s in running.sends] == ["läuft", "fehlgeschlagen"]
    progress = running.sends[0].progress
    assert progress is not None and (progress.done, progress.total, progress.percent) == (
        1200,
        5000,
        24,
    )
    assert running.sends[1].progress is None
    missed = day_of(view, dt.date(2019, 4, 4))
    assert [s.state_label for s in missed.sends] == ["verpasst", "verpasst"]
    assert missed.item is not None and not missed.item.as_sent
    today = day_of(view, dt.date(2019, 4, 5))
    assert today.is_today and [s.state_label for s in today.sends] == ["fällig", "geplant"]
    # a due send is the next one: it goes out at the next tick
    assert today.is_next and today.sends[0].is_next
    assert sum(d.is_today for w in view.weeks for d in w.days) == 1


def test_a_holiday_a_skipped_date_and_items_without_a_day(tmp_path: Path) -> None:
    campaign = load_campaign(holiday_week_copy(tmp_path))
    now = dt.datetime(2019, 10, 30, 14, 0, tzinfo=dt.UTC)  # past the catch-up of 08:00 CET
    view = calendar_view(campaign, plan(campaign, now=now), LedgerFacts(), now)

    holiday = day_of(view, REFORMATIONSTAG)
    assert (holiday.kind, holiday.note, holiday.item, holiday.sends) == (
        "holiday",
        "Reformationstag (DE-SN)",
        None,
        (),
    )
    skipped = day_of(view, SKIPPED)
    assert skipped.kind == "skipped" and skipped.note is not None and "skip" in skipped.note
    assert [d.date for w in view.weeks for d in w.days if d.kind == "send"] == HOLIDAY_SEND_DAYS
    assert tuple(item.id for item in view.unscheduled) == NO_DAY_LEFT
    assert view.unscheduled[0].href == "/desk/items/berlin-digital"
    # after today's send time the next send is Friday: the holiday is jumped over
    assert view.next_send is not None
    assert view.next_send.label == "Freitag, 1. November 2019, 08:00 Uhr"


def test_empty_days_drafts_and_a_channel_dropped_from_send(tmp_path: Path) -> None:
    campaign = sample(tmp_path)
    held = {"bw-automotive", "berlin-digital"}
    campaign = dataclasses.replace(
        campaign,
        items=tuple(
            dataclasses.replace(i, status=ItemStatus.HOLD) if i.id in held else i
            for i in campaign.items
        ),
    )
    history = [PastDispatch(dt.date(2019, 4, 2), Channel.LINKEDIN, "nordwind-maritim", "done")]
    now = dt.datetime(2019, 4, 3, 12, 0, tzinfo=BERLIN)
    view = calendar_view(campaign, plan(campaign, now=now, history=history), LedgerFacts(), now)

    empty = [d for w in view.weeks for d in w.days if d.kind == "empty"]
    assert [d.date for d in empty] == [dt.date(2019, 4, 9), dt.date(2019, 4, 10)]
    assert all(d.item is None for d in empty)
    assert {(i.id, i.status) for i in view.not_ready} == {
        ("bw-automotive", "zurückgehalten"),
        ("berlin-digital", "zurückgehalten"),
    }
    sent = day_of(view, dt.date(2019, 4, 2))
    # LinkedIn is no longer under send:, but the ledger shows it went out
    assert [(s.label, s.time, s.state_label) for s in sent.sends][-1] == (
        "LinkedIn",
        "–",
        "gesendet",
    )


def test_item_links_quote_the_id() -> None:
    assert item_href("a b") == "/desk/items/a%20b"
    assert item_href("x", dt.date(2019, 4, 2)) == "/desk/items/x?tag=2019-04-02"


def test_the_same_calendar_in_english(tmp_path: Path) -> None:
    campaign = load_campaign(holiday_week_copy(tmp_path))
    now = dt.datetime(2019, 10, 30, 14, 0, tzinfo=dt.UTC)
    view = calendar_view(campaign, plan(campaign, now=now), LedgerFacts(), now, lang="en")

    assert day_of(view, REFORMATIONSTAG).note == "Reformation Day (DE-SN)"
    assert day_of(view, SKIPPED).note == "left out (skip in the campaign file)"
    assert view.next_send is not None
    assert view.next_send.label == "Friday, 1 November 2019, 08:00"
    assert view.columns[:2] == ("Monday", "Tuesday") and view.weeks[0].label.startswith("Week ")
    assert view.today_label == "Wednesday, 30 October 2019"
    assert view.caption.startswith("Send plan of the ") and " to " in view.caption
