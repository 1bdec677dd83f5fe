"""Campaign copies for the desk's calendar: the sample items in a window with a regional
holiday, a skipped date and fewer send days than items."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.support.campaigns import campaign_copy

#: Reformationstag is a public holiday in Saxony (DE-SN), not in all of Germany.
REFORMATIONSTAG = dt.date(2019, 10, 31)
SKIPPED = dt.date(2019, 11, 4)
#: Mon 28 Oct – Wed 6 Nov 2019 without the holiday and the skipped Monday: six send days
#: for the sample's eight items, so the last two ready items have no day.
HOLIDAY_SEND_DAYS = [dt.date(2019, 10, d) for d in (28, 29, 30)] + [
    dt.date(2019, 11, d) for d in (1, 5, 6)
]
NO_DAY_LEFT = ("berlin-digital", "hessen-logistik")


def holiday_week_copy(directory: Path, *, channels: tuple[str, ...] = ("email",)) -> Path:
    """The sample week moved to 28 Oct – 6 Nov 2019 under DE-SN, skipping 4 Nov; the two
    pinned items keep their place as first and last day."""
    path = campaign_copy(directory, channels=channels)
    text = path.read_text(encoding="utf-8")
    for old, new in [
        ("start: 2019-04-02", "start: 2019-10-28"),
        ("end: 2019-04-11", "end: 2019-11-06"),
        ("holidays: DE\n", "holidays: DE-SN\n"),
        ("skip: []", f"skip: [{SKIPPED.isoformat()}]"),
        ("date: 2019-04-02", "date: 2019-10-28"),
        ("date: 2019-04-11", "date: 2019-11-06"),
    ]:
        assert old in text, f"the sample changed shape: {old!r}"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return path
