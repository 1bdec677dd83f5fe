"""AT Protocol TIDs: the syntax the PDS checks, time order, determinism."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.channels import tid

micros = st.integers(min_value=0, max_value=tid.MAX_MICROS)
clock_ids = st.integers(min_value=0, max_value=tid.MAX_CLOCK_ID)
aware = st.datetimes(
    min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
)


@given(micros, clock_ids)
def test_every_tid_is_valid_and_decodes_back(us: int, clock_id: int) -> None:
    value = tid.encode(us, clock_id)
    assert len(value) == 13 and tid.PATTERN.fullmatch(value)
    assert tid.decode(value) == (us, clock_id)
    assert tid.encode(us, clock_id) == value  # deterministic


@given(aware, aware, clock_ids, clock_ids)
def test_string_order_is_time_order(a: dt.datetime, b: dt.datetime, ca: int, cb: int) -> None:
    if a != b:
        assert (tid.from_datetime(a, ca) < tid.from_datetime(b, cb)) == (a < b)


def test_known_values_match_the_reference_encoding() -> None:
    # atproto common-web: s32encode(micros).padStart(11, "2") + s32encode(clockId).padStart(2, "2")
    assert tid.encode(0, 0) == "2222222222222"
    assert tid.encode(0, 1023) == "22222222222zz"
    assert tid.encode(1, 0) == "2222222222322"
    # TID.fromTime(us, clockId) of @atproto/common-web 0.4 (the real PDS's node_modules):
    assert tid.encode(1_735_732_800_000_000, 0) == "3leoj6jk62222"
    assert tid.encode(1_772_438_400_123_456, 517) == "3mg2rwnnkm2k7"
    when = dt.datetime(2025, 1, 1, 12, tzinfo=dt.UTC)
    assert tid.from_datetime(when, 0).startswith("3")  # today's TIDs start with 3
    assert tid.micros_since_epoch(when) == 1_735_732_800_000_000


def test_exact_microseconds_without_float_rounding() -> None:
    when = dt.datetime(2026, 3, 2, 8, 0, 0, 999_999, tzinfo=dt.UTC)
    assert tid.micros_since_epoch(when) % 1_000_000 == 999_999
    other_zone = when.astimezone(dt.timezone(dt.timedelta(hours=1)))
    assert tid.from_datetime(other_zone, 7) == tid.from_datetime(when, 7)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not-a-tid",
        "3jzfcijpj2z2",
        "3jzfcijpj2z2aa",
        "kjzfcijpj2z2a",
        "3jzfcijpj2z2A",
        "3jzfcijpj2z21",
    ],
)
def test_invalid_strings_are_refused(value: str) -> None:
    assert not tid.is_valid(value)
    with pytest.raises(ValueError, match="not a valid TID"):
        tid.decode(value)


def test_out_of_range_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        tid.encode(-1, 0)
    with pytest.raises(ValueError):
        tid.encode(tid.MAX_MICROS + 1, 0)
    with pytest.raises(ValueError):
        tid.encode(0, 1024)
    with pytest.raises(ValueError, match="aware"):
        tid.from_datetime(dt.datetime(2026, 1, 1), 0)
