"""Which dates of a campaign window get a send, and at which instant.

Pure functions: no clock, no I/O. Public holidays come from the maintained tables of the
`holidays` package rather than from a list of our own, so regional days such as
Reformationstag (DE-SN) or Buß- und Bettag are right without anyone keeping them up to date.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import holidays

from dispatcher.campaign.model import Campaign

__all__ = [
    "UnknownHolidayRegion",
    "check_holiday_region",
    "holiday_dates",
    "is_send_day",
    "local_send_time",
    "send_days",
]


class UnknownHolidayRegion(ValueError):  # noqa: N818 - the name is the agreed API
    """The `holidays:` value names no calendar; the message says what would be valid."""


@functools.lru_cache(maxsize=1)
def _supported() -> dict[str, tuple[str, ...]]:
    # Upper-cased keys so "de-sn" finds "DE"/"SN"; values keep the package's own spelling.
    return {
        country.upper(): tuple(subdivs)
        for country, subdivs in holidays.list_supported_countries().items()
    }


def _resolve(region: str) -> tuple[str, str | None]:
    """Split "DE-SN" into the package's spelling ("DE", "SN"), or explain what is valid."""
    country, _, subdiv = region.strip().partition("-")
    subdivs = _supported().get(country.upper())
    if subdivs is None:
        raise UnknownHolidayRegion(
            f'unknown holiday region "{region}"; use an ISO 3166 country code such as DE, AT '
            'or CH, optionally with a subdivision such as "DE-SN"'
        )
    country = country.upper()
    if not subdiv:
        return country, None
    for known in subdivs:
        if known.upper() == subdiv.upper():
            return country, known
    if not subdivs:
        raise UnknownHolidayRegion(
            f'unknown holiday region "{region}"; {country} has no subdivisions, use "{country}"'
        )
    raise UnknownHolidayRegion(
        f'unknown holiday region "{region}"; subdivisions of {country} are: {", ".join(subdivs)}'
    )


def check_holiday_region(region: str) -> str | None:
    """Let the file loader report a bad `holidays:` value as a message instead of a crash."""
    try:
        _resolve(region)
    except UnknownHolidayRegion as error:
        return str(error)
    return None


@functools.lru_cache(maxsize=256)
def _holidays(
    region: str, years: tuple[int, ...], lang: str | None = None
) -> tuple[tuple[dt.date, str], ...]:
    country, subdiv = _resolve(region)
    # Names in the country's own language (or `lang`, where the package has it), explicitly:
    # otherwise the package guesses from the process locale and the output would depend on
    # the host's LANG.
    calendar = holidays.country_holidays(country)
    language = next(
        (name for name in calendar.supported_languages if lang and name.split("_")[0] == lang),
        calendar.default_language,
    )
    table = holidays.country_holidays(country, subdiv=subdiv, years=years, language=language)
    return tuple(sorted(table.items()))


def holiday_dates(
    region: str | None, years: Iterable[int], *, lang: str | None = None
) -> dict[dt.date, str]:
    """Public holidays (date -> name) so callers can both skip and explain skipped days; the
    names in `lang` ("Good Friday") where the holiday calendar has that language, else in the
    country's own.

    `None` means the campaign uses no holiday calendar. An unknown region raises
    `UnknownHolidayRegion` rather than silently sending on holidays.
    """
    if region is None:
        return {}
    return dict(_holidays(region, tuple(sorted(set(years))), lang))


def _window_holidays(campaign: Campaign) -> dict[dt.date, str]:
    return holiday_dates(campaign.holidays, range(campaign.start.year, campaign.end.year + 1))


def _is_candidate(campaign: Campaign, day: dt.date, off: dict[dt.date, str]) -> bool:
    return (
        campaign.start <= day <= campaign.end
        and day.weekday() in campaign.weekdays
        and day not in off
        and day not in campaign.skip
    )


def send_days(campaign: Campaign) -> list[dt.date]:
    """The dates items can go out on, in date order (the order the queue is consumed in)."""
    off = _window_holidays(campaign)
    span = (campaign.end - campaign.start).days + 1
    days = (campaign.start + dt.timedelta(days=n) for n in range(max(span, 0)))
    return [day for day in days if _is_candidate(campaign, day, off)]


def is_send_day(campaign: Campaign, day: dt.date) -> bool:
    """Lets validation check a pinned `date:` without building the whole window."""
    if not campaign.start <= day <= campaign.end:
        return False
    return _is_candidate(campaign, day, holiday_dates(campaign.holidays, [day.year]))


def local_send_time(day: dt.date, at: dt.time, zone: ZoneInfo) -> dt.datetime:
    """The instant at which the wall clock in `zone` shows `at` on `day`.

    Editors write wall-clock times, and two days a year the wall clock is ambiguous:

    * Autumn fold (e.g. 02:30 on 2025-10-26 in Europe/Berlin happens twice): the FIRST
      occurrence (fold=0, still summer time) is used, so the send is never later than written.
    * Spring gap (e.g. 02:30 on 2019-03-31 in Europe/Berlin never happens): the send moves
      forward to the first instant that exists after the gap (03:00 CEST), the same choice cron
      makes: as soon as possible after the intended moment, never before it, and no later
      than a send written for the end of the gap.

    `at` must be naive; a time zone on it would contradict `zone`.
    """
    if at.tzinfo is not None:
        raise ValueError(f"send time {at.isoformat()} must be a wall-clock time without zone")
    wall = dt.datetime.combine(day, at.replace(fold=0))
    first = wall.replace(tzinfo=zone)
    if first.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) == wall:
        return first
    return _end_of_gap(wall, zone)


def _end_of_gap(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The transition instant that opens the gap `wall` lies in.

    Read with the offset after the transition (fold=1) the wall time is an instant before the
    transition, read with the offset before it (fold=0) an instant after it; bisecting between
    the two finds the transition whatever the zone's rules (30-minute shifts, midnight gaps,
    whole skipped days).
    """
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(wall.replace(tzinfo=zone, fold=0).timestamp())
    if low > high:  # defensive: zoneinfo's fold semantics say this cannot happen in a gap
        low, high = high, low
    after = dt.datetime.fromtimestamp(high, zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, zone)
