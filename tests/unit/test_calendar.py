"""Send days and send instants: holidays per region, skip dates, DST gaps and folds."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from dispatcher.campaign.calendar import (
    UnknownHolidayRegion,
    check_holiday_region,
    holiday_dates,
    is_send_day,
    local_send_time,
    send_days,
)
from dispatcher.campaign.model import Campaign, Channel

BERLIN = ZoneInfo("Europe/Berlin")
WORKDAYS = frozenset(range(5))
D = dt.date


def campaign(
    start: dt.date,
    end: dt.date,
    holidays: str | None = "DE",
    skip: frozenset[dt.date] = frozenset(),
    weekdays: frozenset[int] = WORKDAYS,
) -> Campaign:
    return Campaign(
        id="test",
        name="Test",
        timezone="Europe/Berlin",
        start=start,
        end=end,
        weekdays=weekdays,
        holidays=holidays,
        skip=skip,
        send={Channel.EMAIL: dt.time(8, 0)},
    )


def utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


def test_sample_window_has_eight_send_days() -> None:
    days = send_days(campaign(D(2019, 4, 2), D(2019, 4, 11)))
    assert days == [D(2019, 4, day) for day in (2, 3, 4, 5, 8, 9, 10, 11)]


def test_good_friday_and_easter_monday_are_skipped() -> None:
    days = send_days(campaign(D(2019, 4, 15), D(2019, 4, 26)))
    assert days == [D(2019, 4, day) for day in (15, 16, 17, 18, 23, 24, 25, 26)]
    assert not is_send_day(campaign(D(2019, 4, 15), D(2019, 4, 26)), D(2019, 4, 19))


def test_without_holiday_calendar_holidays_are_send_days() -> None:
    days = send_days(campaign(D(2019, 4, 19), D(2019, 4, 22), holidays=None))
    assert days == [D(2019, 4, 19), D(2019, 4, 22)]


@pytest.mark.parametrize(
    ("region", "day", "expected"),
    [
        ("DE-SN", D(2019, 10, 31), False),  # Reformationstag: regional in 2019
        ("DE-BY", D(2019, 10, 31), True),
        ("DE", D(2019, 10, 31), True),
        ("DE", D(2017, 10, 31), False),  # 500 years of Reformation: national in 2017
        ("DE-SN", D(2019, 11, 20), False),  # Buß- und Bettag: Saxony only
        ("DE-BY", D(2019, 11, 20), True),
        ("DE", D(2019, 11, 20), True),
        ("DE-BY", D(2019, 11, 1), False),  # Allerheiligen
    ],
)
def test_subdivision_holidays(region: str, day: dt.date, expected: bool) -> None:
    window = campaign(day - dt.timedelta(days=7), day + dt.timedelta(days=7), holidays=region)
    assert is_send_day(window, day) is expected
    assert (day in send_days(window)) is expected


def test_skip_dates_are_honoured() -> None:
    skip = frozenset({D(2019, 4, 3), D(2019, 4, 9)})
    days = send_days(campaign(D(2019, 4, 2), D(2019, 4, 11), skip=skip))
    assert days == [D(2019, 4, day) for day in (2, 4, 5, 8, 10, 11)]
    assert not is_send_day(campaign(D(2019, 4, 2), D(2019, 4, 11), skip=skip), D(2019, 4, 3))


def test_listed_weekend_days_are_send_days() -> None:
    days = send_days(campaign(D(2019, 4, 5), D(2019, 4, 8), weekdays=frozenset({5, 6})))
    assert days == [D(2019, 4, 6), D(2019, 4, 7)]


def test_is_send_day_outside_the_window() -> None:
    window = campaign(D(2019, 4, 2), D(2019, 4, 11))
    assert not is_send_day(window, D(2019, 4, 1))
    assert not is_send_day(window, D(2019, 4, 12))
    assert is_send_day(window, D(2019, 4, 2))


def test_empty_window() -> None:
    assert send_days(campaign(D(2019, 4, 6), D(2019, 4, 7))) == []
    assert send_days(campaign(D(2019, 4, 8), D(2019, 4, 7))) == []


@pytest.mark.parametrize("region", ["DE", "DE-SN", "DE-BY", "de-sn", "AT", "DE-Augsburg"])
def test_valid_regions(region: str) -> None:
    assert check_holiday_region(region) is None


def test_unknown_subdivision_lists_the_valid_ones() -> None:
    message = check_holiday_region("DE-XX")
    assert message is not None
    assert '"DE-XX"' in message
    assert "subdivisions of DE are: BB, BE, BW, BY" in message
    assert "SN" in message


def test_unknown_country_says_what_is_valid() -> None:
    message = check_holiday_region("XX")
    assert message is not None
    assert '"XX"' in message
    assert "DE" in message


def test_holiday_dates() -> None:
    saxony = holiday_dates("DE-SN", [2019])
    assert saxony[D(2019, 10, 31)] == "Reformationstag"
    assert saxony[D(2019, 11, 20)] == "Buß- und Bettag"
    assert D(2019, 10, 31) not in holiday_dates("DE-BY", [2019])
    assert holiday_dates(None, [2019]) == {}
    both = holiday_dates("DE", range(2019, 2021))
    assert D(2019, 12, 25) in both
    assert D(2020, 12, 25) in both


def test_holiday_dates_returns_a_copy() -> None:
    holiday_dates("DE", [2019]).clear()
    assert holiday_dates("DE", [2019])


def test_holiday_dates_rejects_unknown_region() -> None:
    with pytest.raises(UnknownHolidayRegion, match="subdivisions of DE"):
        holiday_dates("DE-XX", [2019])
    with pytest.raises(ValueError, match='"XX"'):
        send_days(campaign(D(2019, 4, 2), D(2019, 4, 11), holidays="XX"))


def test_spring_forward_window_keeps_wall_clock() -> None:
    days = send_days(campaign(D(2019, 3, 28), D(2019, 4, 2)))
    assert days == [D(2019, 3, 28), D(2019, 3, 29), D(2019, 4, 1), D(2019, 4, 2)]
    friday = local_send_time(D(2019, 3, 29), dt.time(8, 0), BERLIN)
    monday = local_send_time(D(2019, 4, 1), dt.time(8, 0), BERLIN)
    assert utc(friday) == dt.datetime(2019, 3, 29, 7, 0, tzinfo=dt.UTC)
    assert utc(monday) == dt.datetime(2019, 4, 1, 6, 0, tzinfo=dt.UTC)
    assert friday.hour == monday.hour == 8


def test_fall_back_window_keeps_wall_clock() -> None:
    friday = local_send_time(D(2025, 10, 24), dt.time(8, 0), BERLIN)
    monday = local_send_time(D(2025, 10, 27), dt.time(8, 0), BERLIN)
    assert utc(friday) == dt.datetime(2025, 10, 24, 6, 0, tzinfo=dt.UTC)
    assert utc(monday) == dt.datetime(2025, 10, 27, 7, 0, tzinfo=dt.UTC)


def test_time_in_spring_gap_moves_to_end_of_gap() -> None:
    sent = local_send_time(D(2019, 3, 31), dt.time(2, 30), BERLIN)
    assert utc(sent) == dt.datetime(2019, 3, 31, 1, 0, tzinfo=dt.UTC)
    assert sent.replace(tzinfo=None) == dt.datetime(2019, 3, 31, 3, 0)
    assert sent.utcoffset() == dt.timedelta(hours=2)


def test_time_in_autumn_fold_takes_first_occurrence() -> None:
    sent = local_send_time(D(2025, 10, 26), dt.time(2, 30), BERLIN)
    assert utc(sent) == dt.datetime(2025, 10, 26, 0, 30, tzinfo=dt.UTC)
    assert sent.utcoffset() == dt.timedelta(hours=2)
    assert utc(sent).astimezone(BERLIN).replace(tzinfo=None) == dt.datetime(2025, 10, 26, 2, 30)


@pytest.mark.parametrize(
    ("zone", "day", "at", "expected_utc"),
    [
        # Midnight gap: São Paulo skipped 00:00-01:00 on 2018-11-04.
        ("America/Sao_Paulo", D(2018, 11, 4), dt.time(0, 30), dt.datetime(2018, 11, 4, 3, 0)),
        # Half-hour shift: Lord Howe Island skipped 02:00-02:30 on 2019-10-06.
        ("Australia/Lord_Howe", D(2019, 10, 6), dt.time(2, 15), dt.datetime(2019, 10, 5, 15, 30)),
    ],
)
def test_other_gaps(zone: str, day: dt.date, at: dt.time, expected_utc: dt.datetime) -> None:
    assert utc(local_send_time(day, at, ZoneInfo(zone))) == expected_utc.replace(tzinfo=dt.UTC)


def test_round_trip_over_a_year() -> None:
    day = D(2025, 1, 1)
    for _ in range(366):
        for at in (dt.time(0, 30), dt.time(2, 30), dt.time(8, 5), dt.time(23, 59)):
            sent = local_send_time(day, at, BERLIN)
            back = utc(sent).astimezone(BERLIN)
            assert back.replace(tzinfo=None) == sent.replace(tzinfo=None)
            if not (day == D(2025, 3, 30) and at == dt.time(2, 30)):
                assert sent.replace(tzinfo=None) == dt.datetime.combine(day, at)
        day += dt.timedelta(days=1)


def test_aware_send_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="wall-clock"):
        local_send_time(D(2019, 4, 2), dt.time(8, 0, tzinfo=dt.UTC), BERLIN)
