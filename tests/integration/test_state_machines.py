"""The offer, outcome and Task state machines against a real database: racing writers, and random
sequences of actions (hypothesis) that must never drive a state backwards or announce a move twice."""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import select

from services.intake import closed_loop
from services.intake.consumer import on_case_status
from services.intake.store import TABLES as INTAKE_TABLES
from services.intake.store import Referral
from services.intake.task import TASK_STATES
from services.notify import offers
from services.notify.domain import OFFER_STATES, OUTCOME_STATES, DeclineReason, Outcome
from services.notify.settings import NotifySettings
from services.notify.store import TABLES, Offer, OfferStatus
from shared.auth import Caller, CallerKind
from shared.db import Database
from shared.events import CaseStatus, TaskStatus, utcnow
from shared.outbox import OutboxMessage
from shared.state_machine import IllegalTransition
from tests.integration.notify_world import synthetic_offer

PROVIDER = Caller(CallerKind.provider, "org-synthetic")
SETTINGS = NotifySettings(public_url="http://notify.test")


@asynccontextmanager
async def one_offer(url: str) -> AsyncIterator[tuple[Database, Offer]]:
    """Notify's tables on a real database, holding one offer just made."""
    db = Database(url, TABLES)
    await db.create_all()
    try:
        async with db.transaction() as session:
            offer = synthetic_offer(PROVIDER.id)
            session.add(offer)
        yield db, offer
    finally:
        await db.dispose()


@pytest.fixture
async def made(database_url: str) -> AsyncIterator[tuple[Database, Offer]]:
    async with one_offer(database_url) as made:
        yield made


async def events(db: Database) -> Counter[str]:
    async with db.session() as session:
        return Counter((await session.exec(select(OutboxMessage.subject))).all())


async def test_an_accept_racing_the_deadline_cannot_overwrite_expired(made: tuple[Database, Offer],
                                                                      database_url: str):
    """The provider read the offer as 'offered'; before its write, the deadline timer expired it."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite writers take turns (one writer slot, BEGIN IMMEDIATE): a read inside a write "
                    "transaction cannot go stale, so this race cannot happen there")
    db, offer = made
    async with db.transaction() as provider_session:
        seen = await provider_session.get(Offer, offer.id)
        assert seen is not None and seen.status == OfferStatus.offered
        async with db.transaction() as timer_session:
            due = await timer_session.get(Offer, offer.id)
            assert await offers.expire_offer(timer_session, SETTINGS, due, now=utcnow())
        with pytest.raises(IllegalTransition, match="expired, which is final"):
            await offers.accept_offer(provider_session, seen, PROVIDER, now=utcnow())
    async with db.session() as session:
        assert (await session.get(Offer, offer.id)).status == OfferStatus.expired
    published = await events(db)
    assert published["case.offer.expired"] == 1 and published["case.offer.accepted"] == 0


async def test_a_decline_racing_an_accept_loses_cleanly(made: tuple[Database, Offer], database_url: str):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite writers take turns (one writer slot, BEGIN IMMEDIATE): a read inside a write "
                    "transaction cannot go stale, so this race cannot happen there")
    db, offer = made
    async with db.transaction() as declining:
        seen = await declining.get(Offer, offer.id)
        async with db.transaction() as accepting:
            assert await offers.accept_offer(accepting, await accepting.get(Offer, offer.id), PROVIDER, now=utcnow())
        with pytest.raises(IllegalTransition, match="accepted"):
            await offers.decline_offer(declining, seen, PROVIDER, reason=DeclineReason.no_capacity, text=None,
                                       now=utcnow())
    published = await events(db)
    assert published["case.offer.accepted"] == 1 and published["case.offer.declined"] == 0


async def one_referral(db: Database) -> Referral:
    await db.create_all()
    async with db.transaction() as session:
        referral = Referral(client_id="sample-ehr", request_hash="0" * 64, referrer_ods="Y00001", summary={},
                            consent={}, identifying="k1:synthetic")
        session.add(referral)
    return referral


async def test_a_task_moved_by_core_moves_once_and_a_repeat_moves_nothing(database_url: str):
    db = Database(database_url, [*INTAKE_TABLES, *closed_loop.TABLES])
    try:
        referral = await one_referral(db)
        table = Referral.__table__
        async with db.transaction() as session:
            connection = await session.connection()
            assert await TASK_STATES.advance_row(connection, table, {"id": referral.id}, TaskStatus.requested,
                                                 TaskStatus.rejected, business_status="no offer")
            assert not await TASK_STATES.advance_row(connection, table, {"id": referral.id}, TaskStatus.rejected,
                                                     TaskStatus.rejected, business_status="again")
            with pytest.raises(IllegalTransition, match="final"):
                await TASK_STATES.advance_row(connection, table, {"id": referral.id}, TaskStatus.rejected,
                                              TaskStatus.accepted)
        async with db.session() as session:
            stored = await session.get(Referral, referral.id)
            assert (stored.task_status, stored.business_status) == (TaskStatus.rejected, "no offer")
    finally:
        await db.dispose()


async def test_a_core_move_racing_another_writer_reads_the_state_again_and_never_overwrites_it(database_url: str):
    """The consumer read the Task as requested; before its write, the referrer cancelled it."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite writers take turns (one writer slot, BEGIN IMMEDIATE): a read inside a write "
                    "transaction cannot go stale, so this race cannot happen there")
    db = Database(database_url, [*INTAKE_TABLES, *closed_loop.TABLES])
    try:
        referral = await one_referral(db)
        table = Referral.__table__
        async with db.transaction() as consumer:
            connection = await consumer.connection()
            seen = (await connection.execute(select(table.c.task_status).where(table.c.id == referral.id))).scalar_one()
            assert seen == TaskStatus.requested
            async with db.transaction() as referrer:
                assert await TASK_STATES.advance(referrer, await referrer.get(Referral, referral.id), TaskStatus.cancelled)
            with pytest.raises(IllegalTransition, match="cancelled, which is final"):
                await TASK_STATES.advance_row(connection, table, {"id": referral.id}, seen, TaskStatus.accepted)
        async with db.session() as session:
            assert (await session.get(Referral, referral.id)).task_status == TaskStatus.cancelled
    finally:
        await db.dispose()


