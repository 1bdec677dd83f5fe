"""The stop switch in the ledger: cancel, resend, pause and resume (both backends).

Statement by statement, as the pipeline and the commands call them: what a cancel leaves
unsent is counted and marked, nothing claims or fans out a cancelled dispatch, what a
worker had in flight lands as it finished, and only `resend` sends the rest.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dispatcher.campaign.model import Channel
from dispatcher.delivery import controls
from dispatcher.ledger import controls as ledger_controls
from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger import store
from dispatcher.ledger.tables import DeliveryState, DispatchState, deliveries, metadata
from tests.support.database import Database
from tests.support.ledger import add_subscribers

T0 = dt.datetime(2019, 4, 2, 6, 0, 5, tzinfo=dt.UTC)
LEASE = dt.timedelta(minutes=5)
PREFIX, SUFFIX = "<cw.20190402.email.", "@news.example.org>"


def email_dispatch(database: Database, *, subscribers: int, fanned: int) -> store.DispatchRow:
    """A running email dispatch whose fan-out has reached the first `fanned` subscribers."""
    add_subscribers(database, subscribers)
    with database.engine.begin() as connection:
        dispatch = store.ensure_dispatch(
            connection, campaign_id="cw", day=T0.date(), channel="email", item_id="a",
            content_hash="h", content="{}", send_at=T0, state=DispatchState.RUNNING, now=T0,
        )  # fmt: skip
        if fanned:
            store.fan_out_subscribers(
                connection, dispatch, limit=fanned, key_prefix=PREFIX, key_suffix=SUFFIX, now=T0
            )
    return dispatch


def claim(database: Database, dispatch_id: int, limit: int, worker: str = "w1") -> list[int]:
    with database.engine.begin() as connection:
        claimed = store.claim_batch(
            connection, dispatch_id, limit=limit, now=T0, lease=LEASE, worker=worker
        )
    return [delivery.id for delivery in claimed]


def record_sent(database: Database, ids: list[int], worker: str = "w1") -> None:
    outcomes = [store.Outcome(i, DeliveryState.SENT, provider_id="250 ok") for i in ids]
    with database.engine.begin() as connection:
        store.record_outcomes(connection, outcomes, worker=worker, now=T0)


def rows(database: Database, dispatch_id: int) -> dict[str, tuple[str, str]]:
    """recipient -> (state, key)."""
    query = sa.select(deliveries.c.recipient, deliveries.c.state, deliveries.c.key).where(
        deliveries.c.dispatch_id == dispatch_id
    )
    with database.engine.connect() as connection:
        return {r: (s, k) for r, s, k in connection.execute(query)}


def counts(database: Database, dispatch_id: int) -> dict[str, int]:
    with database.engine.connect() as connection:
        return store.delivery_counts(connection, dispatch_id)


def dispatch(database: Database, dispatch_id: int) -> store.DispatchRow:
    with database.engine.connect() as connection:
        found = store.dispatch_by_id(connection, dispatch_id)
    assert found is not None
    return found


def test_a_cancel_counts_and_marks_everything_not_sent_also_beyond_the_fan_out(
    database: Database,
) -> None:
    row = email_dispatch(database, subscribers=30, fanned=10)
    record_sent(database, claim(database, row.id, 4))
    result = controls.cancel_dispatch(
        database.engine, row.id, by="cli:erika", reason="falscher Link", now=T0
    )
    assert result == controls.CancelResult(row.id, "cancelled", cancelled=26, sent=4, already=False)
    found = rows(database, row.id)
    assert len(found) == 30  # the 20 the fan-out had not reached are in the ledger too
    assert sum(state == "cancelled" for state, _ in found.values()) == 26
    # Their Message-IDs follow the rows that were fanned out: a resend keeps the scheme.
    assert found["subscriber:30"] == ("cancelled", f"{PREFIX}30{SUFFIX}")
    with database.engine.connect() as connection:
        [called_off] = ledger_controls.cancellations(connection, "cw").values()
    assert (called_off.at, called_off.by, called_off.reason) == (T0, "cli:erika", "falscher Link")
    assert dispatch(database, row.id).state == "cancelled"


def test_nothing_claims_or_fans_out_a_cancelled_dispatch_and_nothing_reopens_it(
    database: Database,
) -> None:
    row = email_dispatch(database, subscribers=5, fanned=0)
    controls.cancel_dispatch(database.engine, row.id, by="cli", reason=None, now=T0)
    add_subscribers_after = counts(database, row.id)
    assert add_subscribers_after == {}  # no row yet: no key scheme to follow, nothing made up
    with database.engine.begin() as connection:
        covered = store.fan_out_subscribers(
            connection, row, limit=100, key_prefix=PREFIX, key_suffix=SUFFIX, now=T0
        )
        store.mark_dispatch(connection, row.id, DispatchState.RUNNING, now=T0)
        requeued = store.requeue(connection, campaign_id="cw", dispatch_id=None, force=True, now=T0)
    assert (covered, requeued) == (0, 0)
    assert claim(database, row.id, 10) == []
    assert counts(database, row.id) == {}
    assert dispatch(database, row.id).state == "cancelled"


def test_what_was_in_flight_lands_as_it_finished_and_the_rest_is_cancelled(
    database: Database,
) -> None:
    row = email_dispatch(database, subscribers=10, fanned=10)
    held = claim(database, row.id, 6)
    result = controls.cancel_dispatch(database.engine, row.id, by="cli", reason=None, now=T0)
    assert (result.cancelled, result.sent) == (4, 0)  # the 6 in flight are the worker's
    sent, deferred, given_back = held[:3], held[3], held[4:]
    with database.engine.begin() as connection:
        store.record_outcomes(
            connection,
            [store.Outcome(i, DeliveryState.SENT) for i in sent]
            + [store.Outcome(deferred, DeliveryState.DEFERRED, next_attempt_at=T0)],
            worker="w1",
            now=T0,
        )
        store.release_claims(connection, worker="w1", ids=given_back)
        ledger_controls.settle_cancelled(connection, now=T0, dispatch_id=row.id)
        assert store.finish_if_complete(connection, row, now=T0) is None
    assert counts(database, row.id) == {"sent": 3, "cancelled": 7}
    assert dispatch(database, row.id).state == "cancelled"


def test_claims_given_back_while_the_cancel_waits_for_the_record_are_cancelled_too(
    database: Database,
) -> None:
    """A worker records its batch (and gives back what it did not send) under the dispatch's
    shared lock, which the cancel must wait for: otherwise the cancel would skip rows still
    `sending` in its snapshot, and they would come back `pending` on a cancelled dispatch."""
    row = email_dispatch(database, subscribers=10, fanned=10)
    held = claim(database, row.id, 6)
    results: list[controls.CancelResult] = []

    def cancel() -> None:
        results.append(
            controls.cancel_dispatch(database.engine, row.id, by="cli", reason=None, now=T0)
        )

    canceller = threading.Thread(target=cancel)
    with database.engine.begin() as connection:  # the worker's record transaction
        state = store.lock_dispatch(connection, row.id)
        canceller.start()
        canceller.join(timeout=2)  # gives a cancel that did not wait the time to finish
        store.record_outcomes(
            connection, [store.Outcome(held[0], DeliveryState.SENT)], worker="w1", now=T0
        )
        store.release_claims(connection, worker="w1", ids=held[1:])
        if state == DispatchState.CANCELLED:
            ledger_controls.settle_cancelled(connection, now=T0, dispatch_id=row.id)
    canceller.join()
    assert counts(database, row.id) == {"sent": 1, "cancelled": 9}
    assert results[0].sent == 1 and results[0].cancelled == 9


def test_a_long_author_and_reason_are_cut_to_what_the_ledger_keeps(database: Database) -> None:
    row = email_dispatch(database, subscribers=1, fanned=1)
    controls.cancel_dispatch(database.engine, row.id, by="b" * 300, reason="ä" * 2000, now=T0)
    controls.pause(database.engine, None, by="p" * 300, now=T0)
    with database.engine.connect() as connection:
        [called_off] = ledger_controls.cancellations(connection, "cw").values()
        [paused] = controls.pauses(connection)
    assert (called_off.by, called_off.reason) == ("b" * 200, "ä" * 1000)
    assert paused.by == "p" * 200


def test_a_claim_whose_worker_died_on_a_cancelled_dispatch_becomes_unknown(
    database: Database,
) -> None:
    row = email_dispatch(database, subscribers=3, fanned=3)
    claim(database, row.id, 2)
    controls.cancel_dispatch(database.engine, row.id, by="cli", reason=None, now=T0)
    with database.engine.begin() as connection:
        ledger_controls.settle_cancelled(connection, now=T0 + LEASE / 2)  # the lease holds
    assert counts(database, row.id) == {"sending": 2, "cancelled": 1}
    with database.engine.begin() as connection:
        ledger_controls.settle_cancelled(connection, now=T0 + 2 * LEASE)
    assert counts(database, row.id) == {"unknown": 2, "cancelled": 1}  # may have been sent


def test_a_finished_or_unknown_dispatch_is_refused_and_a_second_cancel_changes_nothing(
    database: Database,
) -> None:
    row = email_dispatch(database, subscribers=2, fanned=2)
    with pytest.raises(KeyError):
        controls.cancel_dispatch(database.engine, row.id + 1, by="cli", reason=None, now=T0)
    controls.cancel_dispatch(database.engine, row.id, by="first", reason="eins", now=T0)
    again = controls.cancel_dispatch(
        database.engine, row.id, by="second", reason="zwei", now=T0 + LEASE
    )
    assert (again.already, again.cancelled, again.state) == (True, 0, "cancelled")
    with database.engine.connect() as connection:
        [called_off] = ledger_controls.cancellations(connection, "cw").values()
    assert (called_off.by, called_off.reason) == ("first", "eins")
    with database.engine.begin() as connection:
        store.mark_dispatch(connection, row.id, DispatchState.DONE, now=T0)
    with pytest.raises(ValueError, match="is done already: there is nothing left to stop"):
        controls.cancel_dispatch(database.engine, row.id, by="cli", reason=None, now=T0)


def test_resend_queues_exactly_the_cancelled_ones_and_is_refused_for_anything_else(
    database: Database,
) -> None:
    row = email_dispatch(database, subscribers=8, fanned=8)
    with pytest.raises(ValueError, match="not cancelled"):
        controls.resend_unsent(database.engine, row.id, by="cli", now=T0)
    record_sent(database, claim(database, row.id, 3))
    controls.cancel_dispatch(database.engine, row.id, by="cli", reason=None, now=T0)
    later = T0 + dt.timedelta(hours=2)
    assert controls.resend_unsent(database.engine, row.id, by="cli:max", now=later) == 5
    assert counts(database, row.id) == {"sent": 3, "pending": 5}
    assert dispatch(database, row.id).state == "running"
    with database.engine.connect() as connection:
        [called_off] = ledger_controls.cancellations(connection, "cw").values()
    assert (called_off.resent_at, called_off.resent_by) == (later, "cli:max")
    record_sent(database, claim(database, row.id, 10))
    reopened = dispatch(database, row.id)
    with database.engine.begin() as connection:
        assert store.finish_if_complete(connection, reopened, now=later) == "done"
    with pytest.raises(KeyError):
        controls.resend_unsent(database.engine, row.id + 1, by="cli", now=T0)


def test_resend_of_a_dispatch_cancelled_before_its_fan_out_sends_to_everyone(
    database: Database,
) -> None:
    row = email_dispatch(database, subscribers=4, fanned=0)
    controls.cancel_dispatch(database.engine, row.id, by="cli", reason=None, now=T0)
    assert controls.resend_unsent(database.engine, row.id, by="cli", now=T0) == 4
    reopened = dispatch(database, row.id)
    with database.engine.begin() as connection:
        covered = store.fan_out_subscribers(
            connection, reopened, limit=10, key_prefix=PREFIX, key_suffix=SUFFIX, now=T0
        )
    assert covered == 4 and counts(database, row.id) == {"pending": 4}


def test_resend_with_nothing_left_keeps_the_dispatch_cancelled(database: Database) -> None:
    row = email_dispatch(database, subscribers=2, fanned=2)
    held = claim(database, row.id, 2)
    controls.cancel_dispatch(database.engine, row.id, by="cli", reason=None, now=T0)
    record_sent(database, held)
    assert controls.resend_unsent(database.engine, row.id, by="cli", now=T0) == 0
    assert dispatch(database, row.id).state == "cancelled"


def test_pauses_are_kept_per_channel_and_for_all_and_the_first_pause_stays(
    database: Database,
) -> None:
    engine = database.engine
    later = T0 + dt.timedelta(minutes=3)
    controls.pause(engine, Channel.EMAIL, by="cli:erika", now=T0)
    controls.pause(engine, Channel.EMAIL, by="cli:max", now=later)  # paused already
    controls.pause(engine, None, by="api:platform", now=later)
    with engine.connect() as connection:
        assert controls.pauses(connection) == [
            controls.Pause(None, later, "api:platform"),
            controls.Pause(Channel.EMAIL, T0, "cli:erika"),
        ]
        held = ledger_controls.holding(connection, "mastodon")
    assert held is not None and held.channel == "all"  # the pause of all holds every channel
    controls.resume(engine, None, by="cli", now=later)
    with engine.connect() as connection:
        assert ledger_controls.holding(connection, "mastodon") is None
        still = ledger_controls.holding(connection, "email")
    assert still is not None and still.paused_by == "cli:erika"  # its own pause stays
    controls.resume(engine, Channel.EMAIL, by="cli", now=later)
    controls.resume(engine, Channel.EMAIL, by="cli", now=later)  # not paused: nothing to do
    with engine.connect() as connection:
        assert controls.pauses(connection) == []


def test_a_pause_changes_no_delivery_and_lets_no_claim_through_the_pipeline_check(
    database: Database,
) -> None:
    row = email_dispatch(database, subscribers=5, fanned=5)
    before = rows(database, row.id)
    controls.pause(database.engine, Channel.EMAIL, by="cli", now=T0)
    assert rows(database, row.id) == before
    controls.resume(database.engine, Channel.EMAIL, by="cli", now=T0)
    assert len(claim(database, row.id, 10)) == 5  # the place was kept


def test_the_migration_builds_what_the_code_declares_and_can_be_undone(
    database: Database,
) -> None:
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    ours = [d for d in differences if "channel_pauses" in repr(d) or "cancel" in repr(d)]
    assert ours == []
    row = email_dispatch(database, subscribers=2, fanned=2)
    controls.cancel_dispatch(database.engine, row.id, by="cli", reason=None, now=T0)
    controls.pause(database.engine, None, by="cli", now=T0)
    config = ledger_engine.alembic_config(database.engine.url.render_as_string(False))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    inspector = sa.inspect(database.engine)
    assert "channel_pauses" not in inspector.get_table_names()
    assert "cancelled_by" not in {c["name"] for c in inspector.get_columns("dispatches")}
    ledger_engine.upgrade(database.engine)
    with database.engine.connect() as connection:
        assert controls.pauses(connection) == []
