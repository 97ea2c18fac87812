"""The audit trail is a hash chain that cannot be edited quietly (issue 13), on SQLite and PostgreSQL:
records written in their action's transaction are sealed into the chain afterwards, by one sealer at a
time even when several replicas race, and ``pathways audit verify`` names an edited, a deleted and a
reordered record and exits non-zero."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from sqlalchemy import delete, update
from sqlmodel import col, select
from typer.testing import CliRunner

from services.cli import app as cli
from services.notify.migrations import MIGRATIONS
from shared.audit import AuditChain, AuditRecord, record
from shared.audit_chain import Anchor, AuditKeys, canonical, seal, verify
from shared.auth import Caller, CallerKind
from shared.db import Database
from shared.migrations import upgrade
from tests.harness import url_for

OPS = Caller(CallerKind.ops, "alex.khan")
KEY = "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
KEYS = AuditKeys.from_config(KEY)


@pytest.fixture
async def notify_db(database_url: str) -> AsyncIterator[Database]:
    db = MIGRATIONS.database(url_for(database_url, "notify"))
    await upgrade(db, MIGRATIONS)
    try:
        yield db
    finally:
        await db.dispose()


async def write_records(db: Database, n: int) -> None:
    for i in range(n):
        async with db.transaction() as session:
            record(session, OPS, "read-escalation", case_id=uuid4(), detail=f"escalation {i}", reason="ops review")


async def by_seq(db: Database) -> list[AuditRecord]:
    async with db.session() as session:
        return list((await session.exec(select(AuditRecord).order_by(col(AuditRecord.seq)))).all())


async def verify_cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """``pathways audit verify notify`` as ops run it (on a thread: the command runs its own event loop)."""
    monkeypatch.setenv("PATHWAYS_AUDIT_KEYS", KEY)
    args = ["audit", "verify", "notify", "--database-url", url_for(database_url, "notify")]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


async def test_records_are_sealed_in_order_into_an_intact_chain(notify_db: Database, database_url: str,
                                                                monkeypatch: pytest.MonkeyPatch):
    await write_records(notify_db, 5)
    assert [r.seq for r in await by_seq(notify_db)] == [None] * 5  # unsealed: written in the action's transaction
    assert await seal(notify_db, KEYS) == 5
    await write_records(notify_db, 2)
    assert await seal(notify_db, KEYS) == 2
    rows = await by_seq(notify_db)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert rows[0].prev_hash == "0" * 64
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(rows, rows[1:], strict=False))
    assert all(r.key_id == "k1" and r.reason == "ops review" for r in rows)
    report = await verify(notify_db, KEYS)
    assert report.intact and report.sealed == 7 and report.head_seq == 7
    code, output = await verify_cli(database_url, monkeypatch)
    assert code == 0, output
    assert "intact" in output
    # Without the key the chain cannot be checked, nor recomputed by whoever edits the table.
    wrong = AuditKeys.from_config("k1:" + base64.b64encode(secrets.token_bytes(32)).decode())
    assert {f.kind for f in (await verify(notify_db, wrong)).findings} == {"edited"}


async def test_an_edited_record_is_named(notify_db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch):
    await write_records(notify_db, 6)
    await seal(notify_db, KEYS)
    victim = (await by_seq(notify_db))[3]
    async with notify_db.transaction() as session:
        await session.exec(update(AuditRecord).where(col(AuditRecord.id) == victim.id)  # type: ignore[call-overload]
                           .values(actor_id="someone.else"))
    (finding,) = (await verify(notify_db, KEYS)).findings
    assert (finding.kind, finding.seq, finding.record_id) == ("edited", 4, str(victim.id))
    code, output = await verify_cli(database_url, monkeypatch)
    assert code == 1
    assert f"edited: seq 4 (id {victim.id})" in output


async def test_a_deleted_record_is_named_even_when_the_rest_are_renumbered_or_it_was_the_last(
        notify_db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch):
    await write_records(notify_db, 6)
    await seal(notify_db, KEYS)
    rows = await by_seq(notify_db)
    async with notify_db.transaction() as session:
        await session.exec(delete(AuditRecord).where(col(AuditRecord.id) == rows[2].id))  # type: ignore[call-overload]
    (finding,) = (await verify(notify_db, KEYS)).findings
    assert (finding.kind, finding.seq) == ("deleted", 3)
    code, output = await verify_cli(database_url, monkeypatch)
    assert code == 1 and "deleted: seq 3 missing, before seq 4" in output

    # Closing the gap by renumbering does not hide it.
    async with notify_db.transaction() as session:
        for row in rows[3:]:
            await session.exec(update(AuditRecord).where(col(AuditRecord.id) == row.id)  # type: ignore[call-overload]
                               .values(seq=row.seq - 1))
    findings = (await verify(notify_db, KEYS)).findings
    assert findings[0].kind == "deleted" and findings[0].record_id == str(rows[3].id)

    # Deleting the newest records: the chain head still knows how far the chain went.
    async with notify_db.transaction() as session:
        await session.exec(delete(AuditRecord))  # type: ignore[call-overload]
    (finding,) = (await verify(notify_db, KEYS)).findings
    assert finding.kind == "deleted" and "seq 1 to 6 are missing" in finding.message


async def test_a_reordered_record_is_named(notify_db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch):
    await write_records(notify_db, 6)
    await seal(notify_db, KEYS)
    rows = await by_seq(notify_db)
    second, fifth = rows[1], rows[4]
    async with notify_db.transaction() as session:  # swap places (through a free seq: seq is unique)
        for row_id, seq in ((second.id, 1000), (fifth.id, 2), (second.id, 5)):
            await session.exec(update(AuditRecord).where(col(AuditRecord.id) == row_id)  # type: ignore[call-overload]
                               .values(seq=seq))
    findings = (await verify(notify_db, KEYS)).findings
    moved = {(f.seq, f.record_id) for f in findings if f.kind == "reordered"}
    assert moved == {(2, str(fifth.id)), (5, str(second.id))}
    code, output = await verify_cli(database_url, monkeypatch)
    assert code == 1
    assert f"reordered: seq 2 (id {fifth.id}) was sealed as seq 5" in output


async def test_sealers_of_several_replicas_racing_build_one_chain(database_url: str):
    """Four replicas' sealers on one database, while records keep arriving: every record is sealed
    exactly once, in one unbroken chain."""
    replicas = [MIGRATIONS.database(url_for(database_url, "notify")) for _ in range(4)]
    await upgrade(replicas[0], MIGRATIONS)
    try:
        async def writer(db: Database) -> None:
            await write_records(db, 15)

        async def sealer(db: Database) -> None:
            for _ in range(20):
                await seal(db, KEYS, batch=7)
                await asyncio.sleep(0)

        await asyncio.gather(*(writer(db) for db in replicas), *(sealer(db) for db in replicas))
        while await seal(replicas[0], KEYS):
            pass
        rows = await by_seq(replicas[0])
        assert [r.seq for r in rows] == list(range(1, 61))
        assert (await verify(replicas[0], KEYS)).intact
        async with replicas[0].session() as session:
            assert (await session.get(AuditChain, 1)).seq == 60  # type: ignore[union-attr]
    finally:
        for db in replicas:
            await db.dispose()


async def test_the_newest_records_deleted_with_the_head_rewound_are_caught_by_an_anchor_from_the_logs(
        notify_db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """Inside the database alone this deletion is consistent; the anchor the sealer logged is not."""
    caplog.set_level("INFO", logger="shared.audit_chain")
    await write_records(notify_db, 6)
    await seal(notify_db, KEYS)
    (line,) = [r.getMessage() for r in caplog.records if "audit chain sealed" in r.getMessage()]
    anchor = line.rpartition("anchor ")[2]
    assert Anchor.parse(anchor).seq == 6
    rows = await by_seq(notify_db)
    async with notify_db.transaction() as session:
        await session.exec(delete(AuditRecord).where(col(AuditRecord.seq) > 4))  # type: ignore[call-overload]
        await session.exec(update(AuditChain).values(seq=4, hash=rows[3].hash))  # type: ignore[call-overload]
    assert (await verify(notify_db, KEYS)).intact
    (finding,) = (await verify(notify_db, KEYS, anchors=[Anchor.parse(anchor)])).findings
    assert (finding.kind, finding.seq) == ("deleted", 6)
    monkeypatch.setenv("PATHWAYS_AUDIT_KEYS", KEY)
    args = ["audit", "verify", "notify", "--database-url", url_for(database_url, "notify"), "--anchor", anchor]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args)
    assert result.exit_code == 1 and "deleted: seq 6, which the anchor records, is missing" in result.output


async def test_a_record_edited_and_re_hashed_is_still_named_by_the_record_after_it(notify_db: Database):
    """Without an audit key anyone can recompute one record's hash; the next record's link still tells."""
    unkeyed = AuditKeys()
    await write_records(notify_db, 5)
    await seal(notify_db, unkeyed)
    third = (await by_seq(notify_db))[2]
    third.detail = "escalation rewritten"

    forged = unkeyed.digest("", canonical(third, 3, third.prev_hash or ""))
    async with notify_db.transaction() as session:
        await session.exec(update(AuditRecord).where(col(AuditRecord.id) == third.id)  # type: ignore[call-overload]
                           .values(detail=third.detail, hash=forged))
    (finding,) = (await verify(notify_db, unkeyed)).findings
    assert (finding.kind, finding.seq, finding.record_id) == ("edited", 3, str(third.id))
    assert "re-hashed" in finding.message