# --- Random sequences (hypothesis) ---------------------------------------------------------------

ACTIONS = ["accept", "decline", "expire", "withdraw", *(f"outcome:{o.value}" for o in Outcome)]


async def act(db: Database, offer_id: object, action: str) -> bool:
    """One action in its own transaction, as the API or the timer would run it; True if it moved something."""
    now = utcnow()
    async with db.transaction() as session:
        offer = await session.get(Offer, offer_id)
        if action == "accept":
            return await offers.accept_offer(session, offer, PROVIDER, now=now)
        if action == "decline":
            return await offers.decline_offer(session, offer, PROVIDER, reason=DeclineReason.out_of_area, text=None,
                                              now=now)
        if action == "expire":
            return await offers.expire_offer(session, SETTINGS, offer, now=now)
        if action == "withdraw":
            return bool(await offers.stop_offers(session, SETTINGS, case_id=offer.case_id, reason="consent-withdrawn",
                                                 consent=None, source="test", now=now))
        return await offers.report_outcome(session, offer, PROVIDER, outcome=Outcome(action.split(":")[1]), now=now)


async def run_offer_sequence(url: str, actions: list[str]) -> None:
    async with one_offer(url) as (db, offer):
        status, outcome, moves = OfferStatus.offered.value, None, 0
        before = await events(db)
        for action in actions:
            try:
                moved = await act(db, offer.id, action)
            except IllegalTransition:
                moved = None
            async with db.session() as session:
                row = await session.get(Offer, offer.id)
                after = Counter((await session.exec(select(OutboxMessage.subject))).all())
            if moved:
                moves += 1
                # Each move is one the machines allow, and it is announced.
                if row.status != status:
                    assert OFFER_STATES.allows(status, row.status), (status, row.status)
                if row.outcome != outcome:
                    assert status == OfferStatus.accepted and OUTCOME_STATES.allows(outcome, row.outcome)
                assert sum(after.values()) > sum(before.values())
            else:
                # A repeat or an illegal move changes nothing and announces nothing.
                assert (row.status, row.outcome) == (status, outcome), action
                assert after == before, action
            status, outcome, before = row.status, row.outcome, after
            assert row.outcomes == [o for o in row.outcomes if o] and len(row.outcomes) == len(set(row.outcomes))
        published = await events(db)
        # At most one answer per offer; an offer is never both answered and expired.
        answers = ("case.offer.accepted", "case.offer.declined", "case.offer.expired")
        assert sum(published[s] for s in answers) <= 1
        assert published["case.offer.withdrawn"] <= 1
        # Every move told the referrer's Task (withdrawals are told by the router's re-routing).
        assert published["case.status"] == moves - published["case.offer.withdrawn"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(ACTIONS), max_size=10))
def test_random_offer_and_outcome_sequences_keep_the_invariants(actions: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run_offer_sequence(f"sqlite+aiosqlite:///{Path(tmp) / 'notify.db'}", actions))


RANK = {TaskStatus.requested: 0, TaskStatus.accepted: 1, TaskStatus.in_progress: 2, TaskStatus.completed: 3,
        TaskStatus.cancelled: 3, TaskStatus.rejected: 3}


async def run_task_sequence(url: str, statuses: list[TaskStatus]) -> None:
    db = Database(url, [*INTAKE_TABLES, *closed_loop.TABLES])
    await db.create_all()
    try:
        async with db.transaction() as session:
            referral = Referral(client_id="sample-ehr", request_hash="0" * 64, referrer_ods="Y00001", summary={},
                                consent={}, identifying="k1:synthetic")
            session.add(referral)
        at = utcnow()
        seen = [TaskStatus.requested.value]
        for i, status in enumerate(statuses):
            event = CaseStatus(case_id=referral.id, status=status, business_status=f"step {i}",
                               occurred_at=at + timedelta(seconds=i + 1))
            async with db.transaction() as session:
                await on_case_status(session, event, None)  # type: ignore[arg-type]
            async with db.session() as session:
                seen.append((await session.get(Referral, referral.id)).task_status)
        for before, after in zip(seen, seen[1:], strict=False):
            # Never backwards, never out of a final state, and only by moves FHIR's Task allows.
            assert RANK[TaskStatus(after)] >= RANK[TaskStatus(before)]
            assert before == after or TASK_STATES.allows(before, after)
    finally:
        await db.dispose()


@settings(max_examples=20, deadline=None)
@given(st.lists(st.sampled_from(list(TaskStatus)), max_size=8))
def test_random_case_status_sequences_never_drive_a_task_backwards(statuses: list[TaskStatus]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run_task_sequence(f"sqlite+aiosqlite:///{Path(tmp) / 'intake.db'}", statuses))
