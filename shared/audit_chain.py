"""The audit trail's hash chain: sealing records into it, and verifying it.

Why a sealer. An audited action inserts its record, unsealed, in its own transaction: nothing else
to wait for, so audited requests never queue behind one another for a chain head. The sealer, woken
after each audited commit and every ``audit_seal_seconds``, takes the chain head row (``AuditChain``)
— locked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so a replica whose peer is sealing simply skips;
on SQLite its write transaction is the file's one writer — and gives the unsealed records, oldest
first, the next sequence numbers: ``hash = HMAC-SHA256(key, canonical(record, seq, prev_hash))``.
The head moves compare-and-set, so two sealers can never both extend the chain from one head.

What the chain shows. ``verify`` recomputes every hash and follows every link: a record edited
(its content no longer matches its hash), deleted (a gap in the sequence, or a link to a hash no
record has, or records missing after the last one the head knows), or reordered (a record that only
verifies at another position) is reported by its sequence number and id. With an audit key, someone
who can write the database but lacks the key cannot recompute a consistent chain. Records not yet
sealed (seconds old) are outside the chain's protection; ``verify`` counts them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select

from shared.audit import AuditChain, AuditRecord
from shared.background import PeriodicWorker
from shared.db import Database
from shared.events import utcnow

log = logging.getLogger(__name__)

GENESIS = "0" * 64
BATCH = 500
# How far from its place a record is looked for when it does not verify where it is (a reorder).
REORDER_WINDOW = 64
# Findings reported before verify stops diagnosing (a wholesale rewrite needs no thousand lines).
MAX_FINDINGS = 100


class AuditKeyError(ValueError):
    pass


@dataclass(frozen=True)
class AuditKeys:
    """The HMAC keys by id; ``active_id`` seals new records ("" with no keys: plain SHA-256)."""

    keys: Mapping[str, bytes] = field(default_factory=dict)
    active_id: str = ""

    @classmethod
    def from_config(cls, spec: str, active_id: str = "") -> AuditKeys:
        """Parse ``"kid1:base64key,kid2:base64key"``; the active key is ``active_id``, else the first."""
        keys: dict[str, bytes] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key_id, _, encoded = item.partition(":")
            if not key_id or len(key_id) > 40:
                raise AuditKeyError("audit key ids are 1 to 40 characters")
            try:
                key = base64.b64decode(encoded, validate=True)
            except ValueError:
                raise AuditKeyError(f"audit key '{key_id}' is not valid base64") from None
            if len(key) < 32:
                raise AuditKeyError(f"audit key '{key_id}' must be at least 32 bytes")
            keys[key_id] = key
        if not keys:
            return cls()
        active = active_id or next(iter(keys))
        if active not in keys:
            raise AuditKeyError(f"active audit key id '{active}' is not among the audit keys")
        return cls(keys, active)

    @classmethod
    def of(cls, settings: Any) -> AuditKeys:
        return cls.from_config(settings.audit_keys.get_secret_value(), settings.audit_active_key_id)

    def digest(self, key_id: str, payload: bytes) -> str | None:
        """The record hash under ``key_id``; None when that key is not configured here."""
        if not key_id:
            return hashlib.sha256(payload).hexdigest()
        key = self.keys.get(key_id)
        return hmac.new(key, payload, hashlib.sha256).hexdigest() if key is not None else None


def canonical(row: AuditRecord, seq: int, prev_hash: str) -> bytes:
    """The bytes a record's hash covers: every field that says what happened, its position and the
    previous hash, as compact JSON with a fixed field order (version 1 of the encoding)."""
    return json.dumps(
        [1, seq, str(row.id), row.at.astimezone(UTC).isoformat(timespec="microseconds"), row.actor_kind,
         row.actor_id, row.action, str(row.case_id) if row.case_id else None, row.detail, row.reason, prev_hash],
        separators=(",", ":"), ensure_ascii=False,
    ).encode()


async def _head(db: Database) -> None:
    """Create the head row where a database has none yet (tables made without the migration)."""
    try:
        async with db.transaction(announce=False) as session:
            if await session.get(AuditChain, 1) is None:
                session.add(AuditChain(id=1))
    except IntegrityError:
        pass  # a peer made it


async def seal(db: Database, keys: AuditKeys, *, batch: int = BATCH) -> int:
    """Seal up to ``batch`` unsealed records into the chain; returns how many (0 also when another
    sealer holds the head). Safe to run from every replica at once."""
    async with db.session() as session:
        pending = (await session.exec(select(AuditRecord.id).where(col(AuditRecord.seq).is_(None)).limit(1))).first()
    if pending is None:
        return 0
    for _attempt in range(2):
        async with db.transaction(announce=False) as session:
            # SKIP LOCKED: a peer is sealing; it will take these records too, or the next round will.
            head = (await session.exec(select(AuditChain).where(AuditChain.id == 1)
                                       .with_for_update(skip_locked=True))).first()
            if head is None:
                exists = (await session.exec(select(func.count()).select_from(AuditChain))).one()
                if exists:
                    return 0
            else:
                rows = (await session.exec(
                    select(AuditRecord).where(col(AuditRecord.seq).is_(None))
                    .order_by(col(AuditRecord.at), col(AuditRecord.id)).limit(batch)
                )).all()
                if not rows:
                    return 0  # a peer sealed them between the look and the lock
                seq, prev = head.seq, head.hash
                chained: list[dict[str, Any]] = []
                for row in rows:
                    seq += 1
                    digest = keys.digest(keys.active_id, canonical(row, seq, prev))
                    assert digest is not None
                    chained.append({"b_id": row.id, "b_seq": seq, "b_prev": prev, "b_hash": digest})
                    prev = digest
                # One executemany: a statement per record costs a driver round trip each.
                table = AuditRecord.__table__  # type: ignore[attr-defined]
                connection = await session.connection()
                sealed = await connection.execute(
                    update(table)
                    .where(table.c.id == bindparam("b_id"), table.c.seq.is_(None))
                    .values(seq=bindparam("b_seq"), prev_hash=bindparam("b_prev"), hash=bindparam("b_hash"),
                            key_id=keys.active_id),
                    chained,
                )
                if sealed.rowcount not in (-1, len(chained)):  # -1: the driver does not count executemany
                    raise RuntimeError("an audit record was sealed by another sealer meanwhile")
                moved = await session.exec(  # type: ignore[call-overload]
                    update(AuditChain).where(col(AuditChain.id) == 1, col(AuditChain.seq) == head.seq,
                                             col(AuditChain.hash) == head.hash)
                    .values(seq=seq, hash=prev, updated_at=utcnow())
                )
                if moved.rowcount != 1:
                    raise RuntimeError("the audit chain head moved under the sealer")
                # The head's position and hash are no one's data: logged, they anchor the chain outside the
                # database (a truncated and re-hashed trail no longer matches the logs).
                log.info("audit chain sealed %d record(s); anchor %d:%s", len(rows), seq, prev)
                return len(rows)
        await _head(db)
    return 0


class AuditSealer:
    """Seals a service's audit records after each audited commit and periodically."""

    def __init__(self, db: Database, keys: AuditKeys, *, interval: float) -> None:
        self.db = db
        self.keys = keys
        self.worker = PeriodicWorker("audit-sealer", self._step, interval=interval, linger=0.25)
        db.on_audit.append(self.worker.wake)

    async def _step(self) -> bool:
        return await seal(self.db, self.keys) == BATCH

    def start(self) -> None:
        self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()


