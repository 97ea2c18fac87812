"""The immigration firewall: immigration status may help find a service that accepts survivors with no
recourse to public funds, and is never passed to a statutory body.

A survivor with insecure immigration status risks more than a lost referral if a statutory agency learns
it (data sharing with immigration enforcement is the fear that keeps many from disclosing at all). The
router uses the need to match services (``accepts_nrpf``); what a statutory body is offered, polls, or is
handed off never carries it. Pathways' statutory service types are the MARAC (police, children's and
adult social care and health around one table); the list is the place to add another.
"""

from __future__ import annotations

from shared.events import CaseSummary
from shared.reference import Need, ServiceType

STATUTORY_SERVICE_TYPES = frozenset({ServiceType.marac.value})
IMMIGRATION_NEEDS = frozenset({Need.no_recourse_to_public_funds.value})
# Words that tell of immigration status in a routing reason (never sent to a statutory body either).
_IMMIGRATION_WORDS = ("recourse to public funds", "nrpf", "immigration")


def is_statutory(service_type: str) -> bool:
    return service_type in STATUTORY_SERVICE_TYPES


def summary_for(summary: CaseSummary, service_type: str) -> CaseSummary:
    """The case summary a service of this type may see: a statutory body's has no immigration status."""
    if not is_statutory(service_type) or not IMMIGRATION_NEEDS & set(summary.needs):
        return summary
    return summary.model_copy(update={"needs": tuple(n for n in summary.needs if n not in IMMIGRATION_NEEDS)})


def reasons_for(reasons: tuple[str, ...] | list[str], service_type: str) -> list[str]:
    """The routing reasons a service of this type may see (none that speaks of immigration status)."""
    if not is_statutory(service_type):
        return list(reasons)
    return [r for r in reasons if not any(word in r.lower() for word in _IMMIGRATION_WORDS)]
