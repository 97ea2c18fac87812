"""The pure parts of shared.protection: which limit a credential gets, how it is read, what is configurable."""

from __future__ import annotations

import pytest

from shared.protection import DEFAULT_RATE_LIMITS, credential_kind, parse_rate_limits, presented_credential


@pytest.mark.parametrize(("credential", "kind"), [
    ("pw_ehr_abc", "ehr-client"), ("pw_at_abc", "ehr-client"), ("pw_sample_ehr_client", "ehr-client"),
    ("pw_prv_abc", "provider"), ("pw_ops_abc", "ops"), ("something-else", "caller"),
])
def test_each_kind_of_credential_gets_its_own_limit(credential: str, kind: str):
    assert credential_kind(credential) == kind


def test_the_credential_is_read_as_the_auth_dependencies_read_it():
    def scope(*headers: tuple[bytes, bytes]) -> dict:
        return {"headers": list(headers)}
    assert presented_credential(scope((b"authorization", b"Bearer pw_ehr_x"))) == "pw_ehr_x"
    assert presented_credential(scope((b"x-api-key", b"pw_prv_y"))) == "pw_prv_y"
    assert presented_credential(scope((b"accept", b"*/*"))) is None


def test_limits_are_configurable_per_kind_and_checked():
    limits = parse_rate_limits({"provider": "5/second;100/minute", "anonymous": ""})
    assert [(i.amount, i.get_expiry()) for i in limits["provider"]] == [(5, 1), (100, 60)]
    assert limits["anonymous"] == []  # turned off
    assert set(limits) == set(DEFAULT_RATE_LIMITS)
    with pytest.raises(ValueError, match="unknown rate-limit kinds"):
        parse_rate_limits({"providers": "5/second"})
