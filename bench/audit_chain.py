"""Audit trail cost: what an audited transaction pays for its record (inserted unsealed, no chain
head to wait for), with 64 of them at once; how fast the sealer chains records; how fast
``pathways audit verify`` checks them. SQLite, and PostgreSQL when DATABASE_URL names one.

    .venv/bin/python bench/audit_chain.py [records]
    DATABASE_URL=postgresql+asyncpg://USER@HOST/A_SCRATCH_DATABASE .venv/bin/python bench/audit_chain.py

(It empties the notify schema's audit trail and inbox in that database: never point it at real data.)
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import sys
import tempfile
import time
from uuid import uuid4

from sqlalchemy import delete

from services.notify.migrations import MIGRATIONS
from shared.audit import AuditChain, AuditRecord, record
from shared.audit_chain import AuditKeys, seal, verify
from shared.auth import Caller, CallerKind
from shared.db import Database, ProcessedEvent
from shared.migrations import upgrade

OPS = Caller(CallerKind.ops, "bench")
CONCURRENCY = 64


async def transactions(db: Database, count: int, *, audited: bool) -> float:
    """Seconds for ``count`` small write transactions, CONCURRENCY at a time, each with or without a record."""
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            queue.pop()
            async with db.transaction() as session:
                session.add(ProcessedEvent(consumer="bench", event_id=uuid4()))
                if audited:
                    record(session, OPS, "read-escalation", case_id=uuid4(), detail="escalation x", reason="bench")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - start


async def run(url: str, count: int) -> None:
    db = MIGRATIONS.database(url, wait_timeout=60)
    await upgrade(db, MIGRATIONS)
    async with db.transaction() as session:
        await session.exec(delete(AuditRecord))  # type: ignore[call-overload]
        await session.exec(delete(ProcessedEvent))  # type: ignore[call-overload]
        head = await session.get(AuditChain, 1)
        if head is not None:
            head.seq, head.hash = 0, "0" * 64
            session.add(head)
    keys = AuditKeys.from_config("b1:" + base64.b64encode(secrets.token_bytes(32)).decode())
    # Alternated and the best of three each: the machine's other load moves single runs a lot.
    plain = audited = float("inf")
    for _ in range(3):
        plain = min(plain, await transactions(db, count, audited=False))
        audited = min(audited, await transactions(db, count, audited=True))
    print(f"{db.backend}: {count} write transactions, {CONCURRENCY} at once: "
          f"{count / plain:,.0f}/s without a record, {count / audited:,.0f}/s with one "
          f"({(audited - plain) / count * 1e6:+.0f} µs each)")
    start = time.perf_counter()
    sealed = 0
    while (n := await seal(db, keys)):
        sealed += n
    took = time.perf_counter() - start
    print(f"{db.backend}: sealed {sealed} records in {took:.2f} s ({sealed / took:,.0f}/s, batches of 500)")
    start = time.perf_counter()
    report = await verify(db, keys)
    took = time.perf_counter() - start
    print(f"{db.backend}: verified {report.sealed} records in {took:.2f} s ({report.sealed / took:,.0f}/s); "
          f"intact: {report.intact}")
    await db.dispose()


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await run(f"sqlite+aiosqlite:///{tmp}/notify.db", count)
    if os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        await run(os.environ["DATABASE_URL"], count)


if __name__ == "__main__":
    sys.setswitchinterval(0.001)  # as the services run (shared.service.run_service)
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
