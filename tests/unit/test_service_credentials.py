"""Per-service credentials (issue 13): a callee tells which service called from the digest it holds, never
the credential itself; several digests per service are accepted at once, so a credential is rotated
without downtime."""

from __future__ import annotations

from shared.auth import hash_api_key, identify_service, service_credentials_setting


def test_the_callee_knows_which_service_called_and_holds_only_digests() -> None:
    configured = service_credentials_setting({"intake": "pw_svc_intake_a", "notify": "pw_svc_notify_a"})
    assert "pw_svc_notify_a" not in configured and hash_api_key("pw_svc_notify_a") in configured
    assert identify_service(configured, "pw_svc_notify_a") == "notify"
    assert identify_service(configured, "pw_svc_intake_a") == "intake"
    assert identify_service(configured, "pw_svc_notify_b") is None
    assert identify_service(configured, hash_api_key("pw_svc_notify_a")) is None  # the digest is no credential
    assert identify_service("", "anything") is None


def test_rotation_accepts_old_and_new_until_the_old_digest_is_removed() -> None:
    both = service_credentials_setting({"notify": ["pw_svc_notify_old", "pw_svc_notify_new"]})
    assert identify_service(both, "pw_svc_notify_old") == identify_service(both, "pw_svc_notify_new") == "notify"
    after = service_credentials_setting({"notify": ["pw_svc_notify_new"]})
    assert identify_service(after, "pw_svc_notify_old") is None


def test_malformed_entries_are_ignored_not_trusted() -> None:
    configured = f"notify:{hash_api_key('pw_svc_notify')}, router:short, :{hash_api_key('x')}, junk"
    assert identify_service(configured, "pw_svc_notify") == "notify"
    assert identify_service(configured, "x") is None
