"""The iCalendar feed of the plan, read back with icalendar the way a calendar program reads it.

The sample week (email and Mastodon) on Thursday 4 April 2019, 07:00 in Berlin: Tuesday went
out on both channels, Wednesday was missed (no tick within the catch-up), Thursday onwards is
planned. The feed is built from `planning.plan` with that history, as `ledger_plan` gives it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest
import vobject  # type: ignore[import-untyped]

from dispatcher.campaign.loading import load_campaign
from dispatcher.campaign.model import Campaign, Channel
from dispatcher.campaign.planning import PastDispatch, plan
from dispatcher.web.desk import ical
from tests.support.campaigns import campaign_copy

BERLIN = ZoneInfo("Europe/Berlin")
PUBLIC_URL = "https://news.example.org"
TUESDAY, WEDNESDAY, THURSDAY = dt.date(2019, 4, 2), dt.date(2019, 4, 3), dt.date(2019, 4, 4)
THURSDAY_MORNING = dt.datetime(2019, 4, 4, 7, 0, tzinfo=BERLIN)
SENT_TITLE = "Vorhang auf: Nordwind Maritim (wie gesendet)"


@pytest.fixture
def campaign(tmp_path: Path) -> Campaign:
    return load_campaign(campaign_copy(tmp_path, channels=("email", "mastodon")))


def history_of(campaign: Campaign) -> list[PastDispatch]:
    return [PastDispatch(TUESDAY, c, "nordwind-maritim", "done") for c in campaign.channels]


def recorded_of(campaign: Campaign) -> dict[tuple[dt.date, Channel], ical.Recorded]:
    """Tuesday's snapshot as the ledger stored it: the title differs from today's file."""
    sent = dataclasses.replace(campaign.item("nordwind-maritim"), title=SENT_TITLE)
    finished = dt.datetime(2019, 4, 2, 6, 3, tzinfo=dt.UTC)
    return {
        (TUESDAY, channel): ical.Recorded(
            sent, dt.datetime(2019, 4, 2, 6, 0, tzinfo=dt.UTC), finished
        )
        for channel in campaign.channels
    }


def feed(
    campaign: Campaign, now: dt.datetime, *, sent: bool = True
) -> tuple[list[ical.FeedEvent], icalendar.Calendar]:
    history = history_of(campaign) if sent else []
    recorded = recorded_of(campaign) if sent else {}
    events = ical.feed_events(
        campaign, plan(campaign, now=now, history=history), recorded, public_url=PUBLIC_URL
    )
    body = ical.render_calendar(campaign, events, public_url=PUBLIC_URL, now=now)
    parsed = icalendar.Calendar.from_ical(body)
    assert isinstance(parsed, icalendar.Calendar)
    return events, parsed


def by_uid(calendar: icalendar.Calendar) -> dict[str, icalendar.Event]:
    return {str(event["UID"]): event for event in calendar.events}


def uid(day: dt.date, channel: str) -> str:
    return f"clusterwoche-2019-{day:%Y%m%d}-{channel}@news.example.org"


def test_one_event_per_send_with_channel_item_and_state(campaign: Campaign) -> None:
    _, calendar = feed(campaign, THURSDAY_MORNING)
    events = by_uid(calendar)
    # Eight send days (2.–11. April, weekdays) × two channels; no event for anything else.
    assert len(calendar.events) == 16 == len(events)

    tuesday = events[uid(TUESDAY, "email")]
    assert tuesday["SUMMARY"] == f"E-Mail · {SENT_TITLE} · gesendet"  # the snapshot, not the file
    assert events[uid(TUESDAY, "mastodon")]["SUMMARY"] == f"Mastodon · {SENT_TITLE} · gesendet"
    wednesday = events[uid(WEDNESDAY, "email")]
    assert wednesday["SUMMARY"] == (
        "E-Mail · Vorhang auf: Mikroelektronik-Netzwerk Elbtal · verpasst"
    )
    thursday = events[uid(THURSDAY, "email")]
    assert thursday["SUMMARY"] == "E-Mail · Vorhang auf: Medizintechnik-Allianz Franken · geplant"

    item = campaign.item("saxony-mikroelektronik")
    description = str(wednesday["DESCRIPTION"])
    assert description.startswith(item.teaser)
    assert f"{PUBLIC_URL}/desk/items/saxony-mikroelektronik" in description
    assert str(wednesday["URL"]) == f"{PUBLIC_URL}/desk/items/saxony-mikroelektronik"

    # Local send times in the campaign's zone, a short duration, nobody marked busy.
    assert tuesday.start == dt.datetime(2019, 4, 2, 8, 0, tzinfo=BERLIN)
    assert events[uid(TUESDAY, "mastodon")].start == dt.datetime(2019, 4, 2, 8, 5, tzinfo=BERLIN)
    assert tuesday.duration == dt.timedelta(minutes=15)
    assert tuesday.transparency is icalendar.TRANSP.TRANSPARENT

    # The sent day's LAST-MODIFIED is the ledger's; the missed one's when the catch-up ran out.
    assert tuesday.last_modified == dt.datetime(2019, 4, 2, 6, 3, tzinfo=dt.UTC)
    assert wednesday.last_modified == dt.datetime(2019, 4, 3, 12, 0, tzinfo=dt.UTC)
    assert "LAST-MODIFIED" not in thursday
    assert [tuesday.sequence, wednesday.sequence, thursday.sequence] == [3, 3, 0]

    assert str(calendar["METHOD"]) == "PUBLISH"
    assert str(calendar["X-WR-CALNAME"]) == "2. Clusterwoche Deutschland – Versandplan"


def test_uids_stay_the_same_across_requests_and_state_changes(campaign: Campaign) -> None:
    monday = dt.datetime(2019, 4, 1, 12, 0, tzinfo=BERLIN)
    before, calendar_before = feed(campaign, monday, sent=False)
    after, calendar_after = feed(campaign, THURSDAY_MORNING)
    again, _ = feed(campaign, THURSDAY_MORNING + dt.timedelta(minutes=30))

    assert set(by_uid(calendar_before)) == set(by_uid(calendar_after))
    assert [e.uid for e in before] == [e.uid for e in after] == [e.uid for e in again]
    first = by_uid(calendar_before)[uid(TUESDAY, "email")]
    later = by_uid(calendar_after)[uid(TUESDAY, "email")]
    assert str(first["SUMMARY"]).endswith("geplant")
    assert str(later["SUMMARY"]).endswith("gesendet")
    assert later.sequence > first.sequence  # a calendar takes the newer version

    # The validator follows what the feed says, not the instant of the answer (DTSTAMP).
    tag = ical.etag(campaign, after, public_url=PUBLIC_URL)
    assert ical.etag(campaign, again, public_url=PUBLIC_URL) == tag
    assert ical.etag(campaign, before, public_url=PUBLIC_URL) != tag
    assert tag.startswith('W/"')


def test_start_times_carry_the_campaign_zone_and_its_2019_transitions(
    campaign: Campaign,
) -> None:
    _, calendar = feed(campaign, THURSDAY_MORNING)
    for event in calendar.events:
        assert event["DTSTART"].params["TZID"] == "Europe/Berlin"

    (zone,) = calendar.timezones
    assert zone.tz_name == "Europe/Berlin"
    # The onsets as RFC 5545 §3.6.5 writes them: local time before the change.
    onsets = [
        (
            type(o).__name__,
            o.decoded("DTSTART"),
            o.decoded("TZOFFSETFROM"),
            o.decoded("TZOFFSETTO"),
        )
        for o in zone.walk()
        if isinstance(o, icalendar.TimezoneDaylight | icalendar.TimezoneStandard)
    ]
    hour = dt.timedelta(hours=1)
    assert onsets[1:] == [
        ("TimezoneDaylight", dt.datetime(2019, 3, 31, 2, 0), hour, 2 * hour),
        ("TimezoneStandard", dt.datetime(2019, 10, 27, 3, 0), 2 * hour, hour),
    ]
    # Read as a program without its own zone table would: the changes fall where zoneinfo has
    # them (01:00 UTC both times), and the sends in April are at +02:00.
    instants, _ = zone.get_transitions()
    assert instants[1:] == [dt.datetime(2019, 3, 31, 1, 0), dt.datetime(2019, 10, 27, 1, 0)]
    embedded = zone.to_tz(lookup_tzid=False)
    for moment, offset in [
        (dt.datetime(2019, 3, 31, 0, 59, tzinfo=dt.UTC), hour),
        (dt.datetime(2019, 3, 31, 1, 0, tzinfo=dt.UTC), 2 * hour),
        (dt.datetime(2019, 4, 2, 6, 0, tzinfo=dt.UTC), 2 * hour),
        (dt.datetime(2019, 10, 27, 0, 59, tzinfo=dt.UTC), 2 * hour),
        (dt.datetime(2019, 10, 27, 1, 0, tzinfo=dt.UTC), hour),
    ]:
        assert moment.astimezone(embedded).utcoffset() == offset, moment
        assert moment.astimezone(BERLIN).utcoffset() == offset, moment


def test_vtimezone_covers_every_year_of_the_events() -> None:
    zone = ical.vtimezone("Europe/Berlin", 2019, 2020)
    instants, _ = zone.get_transitions()
    assert instants[1:] == [
        dt.datetime(2019, 3, 31, 1, 0),
        dt.datetime(2019, 10, 27, 1, 0),
        dt.datetime(2020, 3, 29, 1, 0),
        dt.datetime(2020, 10, 25, 1, 0),
    ]
    # A zone without summer time has one observance and no change.
    india = ical.vtimezone("Asia/Kolkata", 2019, 2019)
    assert len(india.subcomponents) == 1


def test_a_snapshot_of_another_item_does_not_rename_the_day(campaign: Campaign) -> None:
    """A dispatch the ledger created but never started keeps its snapshot; when the plan
    gives the day to another item (the file changed), the event shows the plan's item."""
    other = dataclasses.replace(campaign.item("nrw-kunststoff"), title="Alt")
    recorded = {
        (THURSDAY, Channel.EMAIL): ical.Recorded(
            other, dt.datetime(2019, 4, 4, 6, 0, tzinfo=dt.UTC), None
        )
    }
    events = ical.feed_events(
        campaign, plan(campaign, now=THURSDAY_MORNING), recorded, public_url=PUBLIC_URL
    )
    (thursday,) = [e for e in events if e.uid == uid(THURSDAY, "email")]
    assert thursday.summary == "E-Mail · Vorhang auf: Medizintechnik-Allianz Franken · geplant"


