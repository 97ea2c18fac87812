"""Key rotation for identifying data: re-encrypt every referral under the active key.

The procedure (docs/fhir-referral-profile.md, "Encryption at rest"): add the new key to the ring and make
it active, restart intake (new values now use it, old ones still decrypt with theirs), run
``pathways keys rotate``, and only then retire the old key.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import col, select

from services.intake.store import Referral
from shared.audit import record
from shared.auth import Caller, CallerKind
from shared.crypto import FieldCipher
from shared.db import Database


# Re-encrypting decrypts every referral's identifying data: the audit trail says who did, when and why.
KEY_ROTATION = Caller(CallerKind.service, "intake-key-rotation")


@dataclass(frozen=True)
class Rotation:
    rotated: int
    # Rows that changed under us (a concurrent write): they already use the active key or will be
    # picked up by the next run.
    skipped: int


async def rotate_identifying(db: Database, cipher: FieldCipher, *, batch: int = 200) -> Rotation:
    """Re-encrypt, batch by batch, every referral whose identifying data is under another key."""
    rotated = skipped = 0
    after = None
    prefix = f"{cipher.active_key_id}:"
    while True:
        async with db.transaction() as session:
            statement = (
                select(Referral.id, Referral.identifying)
                .where(~col(Referral.identifying).startswith(prefix, autoescape=True), col(Referral.purged_at).is_(None))
                .order_by(col(Referral.id))
                .limit(batch)
            )
            if after is not None:
                statement = statement.where(col(Referral.id) > after)
            rows = (await session.exec(statement)).all()
            for referral_id, sealed in rows:
                # Compare-and-set: a value intake rewrote meanwhile is left alone, never overwritten.
                result = await session.exec(  # type: ignore[call-overload]
                    update(Referral)
                    .where(col(Referral.id) == referral_id, col(Referral.identifying) == sealed)
                    .values(identifying=cipher.rotate(sealed, aad=referral_id.bytes))
                )
                if result.rowcount == 1:
                    rotated += 1
                else:
                    skipped += 1
            if rows:
                record(session, KEY_ROTATION, "re-encrypt-identifying-data", case_id=None,
                       detail=f"{len(rows)} referral(s) in this batch; to key {cipher.active_key_id}",
                       reason="encryption key rotation")
        if len(rows) < batch:
            return Rotation(rotated, skipped)
        after = rows[-1][0]
