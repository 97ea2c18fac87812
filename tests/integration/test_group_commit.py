"""Writes shared by many callers (issue 9): intake's group commit of new referrals and the consumers'
one transaction per fetched batch. Sharing a transaction must never let one caller's conflict or
failure lose, or duplicate, another's work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import Database, ProcessedEvent
from shared.events import utcnow
from shared.group_commit import GroupCommit
from shared.outbox import OutboxMessage


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, [])
    await database.create_all()
    yield database
    await database.dispose()


def inbox(consumer: str, event_id: UUID) -> ProcessedEvent:
    return ProcessedEvent(consumer=consumer, event_id=event_id, processed_at=utcnow())


async def stored(db: Database, consumer: str) -> set[UUID]:
    async with db.session() as session:
        return set(
            (
                await session.exec(select(ProcessedEvent.event_id).where(ProcessedEvent.consumer == consumer))
            ).all()
        )


async def test_a_burst_of_callers_shares_commits_and_a_conflict_fails_only_its_own_caller(db):
    writer = GroupCommit(db)
    taken = uuid4()
    await writer.insert([inbox("c", taken)])
    ids = [uuid4() for _ in range(40)]
    outcomes = await asyncio.gather(
        *(writer.insert([inbox("c", i), inbox("d", i)]) for i in ids),
        writer.insert([inbox("c", uuid4()), inbox("c", taken)]),  # conflicts: neither of its rows is kept
        return_exceptions=True,
    )
    assert outcomes[:-1] == [None] * len(ids)
    assert isinstance(outcomes[-1], IntegrityError)
    assert await stored(db, "c") == {taken, *ids}
    assert await stored(db, "d") == set(ids)


async def test_rows_with_a_database_assigned_key_are_inserted_in_order(db):
    writer = GroupCommit(db)
    events = [uuid4() for _ in range(5)]
    await asyncio.gather(
        *(
            writer.insert(
                [OutboxMessage(event_id=e, subject="test.subject", payload="{}", created_at=utcnow())]
            )
            for e in events
        )
    )
    async with db.session() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(OutboxMessage.id))).all()  # type: ignore[arg-type]
    assert [r.event_id for r in rows] == events and all(r.id is not None for r in rows)


async def test_a_batch_of_events_commits_together_and_a_failing_event_is_rolled_back_alone(db):
    ids = [uuid4() for _ in range(4)]

    def work_for(event_id: UUID, fail: bool):
        async def work(session: AsyncSession) -> None:
            session.add(inbox("side-effect", event_id))
            if fail:
                raise LookupError("not yet")

        return work

    outcomes = await db.run_batch("c", [(i, work_for(i, fail=n == 1)) for n, i in enumerate(ids)])
    assert outcomes[0] is None and isinstance(outcomes[1], LookupError) and outcomes[2:] == [None, None]
    # The failing event left nothing behind (not even its inbox record), so its retry does the work.
    assert await stored(db, "c") == {ids[0], ids[2], ids[3]}
    assert await stored(db, "side-effect") == {ids[0], ids[2], ids[3]}
    # Redelivered with a duplicate: what was done is skipped, the failed one runs, the duplicate once.
    outcomes = await db.run_batch("c", [(i, work_for(i, fail=False)) for i in (*ids, ids[1])])
    assert outcomes == [None] * 5
    assert await stored(db, "side-effect") == set(ids)
    async with db.session() as session:
        assert (await session.exec(select(func.count()).select_from(ProcessedEvent))).one() == 8


async def test_rows_queued_for_commit_are_inserted_with_it_and_dropped_with_a_rollback(db):
    from shared.db import insert_at_commit

    kept, dropped = uuid4(), uuid4()
    with pytest.raises(LookupError):
        async with db.transaction() as session:
            insert_at_commit(session, ProcessedEvent.__table__, {"consumer": "q", "event_id": dropped,
                                                                   "processed_at": utcnow()})
            raise LookupError("the work failed")
    async with db.transaction() as session:
        insert_at_commit(session, ProcessedEvent.__table__, {"consumer": "q", "event_id": kept, "processed_at": utcnow()})
    assert await stored(db, "q") == {kept}


async def test_a_sqlite_connection_given_back_with_a_transaction_open_is_rolled_back(tmp_path):
    """The pool skips the rollback after a commit (a hop to the driver's thread saved per session) but never
    keeps a transaction, and with it SQLite's write lock, open on a pooled connection. (SQLite's pool only:
    PostgreSQL keeps SQLAlchemy's default reset.)"""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'leak.db'}", [])
    await db.create_all()
    try:
        await _given_back_with_a_transaction_open(db)
    finally:
        await db.dispose()


async def _given_back_with_a_transaction_open(db: Database) -> None:
    async with db.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        await raw.driver_connection.execute("BEGIN IMMEDIATE")
        await raw.driver_connection.execute(
            "INSERT INTO processed_event (consumer, event_id, processed_at) VALUES ('leak', 'x', '2026-01-01')")
    assert await stored(db, "leak") == set()
    async with db.transaction() as session:  # the write lock is free: a writer goes through at once
        session.add(inbox("after", uuid4()))
    assert len(await stored(db, "after")) == 1


async def test_the_relay_is_handed_every_commit_that_wrote_the_outbox_and_no_other(db):
    """After each commit that wrote outbox rows the relay is handed their values, to publish without
    reading them back; when an insert went another way (an ORM object), it is told to read the table."""
    from shared.db import insert_queued
    from shared.events import CaseEscalated
    from shared.outbox import OutboxMessage, enqueue, outbox_message

    handed: list[list[UUID] | None] = []
    db.on_outbox.append(lambda rows: handed.append(rows and [row["event_id"] for row in rows]))
    enqueued = CaseEscalated(case_id=uuid4(), reason="test")
    async with db.transaction() as session:  # an event enqueued (inserted at commit)
        enqueue(session, enqueued)
    assert handed == [[enqueued.event_id]]
    grouped = [CaseEscalated(case_id=uuid4(), reason="test") for _ in range(2)]
    await GroupCommit(db).insert([outbox_message(event) for event in grouped])  # Core insert
    assert handed[1] == [event.event_id for event in grouped]
    async with db.transaction() as session:  # an ORM object: its values are not listed
        _, values = outbox_message(CaseEscalated(case_id=uuid4(), reason="test"))
        session.add(OutboxMessage(**values))
    assert handed[2] is None
    async with db.transaction() as session:  # no outbox row: nothing for the relay
        session.add(inbox("quiet", uuid4()))
    with pytest.raises(LookupError):
        async with db.transaction() as session:  # rolled back: nothing was committed
            enqueue(session, CaseEscalated(case_id=uuid4(), reason="test"))
            await insert_queued(session)  # the row inserted, then the transaction rolled back
            raise LookupError("the work failed")
    assert len(handed) == 3
    outcomes = await db.run_batch("c", [(uuid4(), _enqueueing)])  # a consumer's batch
    assert outcomes == [None] and len(handed) == 4 and handed[3] is not None and len(handed[3]) == 1


async def _enqueueing(session: AsyncSession) -> None:
    from shared.events import CaseEscalated
    from shared.outbox import enqueue

    enqueue(session, CaseEscalated(case_id=uuid4(), reason="test"))


async def test_statements_write_in_the_writer_slot_commit_and_roll_back_like_a_session_transaction(db):
    """``Database.statements``: a write transaction on a connection, no ORM session (issue 9). It commits
    on success, rolls back on an error, hands the outbox rows it wrote to the relay only once committed,
    and on SQLite holds the one writer slot: another write waits for it, and one opened inside it is an
    error, as with ``transaction``."""
    from shared.db import insert_into, listing_outbox_rows
    from shared.events import CaseEscalated
    from shared.outbox import OUTBOX, outbox_message

    handed: list[list[UUID] | None] = []
    db.on_outbox.append(lambda rows: handed.append(rows and [row["event_id"] for row in rows]))
    event = CaseEscalated(case_id=uuid4(), reason="test")
    async with db.statements() as connection:
        _, values = outbox_message(event)
        with listing_outbox_rows(connection, OUTBOX, [values]):
            await connection.execute(insert_into(OUTBOX), [values])
        assert handed == []  # not before the commit
    assert handed == [[event.event_id]]

    with pytest.raises(LookupError):
        async with db.statements() as connection:
            await connection.execute(insert_into(ProcessedEvent.__table__), [  # type: ignore[attr-defined]
                {"consumer": "rolled-back", "event_id": uuid4(), "processed_at": utcnow()}
            ])
            raise LookupError("the work failed")
    assert await stored(db, "rolled-back") == set() and len(handed) == 1

    if db.backend == "sqlite":
        with pytest.raises(RuntimeError, match="inside another"):
            async with db.statements(), db.transaction():
                pass
        order: list[str] = []
        go = asyncio.Event()

        async def second() -> None:
            await go.wait()
            async with db.transaction() as session:
                order.append("second")
                session.add(inbox("second", uuid4()))

        waiting = asyncio.create_task(second())  # outside the write: a task started inside would inherit it
        async with db.statements() as connection:
            go.set()
            await asyncio.sleep(0.05)
            order.append("first")
            await connection.execute(insert_into(ProcessedEvent.__table__), [  # type: ignore[attr-defined]
                {"consumer": "first", "event_id": uuid4(), "processed_at": utcnow()}
            ])
        await waiting
        assert order == ["first", "second"]  # the session's write waited for the slot


async def test_statements_whose_connection_was_lost_fail_with_their_own_error(db):
    """A ``statements`` transaction whose connection is invalidated mid-way (the server went away) ends
    with the error that ended it: tidying up never reconnects outside the driver's greenlet."""
    from shared.db import insert_into

    with pytest.raises(LookupError):
        async with db.statements() as connection:
            await connection.invalidate()
            raise LookupError("the server went away")
    async with db.statements() as connection:  # the pool connects afresh
        await connection.execute(insert_into(ProcessedEvent.__table__), [  # type: ignore[attr-defined]
            {"consumer": "after-loss", "event_id": uuid4(), "processed_at": utcnow()}
        ])
    assert len(await stored(db, "after-loss")) == 1


def test_row_values_are_the_columns_the_table_model_would_insert():
    """``row_values`` stands in for building a table model instance: the same columns, the same values,
    defaults included (timestamps aside, which each take the clock when they are filled)."""
    from services.intake.store import IdempotencyRecord, Referral
    from shared.group_commit import _values, row_values

    given = {
        "id": uuid4(),
        "client_id": "ehr",
        "bundle_identifier": "s|1",
        "service_request_identifier": None,
        "request_hash": "h" * 64,
        "referrer_ods": "B86001",
        "summary": {"risk_band": "high"},
        "consent": {"status": "granted"},
        "consent_version": 1,
        "identifying": "k1:abc",
    }
    for model, values in (
        (Referral, given),
        (
            IdempotencyRecord,
            {
                "client_id": "ehr",
                "key": "bundle:s|1",
                "request_hash": "h" * 64,
                "status_code": 202,
                "response": {"resourceType": "Task"},
                "location": None,
            },
        ),
    ):
        table, columns = row_values(model, **values)
        model_table, model_columns = _values(model(**values))
        assert table is model_table
        assert list(columns) == list(model_columns)
        clock = {"created_at", "last_updated"}
        assert {k: v for k, v in columns.items() if k not in clock} == {
            k: v for k, v in model_columns.items() if k not in clock
        }
        assert all(type(columns[k]) is type(model_columns[k]) for k in columns)


async def test_rows_given_as_column_values_are_inserted_like_table_models(db):
    from shared.group_commit import row_values

    writer = GroupCommit(db)
    event_ids = [uuid4(), uuid4()]
    await writer.insert(
        [
            row_values(ProcessedEvent, consumer="values", event_id=event_ids[0], processed_at=utcnow()),
            inbox("values", event_ids[1]),
        ]
    )
    assert await stored(db, "values") == set(event_ids)