def test_a_second_parser_reads_the_same_sends_from_the_embedded_zone(campaign: Campaign) -> None:
    """vobject builds the zone from the feed's own VTIMEZONE (dateutil's tzical), as a
    calendar program without a zone table for the TZID does: the same instants result."""
    events, _ = feed(campaign, THURSDAY_MORNING)
    body = ical.render_calendar(campaign, events, public_url=PUBLIC_URL, now=THURSDAY_MORNING)
    parsed = vobject.readOne(body.decode("utf-8"))
    read = {
        e.uid.value: (e.summary.value, e.dtstart.value, e.duration.value)
        for e in parsed.vevent_list
    }
    assert read == {e.uid: (e.summary, e.start, dt.timedelta(minutes=15)) for e in events}
    zone = parsed.vevent.dtstart.value.tzinfo
    assert "tzicalvtz" in type(zone).__name__, "read from the VTIMEZONE, not a zone table"
    for moment in (
        dt.datetime(2019, 3, 31, 0, 59, tzinfo=dt.UTC),
        dt.datetime(2019, 3, 31, 1, 0, tzinfo=dt.UTC),
        dt.datetime(2019, 10, 27, 0, 59, tzinfo=dt.UTC),
        dt.datetime(2019, 10, 27, 1, 0, tzinfo=dt.UTC),
    ):
        assert moment.astimezone(zone).utcoffset() == moment.astimezone(BERLIN).utcoffset()
