"""The router's own tables: each routed case with its stored ranking, every decision with its reasons,
and the open offers per service that capacity is judged by."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, Column, Index, Table, Text, bindparam, func
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.audit import AuditChain, AuditRecord
from shared.db import insert_at_commit, upsert_statement, utc_field
from shared.events import utcnow


class CaseState(StrEnum):
    routed = "routed"
    fallback = "fallback"
    no_offer = "no-offer"
    exhausted = "exhausted"
    closed = "closed"  # cancelled by the referrer or consent withdrawn: no more offers


class RoutedCase(SQLModel, table=True):
    """One row per case: its primary key is what makes "each case routed once" hold across replicas."""

    __tablename__ = "routed_case"

    case_id: UUID = Field(primary_key=True)
    state: str = Field(max_length=20)
    risk_band: str = Field(max_length=20)
    area_codes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    summary: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    consent: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # The stored ranking: lane → RoutedService dicts, best first. Re-offers walk along it.
    lanes: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    offered: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    accepted: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    failed_offers: int = 0
    rule_version: str = Field(max_length=30)
    created_at: datetime = utc_field(default_factory=utcnow)
    updated_at: datetime = utc_field(default_factory=utcnow)


class RoutingDecision(SQLModel, table=True):
    """A decision (the first routing, a re-offer, an exhaustion) with its reasons in plain words."""

    __tablename__ = "routing_decision"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    case_id: UUID = Field(index=True)
    kind: str = Field(max_length=20)  # "initial", "re-offer", "re-route", "settled", "exhausted"
    trigger: str | None = Field(default=None, max_length=300)
    outcome: str = Field(max_length=20)
    offer_to: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    lanes: dict[str, list[str]] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    excluded: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    passed_over: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    notes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    escalation: str | None = Field(default=None, sa_type=Text)
    no_offer_reason: str | None = Field(default=None, sa_type=Text)
    advice: str | None = Field(default=None, max_length=200)
    rule_version: str = Field(max_length=30)
    directory_version: str = Field(default="", max_length=100)
    created_at: datetime = utc_field(default_factory=utcnow)


class OfferLoad(SQLModel, table=True):
    """An offer as the router learns of it from ``case.offer.*``: open until answered or withdrawn."""

    __tablename__ = "offer_load"
    # A case's capacity check counts the open offers of the services that have a limit (issue 9): read
    # from this index alone, in time that grows with those services' open offers, not with every offer
    # the router has ever seen (rows stay after an offer is answered).
    __table_args__ = (Index("ix_offer_load_service_open", "service_id", "open"),)

    offer_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    service_id: str = Field(max_length=80, index=True)
    open: bool = Field(default=True, index=True)
    updated_at: datetime = utc_field(default_factory=utcnow)


async def case_for_update(session: AsyncSession, case_id: UUID) -> RoutedCase | None:
    """A routed case, locked until the transaction ends (PostgreSQL), so that two replicas answering
    two offers of the same case cannot both extend its ranking from the same stale copy. SQLite has no
    row locks, but there the inbox insert that precedes this read already holds the database's one
    write lock, so handlers run one after the other."""
    statement = select(RoutedCase).where(RoutedCase.case_id == case_id).with_for_update()
    return (await session.exec(statement)).first()


ROUTED_CASE: Table = RoutedCase.__table__  # type: ignore[attr-defined]
ROUTING_DECISION: Table = RoutingDecision.__table__  # type: ignore[attr-defined]
OFFER_LOAD: Table = OfferLoad.__table__  # type: ignore[attr-defined]


async def insert_new_case(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Store a newly routed case (every column's value), unless the case is stored already (the same
    case re-sent under a new event id, or routed by a peer): True when this call stored it. One
    statement, no ORM object: the common path of every referral (issue 9)."""
    connection = await session.connection()
    return bool((await connection.execute(_insert_case(connection.dialect.name), values)).rowcount == 1)


def add_decision(session: AsyncSession, values: dict[str, Any]) -> None:
    """Store a decision (``RoutingDecision`` column values) with the transaction; nothing reads it back
    before the commit, so decisions of a batch go in as one statement."""
    insert_at_commit(session, ROUTING_DECISION, values)


_OPEN_OFFER_COUNTS = (
    select(OFFER_LOAD.c.service_id, func.count())
    .where(OFFER_LOAD.c.service_id.in_(bindparam("ids", expanding=True)), OFFER_LOAD.c.open.is_(True))
    .group_by(OFFER_LOAD.c.service_id)
)


async def open_offer_counts(session: AsyncSession, service_ids: Sequence[str]) -> dict[str, int]:
    """Offers awaiting an answer, per service (capacity), for ``service_ids``: the case's candidates whose
    capacity is limited (``DirectoryIndex.capped``), the only ones it is checked for. Each is counted from
    the ``(service_id, open)`` index, so the cost follows their open offers, not the table (issue 9:
    counting every open offer for every case grew with them, 12 % of the router at 50 cases/s)."""
    if not service_ids:
        return {}
    connection = await session.connection()
    rows = await connection.execute(_OPEN_OFFER_COUNTS, {"ids": list(service_ids)})
    return {service_id: int(count) for service_id, count in rows.all()}


async def record_offer(
    session: AsyncSession, *, offer_id: UUID, case_id: UUID, service_id: str, open: bool
) -> None:
    """Note an offer's state; an answer that arrives before the offer itself is kept (never re-opened).

    One statement: the offer is inserted, or, for an answer, an open one closed (``ON CONFLICT``)."""
    connection = await session.connection()
    values = {
        "offer_id": offer_id,
        "case_id": case_id,
        "service_id": service_id,
        "open": open,
        "updated_at": utcnow(),
    }
    await connection.execute(_note_offer(connection.dialect.name, open), values)


# Statements built once per backend (values are the execution's parameters), from the compiled cache after.
@functools.cache
def _insert_case(dialect: str) -> Any:
    statement = upsert_statement(dialect, ROUTED_CASE)
    return statement.on_conflict_do_nothing(index_elements=[ROUTED_CASE.c.case_id])


@functools.cache
def _note_offer(dialect: str, open: bool) -> Any:
    statement = upsert_statement(dialect, OFFER_LOAD)
    if open:
        return statement.on_conflict_do_nothing(index_elements=[OFFER_LOAD.c.offer_id])
    return statement.on_conflict_do_update(
        index_elements=[OFFER_LOAD.c.offer_id],
        set_={"open": False, "updated_at": statement.excluded.updated_at},
        where=OFFER_LOAD.c.open.is_(True),
    )


async def decisions_for(session: AsyncSession, case_id: UUID) -> list[RoutingDecision]:
    statement = (
        select(RoutingDecision)
        .where(RoutingDecision.case_id == case_id)
        .order_by(col(RoutingDecision.created_at), col(RoutingDecision.id))
    )
    return list((await session.exec(statement)).all())


# The audit trail: ops reading a case's routing (shared characteristics included) is on record.
TABLES: list[type[SQLModel]] = [RoutedCase, RoutingDecision, OfferLoad, AuditRecord, AuditChain]
