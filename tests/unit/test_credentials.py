"""The credential lifecycle's pure parts: state by the clock and revocation, and how long keys live."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from shared.auth import hash_api_key
from shared.credentials import MAX_VALID_DAYS, CredentialState, KeyCredential, Validity, new_key
from shared.events import utcnow


def credential(**changes: object) -> KeyCredential:
    now = utcnow()
    return KeyCredential(name="case-system", key_hash="0" * 64, created_at=now, expires_at=now + timedelta(days=1),
                         **changes)


def test_a_key_is_active_until_it_expires_or_is_revoked():
    now = utcnow()
    assert credential().state(now) is CredentialState.active and credential().usable(now)
    assert credential().state(now + timedelta(days=2)) is CredentialState.expired
    assert not credential().usable(now + timedelta(days=2))
    # Revocation is final, whatever the expiry says.
    assert credential(revoked_at=now).state(now) is CredentialState.revoked


def test_validity_is_bounded_and_new_keys_are_random_and_stored_as_digests():
    now = utcnow()
    assert Validity().expires_at(now) == now + timedelta(days=365)
    for days in (0, MAX_VALID_DAYS + 1):
        with pytest.raises(ValidationError):
            Validity(valid_days=days)
    first, second = new_key("pw_ehr"), new_key("pw_ehr")
    assert first.api_key != second.api_key and first.api_key.startswith("pw_ehr_")
    assert first.key_hash == hash_api_key(first.api_key) and first.api_key not in first.key_hash
