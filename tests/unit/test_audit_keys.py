"""The audit chain's keys and canonical encoding: what a record's hash covers, and the key ring as
configured (``PATHWAYS_AUDIT_KEYS``)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from uuid import UUID

import pytest

from shared.audit import AuditRecord
from shared.audit_chain import AuditKeyError, AuditKeys, canonical

KEY_A = base64.b64encode(b"a" * 32).decode()
KEY_B = base64.b64encode(b"b" * 32).decode()
ROW = AuditRecord(id=UUID(int=7), at=datetime(2026, 11, 26, 23, 0, 0, 123456, tzinfo=UTC), actor_kind="ops",
                  actor_id="alex.khan", action="read-escalation", case_id=UUID(int=9), detail="escalation 1",
                  reason="ops review")


def test_the_hash_covers_every_field_the_position_and_the_previous_hash():
    base = canonical(ROW, 5, "0" * 64)
    changed = [ROW.model_copy(update={field: value}) for field, value in (
        ("actor_id", "sam.okafor"), ("action", "add-note"), ("case_id", UUID(int=10)), ("detail", "escalation 2"),
        ("reason", "other"), ("at", ROW.at.replace(microsecond=123457)), ("id", UUID(int=8)))]
    assert all(canonical(row, 5, "0" * 64) != base for row in changed)
    assert canonical(ROW, 6, "0" * 64) != base and canonical(ROW, 5, "1" * 64) != base
    # The same instant read back in another zone encodes the same.
    assert canonical(ROW.model_copy(update={"at": ROW.at.astimezone()}), 5, "0" * 64) == base


def test_records_are_keyed_by_the_active_key_and_older_keys_still_verify():
    keys = AuditKeys.from_config(f"new:{KEY_B},old:{KEY_A}")
    assert keys.active_id == "new"
    payload = canonical(ROW, 1, "0" * 64)
    assert keys.digest("new", payload) != keys.digest("old", payload) != AuditKeys().digest("", payload)
    assert keys.digest("gone", payload) is None  # a key no longer configured: unverifiable, not "edited"
    assert AuditKeys.from_config(f"old:{KEY_A},new:{KEY_B}", "new").active_id == "new"
    assert AuditKeys.from_config("").active_id == ""  # none configured: plain SHA-256


@pytest.mark.parametrize(("spec", "active"), [
    (f"k1:{base64.b64encode(b'short').decode()}", ""),  # under 32 bytes
    ("k1:not base64!", ""),
    (f":{KEY_A}", ""),
    (f"k1:{KEY_A}", "k2"),  # the active key is not in the ring
])
def test_a_malformed_key_ring_is_refused(spec, active):
    with pytest.raises(AuditKeyError):
        AuditKeys.from_config(spec, active)