# ---- verification ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    kind: str  # edited, deleted, reordered, unverifiable
    seq: int | None
    record_id: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass
class ChainReport:
    sealed: int = 0
    unsealed: int = 0
    head_seq: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.findings


def _at(seq: int | None, record_id: object) -> str:
    return f"seq {seq} (id {record_id})"


@dataclass(frozen=True)
class Anchor:
    """A chain position and hash recorded outside the database (the sealer logs one at every seal)."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        seq, sep, digest = text.partition(":")
        if not sep or not seq.isdigit() or int(seq) < 1 or len(digest) != 64:
            raise ValueError(f"an anchor is SEQ:HASH (a sequence number and a 64-digit hash), not {text!r}")
        return cls(int(seq), digest.lower())


async def verify(db: Database, keys: AuditKeys, *, anchors: Sequence[Anchor] = (), page: int = 5000) -> ChainReport:
    """Check the whole chain, oldest first; read-only. Each finding names the record(s) concerned.

    ``anchors`` (from the sealer's log lines, kept outside the database) catch what the database alone
    cannot: the newest records deleted together with the chain head rewound to match."""
    report = ChainReport()
    async with db.session() as session:
        head = await session.get(AuditChain, 1)
        report.head_seq = head.seq if head else 0
        report.unsealed = (await session.exec(
            select(func.count()).select_from(AuditRecord).where(col(AuditRecord.seq).is_(None)))).one()

        async def holder_of(digest: str) -> AuditRecord | None:
            return (await session.exec(select(AuditRecord).where(AuditRecord.hash == digest))).first()

        previous: AuditRecord | None = None
        # A record after a moved one is not chained to it, necessarily: that is the move, reported once.
        previous_moved = False
        last_seq = 0
        while len(report.findings) < MAX_FINDINGS:
            rows = (await session.exec(
                select(AuditRecord).where(col(AuditRecord.seq) > last_seq).order_by(col(AuditRecord.seq)).limit(page)
            )).all()
            if not rows:
                break
            for row in rows:
                assert row.seq is not None
                report.sealed += 1
                finding = await _check(row, previous, keys, holder_of, links=not previous_moved)
                if finding is not None:
                    report.findings.append(finding)
                previous_moved = finding is not None and finding.kind == "reordered"
                previous, last_seq = row, row.seq
        if head is not None and len(report.findings) < MAX_FINDINGS:
            if head.seq > last_seq:
                report.findings.append(Finding(
                    "deleted", last_seq + 1, None,
                    f"records seq {last_seq + 1} to {head.seq} are missing: the chain head is at seq {head.seq}, "
                    f"the last record at seq {last_seq}"))
            elif head.seq < last_seq:
                report.findings.append(Finding(
                    "inserted", head.seq + 1, None,
                    f"records after seq {head.seq} were added outside the sealer (the last is seq {last_seq})"))
            elif previous is not None and previous.hash != head.hash:
                report.findings.append(Finding(
                    "edited", previous.seq, str(previous.id),
                    f"the last record, {_at(previous.seq, previous.id)}, is not the one the chain head was sealed with"))
        for anchor in anchors:
            held = (await session.exec(select(AuditRecord).where(AuditRecord.seq == anchor.seq))).first()
            if held is None:
                report.findings.append(Finding(
                    "deleted", anchor.seq, None,
                    f"seq {anchor.seq}, which the anchor records, is missing (the chain ends at seq {last_seq})"))
            elif held.hash != anchor.hash:
                report.findings.append(Finding(
                    "edited", anchor.seq, str(held.id),
                    f"{_at(anchor.seq, held.id)} is not the record the anchor records (hash {anchor.hash[:12]}…)"))
    return report


async def _check(row: AuditRecord, previous: AuditRecord | None, keys: AuditKeys, holder_of: Any, *,
                 links: bool = True) -> Finding | None:
    """The first thing wrong with ``row`` at its place after ``previous``, or None (``links``: whether
    to check that it was chained after ``previous``)."""
    assert row.seq is not None
    here = _at(row.seq, row.id)
    expected_seq = previous.seq + 1 if previous is not None and previous.seq is not None else 1
    expected_prev = previous.hash if previous is not None else GENESIS
    key_id = row.key_id or ""
    own = keys.digest(key_id, canonical(row, row.seq, row.prev_hash or ""))
    if own is None:
        return Finding("unverifiable", row.seq, str(row.id), f"{here} was sealed with audit key '{key_id}', "
                                                             "which is not configured here")
    if own != row.hash:
        # Does it verify at another position? Then it was moved there (or those before it were renumbered).
        for offset in range(1, REORDER_WINDOW + 1):
            for candidate in (row.seq - offset, row.seq + offset):
                if candidate >= 1 and keys.digest(key_id, canonical(row, candidate, row.prev_hash or "")) == row.hash:
                    before = await holder_of(row.prev_hash) if row.prev_hash != GENESIS else None
                    if before is None and row.prev_hash != GENESIS:
                        return Finding("deleted", row.seq, str(row.id),
                                       f"{here} was sealed as seq {candidate}, and the record it followed "
                                       f"(seq {candidate - 1}) is gone: records were deleted and renumbered")
                    return Finding("reordered", row.seq, str(row.id),
                                   f"{here} was sealed as seq {candidate}: it has been moved")
        return Finding("edited", row.seq, str(row.id), f"{here} does not match its hash: its content was changed")
    if row.seq != expected_seq:
        if row.seq > expected_seq:
            missing = (f"seq {expected_seq}" if row.seq == expected_seq + 1
                       else f"seq {expected_seq} to {row.seq - 1}")
            return Finding("deleted", expected_seq, None, f"{missing} missing, before {here}")
    if links and row.prev_hash != expected_prev:
        before = await holder_of(row.prev_hash) if row.prev_hash and row.prev_hash != GENESIS else None
        if before is not None:
            return Finding("reordered", row.seq, str(row.id),
                           f"{here} was chained after {_at(before.seq, before.id)}, not after seq {expected_seq - 1}")
        shown = _at(previous.seq, previous.id) if previous is not None else "the start of the chain"
        return Finding("edited", previous.seq if previous else None, str(previous.id) if previous else None,
                       f"{shown} is not the record {here} was chained after: it was replaced or re-hashed")
    return None


async def chain_state(db: Database) -> tuple[float, int]:
    """(age in seconds of the oldest unsealed record, 0 for none; the chain head's seq), for /metrics."""
    async with db.session() as session:
        oldest = (await session.exec(select(func.min(AuditRecord.at)).where(col(AuditRecord.seq).is_(None)))).one()
        head = await session.get(AuditChain, 1)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)  # SQLite hands aggregates back without the column's type
    age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
    return max(age, 0.0), head.seq if head is not None else 0


def start_sealer(db: Database, settings: Any) -> AuditSealer:
    keys = AuditKeys.of(settings)  # a malformed key ring stops the service starting: better than an unkeyed chain
    if not keys.active_id and settings.environment == "production":
        log.warning("PATHWAYS_AUDIT_KEYS is not set: the audit chain is plain SHA-256, which whoever can write "
                    "the database can recompute; set an audit key in production")
    sealer = AuditSealer(db, keys, interval=settings.audit_seal_seconds)
    sealer.start()
    return sealer
