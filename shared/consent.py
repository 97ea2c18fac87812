"""The consent gate: one rule, used by the router (whom to offer), by notify (whether to release) and by
intake (whether to hand over the identifying data it holds)."""

from __future__ import annotations

from datetime import datetime

from shared.events import ConsentScope, ConsentState, ConsentStatus
from shared.reference import ServiceType


def consent_scope_for(service_type: str, *, by_and_for: bool) -> ConsentScope:
    """Which consent scope a handoff to this kind of service needs."""
    if service_type == ServiceType.marac:
        return ConsentScope.marac
    if service_type in (ServiceType.idva, ServiceType.health_idva):
        return ConsentScope.idva
    if by_and_for:
        return ConsentScope.by_and_for
    return ConsentScope.specialist_da


def consent_covers(
    consent: ConsentState,
    *,
    service_type: str,
    by_and_for: bool,
    organisation_id: str,
    now: datetime,
) -> tuple[bool, str]:
    """May this provider receive the case now? The answer and its reason in plain words.

    Consent must be granted, unexpired, and cover this organisation or this kind of service; the
    MARAC alone may also receive a case on a recorded high-risk safeguarding basis.
    """
    if service_type == ServiceType.marac and consent.safeguarding_basis:
        return True, "recorded high-risk safeguarding basis (MARAC)"
    if consent.status is not ConsentStatus.granted:
        return False, f"consent {consent.status}"
    if consent.expires_at is not None and consent.expires_at <= now:
        return False, "consent expired"
    if organisation_id in consent.organisations:
        return True, "consent names this organisation"
    scope = consent_scope_for(service_type, by_and_for=by_and_for)
    if scope in consent.scopes:
        return True, f"consent covers {scope}"
    return False, f"consent does not cover {scope}"


# The RFC 9457 problem type of a release refused for consent (intake to notify), so that a caller can tell
# it from a refused credential, which has the same status code.
CONSENT_REFUSAL = "https://pathways.example.org/problems/consent-refusal"
# Intake has not (yet) heard that the named organisation accepted the case: notify may ask again shortly,
# as the acceptance crosses the bus.
NOT_ACCEPTED = "https://pathways.example.org/problems/not-accepted"


def release_verdict(
    consent: ConsentState,
    *,
    service_type: str,
    by_and_for: bool,
    organisation_id: str,
    now: datetime,
) -> tuple[int, str]:
    """May identifying data go to this provider now? An HTTP status and the reason: 200 means yes,
    410 means consent was withdrawn (stop all contact), 403 means this consent does not reach it."""
    permitted, reason = consent_covers(
        consent, service_type=service_type, by_and_for=by_and_for, organisation_id=organisation_id, now=now
    )
    if permitted:
        return 200, reason
    if consent.status is ConsentStatus.withdrawn:
        return 410, "The survivor withdrew consent: do not make contact."
    return 403, f"The handoff cannot be released: {reason}."
