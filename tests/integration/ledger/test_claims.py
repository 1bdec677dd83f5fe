"""The claim, lease and record SQL of the ledger, statement by statement (both backends)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from dispatcher.ledger import store
from dispatcher.ledger.tables import DeliveryState, DispatchState, deliveries
from tests.support.database import Database

T0 = dt.datetime(2019, 4, 2, 6, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=10)


def dispatch_with_targets(database: Database, count: int) -> store.DispatchRow:
    with database.engine.begin() as connection:
        dispatch = store.ensure_dispatch(
            connection,
            campaign_id="c",
            day=T0.date(),
            channel="webhook",
            item_id="i",
            content_hash="h",
            content="{}",
            send_at=T0,
            state=DispatchState.PLANNED,
            now=T0,
        )
        store.fan_out_targets(
            connection, dispatch, [(f"t{n}", f"k{n}") for n in range(count)], now=T0
        )
    return dispatch


def claim(
    database: Database, dispatch: store.DispatchRow, worker: str, at: dt.datetime, **kw: int
) -> list[int]:
    with database.engine.begin() as connection:
        claimed = store.claim_batch(
            connection, dispatch.id, limit=10, now=at, lease=LEASE, worker=worker, **kw
        )
    return [delivery.id for delivery in claimed]


def states(database: Database) -> dict[int, tuple[str, int, str | None]]:
    query = sa.select(deliveries.c.id, deliveries.c.state, deliveries.c.attempts,
                      deliveries.c.claimed_by)  # fmt: skip
    with database.engine.connect() as connection:
        return {i: (s, a, w) for i, s, a, w in connection.execute(query)}


def test_a_renewed_lease_is_not_taken_over(database: Database) -> None:
    dispatch = dispatch_with_targets(database, 3)
    ids = claim(database, dispatch, "a", T0)
    with database.engine.begin() as connection:
        held = store.renew_leases(connection, ids, worker="a", now=T0 + 8 * LEASE / 10, lease=LEASE)
    assert held == set(ids)
    assert claim(database, dispatch, "b", T0 + LEASE + dt.timedelta(seconds=1)) == []


def test_an_expired_lease_is_taken_over_as_an_attempt_and_the_loser_sees_it(
    database: Database,
) -> None:
    dispatch = dispatch_with_targets(database, 2)
    ids = claim(database, dispatch, "a", T0)
    later = T0 + LEASE + dt.timedelta(seconds=1)
    assert claim(database, dispatch, "b", later) == ids
    assert {s[1] for s in states(database).values()} == {2}  # the takeover counted
    with database.engine.begin() as connection:
        held = store.renew_leases(connection, ids, worker="a", now=later, lease=LEASE)
    assert held == set()  # worker a stops before its next message


def test_a_sent_outcome_lands_after_a_takeover_but_a_retry_verdict_does_not(
    database: Database,
) -> None:
    dispatch = dispatch_with_targets(database, 2)
    first, second = claim(database, dispatch, "a", T0)
    later = T0 + LEASE + dt.timedelta(seconds=1)
    claim(database, dispatch, "b", later)
    with database.engine.begin() as connection:
        store.record_outcomes(
            connection,
            [
                store.Outcome(first, DeliveryState.SENT, provider_id="250 ok"),
                store.Outcome(second, DeliveryState.DEFERRED, next_attempt_at=later),
            ],
            worker="a",
            now=later,
        )
    after = states(database)
    assert after[first][0] == "sent"  # the message left: b must not send it again
    assert after[second][0] == "sending" and after[second][2] == "b"  # b's claim stands
    with database.engine.begin() as connection:
        held = store.renew_leases(connection, [first, second], worker="b", now=later, lease=LEASE)
    assert held == {second}


def test_a_claim_at_the_attempt_limit_is_settled_unknown_not_taken_again(
    database: Database,
) -> None:
    dispatch = dispatch_with_targets(database, 1)
    at = T0
    for worker in ("a", "b", "c"):
        assert claim(database, dispatch, worker, at, max_attempts=3) != []
        at += LEASE + dt.timedelta(seconds=1)
    assert claim(database, dispatch, "d", at, max_attempts=3) == []
    ((state, attempts, _),) = states(database).values()
    assert (state, attempts) == ("unknown", 3)
    with database.engine.begin() as connection:
        fresh = store.dispatch_by_id(connection, dispatch.id)
        assert fresh is not None
        assert store.finish_if_complete(connection, fresh, now=at) is DispatchState.PARTIAL
