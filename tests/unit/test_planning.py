"""Assigning items to send days, and the state of every planned dispatch."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.campaign.calendar import holiday_dates, send_days
from dispatcher.campaign.model import Campaign, Channel, Item, ItemStatus
from dispatcher.campaign.planning import (
    PastDispatch,
    Plan,
    PlanState,
    assign_items,
    plan,
)

D = dt.date
BERLIN = ZoneInfo("Europe/Berlin")
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STARTED = ("done", "failed", "running", "partial")
LEDGER_TO_PLAN = {
    "done": PlanState.SENT,
    "failed": PlanState.FAILED,
    "running": PlanState.RUNNING,
    "partial": PlanState.PARTIAL,
}


def item(item_id: str, **changes: object) -> Item:
    base = Item(
        id=item_id,
        title=f"Vorhang auf: {item_id}",
        teaser="Ein Teaser.",
        url=f"https://www.clusterplattform.de/reportage/{item_id}",
        initiative=item_id,
        region="Sachsen",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


SAMPLE_SEND = {
    Channel.EMAIL: dt.time(8, 0),
    Channel.MASTODON: dt.time(8, 5),
    Channel.BLUESKY: dt.time(8, 5),
    Channel.LINKEDIN: dt.time(9, 0),
    Channel.WEBHOOK: dt.time(8, 0),
}
SAMPLE_IDS = (
    "nordwind-maritim",
    "saxony-mikroelektronik",
    "bayern-medizintechnik",
    "nrw-kunststoff",
    "bw-automotive",
    "berlin-digital",
    "hessen-logistik",
    "niedersachsen-agrar",
)
PINS = {"nordwind-maritim": D(2019, 4, 2), "niedersachsen-agrar": D(2019, 4, 11)}


def sample(items: tuple[Item, ...] | None = None, **changes: object) -> Campaign:
    """The sample week of config/campaign.yaml, built without the loader."""
    if items is None:
        items = tuple(item(i, date=PINS.get(i)) for i in SAMPLE_IDS)
    base = Campaign(
        id="clusterwoche-2019",
        name="2. Clusterwoche Deutschland",
        timezone="Europe/Berlin",
        start=D(2019, 4, 2),
        end=D(2019, 4, 11),
        weekdays=frozenset(range(5)),
        holidays="DE",
        send=dict(SAMPLE_SEND),
        items=items,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def berlin(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2019, 4, day, hour, minute, tzinfo=BERLIN)


BEFORE = berlin(1, 12)
EXPECTED_SAMPLE = {
    D(2019, 4, 2): "nordwind-maritim",
    D(2019, 4, 3): "saxony-mikroelektronik",
    D(2019, 4, 4): "bayern-medizintechnik",
    D(2019, 4, 5): "nrw-kunststoff",
    D(2019, 4, 8): "bw-automotive",
    D(2019, 4, 9): "berlin-digital",
    D(2019, 4, 10): "hessen-logistik",
    D(2019, 4, 11): "niedersachsen-agrar",
}

# --- strategies -------------------------------------------------------------------------------

ZONES = ("Europe/Berlin", "Europe/Berlin", "America/Sao_Paulo", "Australia/Lord_Howe", "UTC")
TIMES = st.one_of(
    st.sampled_from([dt.time(2, 30), dt.time(0, 30), dt.time(8, 0), dt.time(8, 5)]),
    st.times(),
)


@st.composite
def campaigns(draw: st.DrawFn) -> Campaign:
    start = draw(st.dates(D(2018, 1, 1), D(2027, 12, 31)))
    window = [start + dt.timedelta(days=n) for n in range(draw(st.integers(0, 60)) + 1)]
    used = draw(st.lists(st.sampled_from(list(Channel)), min_size=1, unique=True))
    base = Campaign(
        id="random",
        name="Random",
        timezone=draw(st.sampled_from(ZONES)),
        start=start,
        end=window[-1],
        weekdays=draw(st.frozensets(st.integers(0, 6))),
        holidays=draw(st.sampled_from([None, "DE", "DE-SN", "DE-BY"])),
        skip=draw(st.frozensets(st.sampled_from(window), max_size=10)),
        catch_up=dt.timedelta(minutes=draw(st.integers(0, 24 * 60))),
        send={channel: draw(TIMES) for channel in used},
    )
    count = draw(st.integers(0, 15))
    days = send_days(base)
    pins = draw(st.lists(st.sampled_from(days), unique=True, max_size=count)) if days else []
    pinned = draw(st.permutations(range(count)))[: len(pins)]
    items = []
    for index in range(count):
        subset = draw(st.lists(st.sampled_from(used), min_size=1, unique=True))
        items.append(
            item(
                f"item-{index}",
                status=draw(st.sampled_from(list(ItemStatus))),
                channels=draw(st.sampled_from([None, tuple(subset)])),
                date=pins[pinned.index(index)] if index in pinned else None,
            )
        )
    return dataclasses.replace(base, items=tuple(items))


def moments(campaign: Campaign) -> st.SearchStrategy[dt.datetime]:
    low = dt.datetime.combine(campaign.start - dt.timedelta(days=2), dt.time())
    high = dt.datetime.combine(campaign.end + dt.timedelta(days=2), dt.time())
    return st.datetimes(low, high, timezones=st.just(dt.UTC))


def ready_ids(campaign: Campaign) -> list[str]:
    return [i.id for i in campaign.items if i.status is ItemStatus.READY]


def days_by_item(result: Plan) -> dict[str, set[dt.date]]:
    found: dict[str, set[dt.date]] = defaultdict(set)
    for row in result.rows:
        if row.item_id is not None and row.day is not None:
            found[row.item_id].add(row.day)
    return found


def in_gap(day: dt.date, at: dt.time, zone: ZoneInfo) -> bool:
    wall = dt.datetime.combine(day, at)
    before = wall.replace(tzinfo=zone, fold=0).utcoffset()
    after = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert before is not None and after is not None
    return before < after  # in a gap fold=0 reads the old, smaller offset


# --- properties -------------------------------------------------------------------------------


@FAST
@given(st.data())
def test_plan_properties(data: st.DataObject) -> None:
    campaign = data.draw(campaigns())
    now = data.draw(moments(campaign))
    result = plan(campaign, now=now)
    off = holiday_dates(campaign.holidays, range(campaign.start.year, campaign.end.year + 1))
    ready = ready_ids(campaign)
    placed = days_by_item(result)

    for row in result.rows:
        if row.day is None:
            assert row.state is PlanState.UNSCHEDULED
            continue
        assert campaign.start <= row.day <= campaign.end
        assert row.day.weekday() in campaign.weekdays
        assert row.day not in off
        assert row.day not in campaign.skip

    assert all(len(days) == 1 for days in placed.values())
    assert set(placed) <= set(ready)
    assert not set(placed) & set(result.unscheduled)
    assert sorted([*placed, *result.unscheduled]) == sorted(ready)
    days = send_days(campaign)
    assert len({d for d in days if result.item_for(d)}) == min(len(days), len(ready))
    assert len(result.empty_days) == max(len(days) - len(ready), 0)

    unpinned: list[str] = []
    for entry in campaign.items:
        if entry.status is ItemStatus.READY and entry.date is not None:
            assert result.day_of(entry.id) == entry.date
        elif entry.status is ItemStatus.READY:
            unpinned.append(entry.id)
    by_day = sorted((d, i) for i, ds in placed.items() for d in ds if i in unpinned)
    assert [i for _, i in by_day] + list(result.unscheduled) == unpinned


@FAST
@given(st.data())
def test_rows_times_and_states(data: st.DataObject) -> None:
    campaign = data.draw(campaigns())
    now = data.draw(moments(campaign))
    result = plan(campaign, now=now)
    zone = campaign.zone
    scheduled = [r for r in result.rows if r.day is not None]
    assert result.rows[len(scheduled) :] == tuple(r for r in result.rows if r.day is None)

    order = list(Channel)
    keys = [(r.day, r.send_at_utc, order.index(r.channel)) for r in scheduled if r.channel]
    assert len(keys) == len(scheduled)
    assert keys == sorted(keys)
    for day in {r.day for r in scheduled}:
        assert day is not None
        entry_id = result.item_for(day)
        expected = list(campaign.channels)
        if entry_id is not None:
            entry = campaign.item(entry_id)
            expected = [c for c in campaign.channels if entry.uses(c)]
        channels = [r.channel for r in scheduled if r.day == day and r.channel]
        assert sorted(channels, key=order.index) == expected

    for row in scheduled:
        assert row.day is not None and row.channel is not None
        assert row.send_at_local is not None and row.send_at_utc is not None
        at = campaign.send[row.channel]
        # Compare in UTC: PEP 495 makes inter-zone == false for datetimes in a fold.
        assert row.send_at_local.astimezone(dt.UTC) == row.send_at_utc
        assert row.send_at_utc.utcoffset() == dt.timedelta(0)
        back = row.send_at_utc.astimezone(zone).replace(tzinfo=None)
        assert back == row.send_at_local.replace(tzinfo=None)
        wall = dt.datetime.combine(row.day, at)
        if in_gap(row.day, at, zone):
            assert wall < back <= wall + dt.timedelta(hours=1)
        else:
            assert back == wall
        if row.item_id is None:
            assert row.state is PlanState.EMPTY
        elif row.send_at_utc > now:
            assert row.state is PlanState.PLANNED
        elif now <= row.send_at_utc + campaign.catch_up:
            assert row.state is PlanState.DUE
        else:
            assert row.state is PlanState.MISSED


@FAST
@given(st.data())
def test_history_survives_edits(data: st.DataObject) -> None:
    campaign = data.draw(campaigns())
    now = data.draw(moments(campaign))
    item_rows = [r for r in plan(campaign, now=now).rows if r.item_id and r.day]
    picked = data.draw(st.lists(st.sampled_from(item_rows), unique=True)) if item_rows else []
    history = [
        PastDispatch(r.day, r.channel, r.item_id, data.draw(st.sampled_from(STARTED)))  # type: ignore[arg-type]
        for r in picked
    ]
    # The editors reorder, drop and unpin items after those sends.
    kept = (
        data.draw(st.lists(st.sampled_from(campaign.items), unique_by=lambda i: i.id))
        if campaign.items
        else []
    )
    unpin = data.draw(st.sets(st.sampled_from([i.id for i in kept]))) if kept else set()
    edited = dataclasses.replace(
        campaign,
        items=tuple(dataclasses.replace(i, date=None) if i.id in unpin else i for i in kept),
    )
    result = plan(edited, now=now, history=history)

    placed = days_by_item(result)
    assert all(len(days) == 1 for days in placed.values())
    for past in history:
        assert result.item_for(past.day) == past.item_id
        row = next(r for r in result.rows if (r.day, r.channel) == (past.day, past.channel))
        assert row.state is LEDGER_TO_PLAN[past.state]
        assert past.item_id not in result.unscheduled
    sent = {p.item_id for p in history}
    fresh = [i for i in ready_ids(edited) if i not in sent]
    assert sorted(i for i in [*placed, *result.unscheduled] if i not in sent) == sorted(fresh)


# --- examples ---------------------------------------------------------------------------------


def test_sample_week() -> None:
    result = plan(sample(), now=BEFORE)
    assert {d: result.item_for(d) for d in EXPECTED_SAMPLE} == EXPECTED_SAMPLE
    assert result.unscheduled == ()
    assert result.empty_days == ()
    assert len(result.rows) == 8 * 5
    assert {r.state for r in result.rows} == {PlanState.PLANNED}
    first_day = [(r.channel, r.send_at_local) for r in result.rows[:5]]
    assert first_day == [
        (Channel.EMAIL, berlin(2, 8)),
        (Channel.WEBHOOK, berlin(2, 8)),
        (Channel.MASTODON, berlin(2, 8, 5)),
        (Channel.BLUESKY, berlin(2, 8, 5)),
        (Channel.LINKEDIN, berlin(2, 9)),
    ]
    assert result.day_of("hessen-logistik") == D(2019, 4, 10)
    assert result.published_before(D(2019, 4, 4)) == [
        (D(2019, 4, 2), "nordwind-maritim"),
        (D(2019, 4, 3), "saxony-mikroelektronik"),
    ]
    assert result.published_before(D(2019, 4, 2)) == []


def test_assign_items_directly() -> None:
    days = send_days(sample())
    assigned, leftover = assign_items(sample(), days)
    assert assigned == EXPECTED_SAMPLE
    assert leftover == ()


def test_more_items_than_days() -> None:
    extra = tuple(item(f"extra-{n}") for n in range(3))
    campaign = sample(items=(*sample().items, *extra))
    result = plan(campaign, now=BEFORE)
    assert result.unscheduled == ("extra-0", "extra-1", "extra-2")
    tail = result.rows[-3:]
    assert [r.state for r in tail] == [PlanState.UNSCHEDULED] * 3
    assert all(r.day is None and r.channel is None and r.send_at_utc is None for r in tail)
    assert {d: result.item_for(d) for d in EXPECTED_SAMPLE} == EXPECTED_SAMPLE


def test_more_days_than_items_and_inactive_items() -> None:
    items = (
        item("a"),
        item("draft", status=ItemStatus.DRAFT),
        item("b", channels=(Channel.EMAIL,)),
        item("held", status=ItemStatus.HOLD, date=D(2019, 4, 5)),
    )
    result = plan(sample(items=items), now=BEFORE)
    assert result.item_for(D(2019, 4, 2)) == "a"
    assert result.item_for(D(2019, 4, 3)) == "b"
    assert result.empty_days == tuple(sorted(EXPECTED_SAMPLE))[2:]
    assert result.day_of("draft") is None and result.day_of("held") is None
    assert [r.channel for r in result.rows if r.day == D(2019, 4, 3)] == [Channel.EMAIL]
    empty = [r for r in result.rows if r.day == D(2019, 4, 5)]
    assert len(empty) == 5
    assert all(r.item_id is None and r.state is PlanState.EMPTY for r in empty)


def test_history_keeps_sent_items_after_edits() -> None:
    history = [
        PastDispatch(D(2019, 4, 2), Channel.EMAIL, "nordwind-maritim", "done"),
        PastDispatch(D(2019, 4, 3), Channel.EMAIL, "saxony-mikroelektronik", "done"),
        PastDispatch(D(2019, 4, 3), Channel.MASTODON, "saxony-mikroelektronik", "failed"),
    ]
    # Afterwards the editors delete nordwind, move saxony to the 10th and pin nrw onto the 3rd.
    items = [item(i, date=PINS.get(i)) for i in SAMPLE_IDS if i != "nordwind-maritim"]
    items[0] = dataclasses.replace(items[0], date=D(2019, 4, 10))
    items[2] = dataclasses.replace(items[2], date=D(2019, 4, 3))
    result = plan(sample(items=tuple(items)), now=berlin(3, 12), history=history)

    assert result.item_for(D(2019, 4, 2)) == "nordwind-maritim"
    assert result.item_for(D(2019, 4, 3)) == "saxony-mikroelektronik"
    assert result.day_of("saxony-mikroelektronik") == D(2019, 4, 3)
    assert [(d, i) for d, i in result.published_before(D(2019, 4, 12))] == [
        (D(2019, 4, 2), "nordwind-maritim"),
        (D(2019, 4, 3), "saxony-mikroelektronik"),
        (D(2019, 4, 4), "bayern-medizintechnik"),
        (D(2019, 4, 5), "nrw-kunststoff"),
        (D(2019, 4, 8), "bw-automotive"),
        (D(2019, 4, 9), "berlin-digital"),
        (D(2019, 4, 10), "hessen-logistik"),
        (D(2019, 4, 11), "niedersachsen-agrar"),
    ]
    assert result.unscheduled == ()
    # The deleted item keeps only what went out; the rest of its day is not sent.
    assert [(r.channel, r.state) for r in result.rows if r.day == D(2019, 4, 2)] == [
        (Channel.EMAIL, PlanState.SENT)
    ]
    states = {r.channel: r.state for r in result.rows if r.day == D(2019, 4, 3)}
    assert states[Channel.EMAIL] is PlanState.SENT
    assert states[Channel.MASTODON] is PlanState.FAILED
    assert states[Channel.LINKEDIN] is PlanState.DUE


def test_history_outside_the_current_window_still_consumes_the_item() -> None:
    history = [PastDispatch(D(2019, 4, 1), Channel.EMAIL, "saxony-mikroelektronik", "done")]
    result = plan(sample(), now=BEFORE, history=history)
    assert result.item_for(D(2019, 4, 1)) == "saxony-mikroelektronik"
    assert result.item_for(D(2019, 4, 3)) == "bayern-medizintechnik"
    assert result.empty_days == (D(2019, 4, 10),)


def test_unstarted_history_does_not_fix_the_day() -> None:
    history = [
        PastDispatch(D(2019, 4, 2), Channel.EMAIL, "old-item", "planned"),
        PastDispatch(D(2019, 4, 4), Channel.EMAIL, "bayern-medizintechnik", "missed"),
    ]
    result = plan(sample(), now=BEFORE, history=history)
    assert {d: result.item_for(d) for d in EXPECTED_SAMPLE} == EXPECTED_SAMPLE
    states = {(r.day, r.channel): r.state for r in result.rows}
    assert states[(D(2019, 4, 2), Channel.EMAIL)] is PlanState.PLANNED
    assert states[(D(2019, 4, 4), Channel.EMAIL)] is PlanState.MISSED
    assert states[(D(2019, 4, 4), Channel.WEBHOOK)] is PlanState.PLANNED


def test_a_cancelled_dispatch_keeps_its_day_and_its_item_is_not_planned_again() -> None:
    # `dispatcher cancel` mid-send: some readers have it, so it must not go out on another day.
    history = [PastDispatch(D(2019, 4, 2), Channel.EMAIL, "nordwind-maritim", "cancelled")]
    result = plan(sample(), now=BEFORE, history=history)
    assert result.item_for(D(2019, 4, 2)) == "nordwind-maritim"
    assert [d for d, i in ((r.day, r.item_id) for r in result.rows) if i == "nordwind-maritim"] == [
        D(2019, 4, 2)
    ] * len([r for r in result.rows if r.item_id == "nordwind-maritim"])
    states = {(r.day, r.channel): r.state for r in result.rows}
    assert states[(D(2019, 4, 2), Channel.EMAIL)] is PlanState.CANCELLED
    assert states[(D(2019, 4, 2), Channel.WEBHOOK)] is PlanState.PLANNED  # other channels go on


def test_later_ledger_records_win() -> None:
    history = [
        PastDispatch(D(2019, 4, 2), Channel.EMAIL, "nordwind-maritim", "failed"),
        PastDispatch(D(2019, 4, 2), Channel.EMAIL, "nordwind-maritim", "done"),
    ]
    result = plan(sample(), now=berlin(2, 9), history=history)
    assert result.rows[0].state is PlanState.SENT


@pytest.mark.parametrize(
    ("now", "email", "mastodon", "linkedin"),
    [
        (berlin(2, 7, 59), PlanState.PLANNED, PlanState.PLANNED, PlanState.PLANNED),
        (berlin(2, 8, 0), PlanState.DUE, PlanState.PLANNED, PlanState.PLANNED),
        (berlin(2, 8, 5), PlanState.DUE, PlanState.DUE, PlanState.PLANNED),
        (berlin(2, 14, 0), PlanState.DUE, PlanState.DUE, PlanState.DUE),
        (berlin(2, 14, 1), PlanState.MISSED, PlanState.DUE, PlanState.DUE),
        (berlin(2, 15, 1), PlanState.MISSED, PlanState.MISSED, PlanState.MISSED),
    ],
)
def test_states_by_time(
    now: dt.datetime, email: PlanState, mastodon: PlanState, linkedin: PlanState
) -> None:
    states = {r.channel: r.state for r in plan(sample(), now=now).rows if r.day == D(2019, 4, 2)}
    assert states[Channel.EMAIL] is email
    assert states[Channel.MASTODON] is mastodon
    assert states[Channel.LINKEDIN] is linkedin


def test_catch_up_zero() -> None:
    result = plan(sample(catch_up=dt.timedelta(0)), now=berlin(2, 8, 1))
    assert result.rows[0].state is PlanState.MISSED


def test_to_json() -> None:
    extra = sample(items=(*sample().items, item("extra")))
    result = plan(extra, now=dt.datetime(2019, 4, 2, 6, 30, tzinfo=dt.UTC))
    assert result.rows[0].to_json() == {
        "date": "2019-04-02",
        "channel": "email",
        "item": "nordwind-maritim",
        "send_at_local": "2019-04-02T08:00:00+02:00",
        "send_at_utc": "2019-04-02T06:00:00+00:00",
        "state": "due",
        "languages": {"de": "own"},
    }
    assert result.rows[-1].to_json() == {
        "date": None,
        "channel": None,
        "item": "extra",
        "send_at_local": None,
        "send_at_utc": None,
        "state": "unscheduled",
        "languages": None,
    }


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        plan(sample(), now=dt.datetime(2019, 4, 2, 8, 0))


def test_now_in_any_zone() -> None:
    in_utc = plan(sample(), now=dt.datetime(2019, 4, 2, 6, 1, tzinfo=dt.UTC))
    in_berlin = plan(sample(), now=berlin(2, 8, 1))
    assert in_utc == in_berlin
