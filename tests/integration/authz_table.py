"""The authorisation matrix's expected answers (issue 13), one row per route of every service.

``tests/integration/test_authz_matrix.py`` reads every route from each app's ``app.routes``: a route with
no row here fails the test, so a new route must say here who may call it. Add rows for new routes (web
pages, the audit query API, reports) beside the others, with the helper that names the route's role.

Callers (each holds a real credential in a running system):
- ``none``: no credential at all;
- ``referrer``: the sample EHR client (ODS Y00001, Y00002, RX001); ``referrer_other``: another EHR client,
  for ODS Z99999 only;
- ``provider``: the sample provider Aire Valley DA; ``provider_other``: Kinara (another organisation);
- ``ops``: an ops user; ``commissioner``: an ops-user credential with the commissioner role (reports only);
- ``service``: the service credential the route admits (internal routes), else notify's;
  ``service_wrong``: a service credential the route does not admit.

A row's ``path`` fills ``{case}`` (the sample referral, offered to Aire Valley DA), ``{offer}``,
``{service}``, ``{org}`` (aire-valley-da), ``{service_type}`` and ``{missing}`` (a random UUID) from the
world the test builds. Rows are called in this order; the provider accepts its offer before the handoff
rows (notify's and intake's) are called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CALLERS = ("none", "referrer", "referrer_other", "provider", "provider_other", "ops", "commissioner", "service",
           "service_wrong")


@dataclass(frozen=True)
class Row:
    path: str
    expect: dict[str, int]
    body: Any = None  # JSON body, or "consent" / "referral" / "message" for the FHIR examples
    # Internal routes: the service whose credential the ``service`` caller holds, and a wrong one.
    service: str = "notify"
    wrong_service: str = "directory"
    form: dict[str, str] | None = field(default=None)


def everyone(status: int = 200) -> dict[str, int]:
    """A public route: every caller gets the same answer (credentials are not needed, nor refused)."""
    return {caller: status for caller in CALLERS}


def ops_only(status: int) -> dict[str, int]:
    """Ops routes: only an ops user. A commissioner is known but refused (403); any other credential is
    not an ops credential (401)."""
    return {**everyone(401), "ops": status, "commissioner": 403}


def referrer_only(status: int, other: int) -> dict[str, int]:
    """FHIR routes for EHR clients: ``other`` is what a client of other ODS organisations gets."""
    return {**everyone(401), "referrer": status, "referrer_other": other}


def provider_only(status: int, other: int = 404) -> dict[str, int]:
    """Provider routes: another organisation's offer is "not found" (offers cannot be probed)."""
    return {**everyone(401), "provider": status, "provider_other": other}


def reports(status: int) -> dict[str, int]:
    """Reports (aggregates, small numbers suppressed): ops users and commissioners alike."""
    return {**everyone(401), "ops": status, "commissioner": status}


def web_realm(prefix: str) -> dict[tuple[str, str], Row]:
    """A realm's own routes: sign-in page (200), sign-in and sign-out without the form's CSRF token (403),
    quick exit (303, to the neutral site)."""
    return {("GET", f"{prefix}/sign-in"): Row(f"{prefix}/sign-in", everyone(200)),
            ("POST", f"{prefix}/sign-in"): Row(f"{prefix}/sign-in", everyone(403), form={}),
            ("POST", f"{prefix}/sign-out"): Row(f"{prefix}/sign-out", everyone(403), form={}),
            ("GET", f"{prefix}/exit"): Row(f"{prefix}/exit", everyone(303))}


def internal(status: int) -> dict[str, int]:
    """Internal routes: only the named services' credentials; an API key of any kind is not one (403)."""
    return {**everyone(403), "none": 401, "service": status}


def web_page(status: int = 303) -> dict[str, int]:
    """Web pages (the provider inbox, the ops console, the reports): a session cookie from the page's own
    sign-in, never a bearer credential, so every API caller is sent to sign in (303). Who may see what
    once signed in is tested with sessions in tests/integration/test_notify_inbox.py (another provider's
    offer: 404) and tests/integration/test_console_and_reports.py (a commissioner: never the console)."""
    return everyone(status)


PROBES = {
    ("GET", "/openapi.json"): Row("/openapi.json", everyone()),
    ("GET", "/metrics"): Row("/metrics", everyone()),
    ("GET", "/healthz"): Row("/healthz", everyone()),
    ("GET", "/readyz"): Row("/readyz", everyone()),
}


TABLE: dict[str, dict[tuple[str, str], Row]] = {
    "directory": {
        **PROBES,
        ("GET", "/ops/audit/directory"): Row("/ops/audit/directory", ops_only(200)),
        ("GET", "/areas/{area}"): Row("/areas/LS7", everyone()),
        ("GET", "/gazetteer"): Row("/gazetteer", everyone()),
        ("GET", "/services"): Row("/services?area=BD20", everyone()),
        ("GET", "/services/{service_id}"): Row("/services/{service}", everyone()),
        ("GET", "/organisations"): Row("/organisations", everyone()),
        ("GET", "/organisations/{organisation_id}"): Row("/organisations/{org}", everyone()),
        ("GET", "/organisations/{organisation_id}/services"): Row("/organisations/{org}/services", everyone()),
        ("GET", "/hsds"): Row("/hsds", everyone()),
        ("GET", "/fhir/HealthcareService"): Row("/fhir/HealthcareService", everyone()),
        ("GET", "/fhir/HealthcareService/{service_id}"): Row("/fhir/HealthcareService/{service}", everyone()),
        ("POST", "/organisations"): Row("/organisations", ops_only(422), body={}),
        ("PUT", "/organisations/{organisation_id}"): Row("/organisations/nobody", ops_only(422), body={}),
        ("DELETE", "/organisations/{organisation_id}"): Row("/organisations/nobody", ops_only(404)),
        ("POST", "/services"): Row("/services", ops_only(422), body={}),
        ("PUT", "/services/{service_id}"): Row("/services/nobody", ops_only(422), body={}),
        ("PATCH", "/services/{service_id}/capacity"): Row("/services/nobody/capacity", ops_only(404), body={}),
        ("DELETE", "/services/{service_id}"): Row("/services/nobody", ops_only(404)),
        ("POST", "/hsds"): Row("/hsds", ops_only(200), body={}),  # an empty import imports nothing
        ("POST", "/organisations/{organisation_id}/keys"): Row("/organisations/nobody/keys", ops_only(422), body={}),
        ("GET", "/organisations/{organisation_id}/keys"): Row("/organisations/{org}/keys", ops_only(200)),
        ("POST", "/organisations/{organisation_id}/keys/{name}/rotate"):
            Row("/organisations/nobody/keys/sample/rotate", ops_only(404)),
        ("POST", "/organisations/{organisation_id}/keys/{name}/{action}"):
            Row("/organisations/nobody/keys/sample/revoke", ops_only(404)),
        ("POST", "/ops-users"): Row("/ops-users", ops_only(422), body={}),
        ("GET", "/ops-users"): Row("/ops-users", ops_only(200)),
        ("POST", "/ops-users/{user_id}/rotate"): Row("/ops-users/nobody/rotate", ops_only(404)),
        ("POST", "/ops-users/{user_id}/{action}"): Row("/ops-users/nobody/revoke", ops_only(404)),
        ("GET", "/internal/organisations/{organisation_id}/delivery"):
            Row("/internal/organisations/{org}/delivery", internal(200), service="notify", wrong_service="router"),
        ("GET", "/internal/snapshot"): Row("/internal/snapshot", internal(200), service="router",
                                           wrong_service="notify"),
        ("GET", "/internal/gazetteer"): Row("/internal/gazetteer", internal(200), service="router",
                                            wrong_service="intake"),
        ("POST", "/internal/providers/authenticate"):
            Row("/internal/providers/authenticate", internal(404), body={"api_key": "pw_prv_unknown"},
                service="notify", wrong_service="router"),
        ("POST", "/internal/ops/authenticate"):
            Row("/internal/ops/authenticate", internal(404), body={"api_key": "pw_ops_unknown"},
                service="intake", wrong_service="directory"),
    },
    "router": {
        **PROBES,
        ("GET", "/ops/audit/router"): Row("/ops/audit/router", ops_only(200)),
        ("GET", "/cases/{case_id}/decision"): Row("/cases/{case}/decision", ops_only(200)),
        ("POST", "/explain"): Row("/explain", ops_only(422), body={}),
        ("GET", "/internal/reports/geography"): Row("/internal/reports/geography", internal(200), service="notify",
                                                    wrong_service="directory"),
    },
    "notify": {
        **PROBES,
        ("GET", "/ops/audit/notify"): Row("/ops/audit/notify", ops_only(200)),
        ("GET", "/offers"): Row("/offers", provider_only(200, other=200)),  # each sees only its own
        ("GET", "/offers/{offer_id}"): Row("/offers/{offer}", provider_only(200)),
        ("POST", "/offers/{offer_id}/accept"): Row("/offers/{offer}/accept", provider_only(200)),
        # A real answer, so another organisation reaches the ownership check: the accepted offer cannot be
        # declined (409) by its provider; for another organisation it does not exist.
        ("POST", "/offers/{offer_id}/decline"):
            Row("/offers/{offer}/decline", provider_only(409), body={"reason": "no-capacity"}),
        ("GET", "/offers/{offer_id}/handoff"): Row("/offers/{offer}/handoff", provider_only(200)),
        ("POST", "/offers/{offer_id}/outcomes"):
            Row("/offers/{offer}/outcomes", provider_only(200), body={"outcome": "contact-made"}),
        ("GET", "/ops/escalations"): Row("/ops/escalations", ops_only(200)),
        ("GET", "/ops/escalations/{escalation_id}"): Row("/ops/escalations/{missing}", ops_only(404)),
        ("POST", "/ops/escalations/{escalation_id}/assign"):
            Row("/ops/escalations/{missing}/assign", ops_only(422), body={}),
        ("POST", "/ops/escalations/{escalation_id}/notes"):
            Row("/ops/escalations/{missing}/notes", ops_only(422), body={}),
        ("GET", "/ops/webhook-endpoints"): Row("/ops/webhook-endpoints", ops_only(200)),
        ("POST", "/ops/webhook-endpoints/{organisation_id}/enable"):
            Row("/ops/webhook-endpoints/nobody/enable", ops_only(404)),
        # The provider inbox: the sign-in page is public; its form, like sign-out, needs the CSRF token
        # of the sign-in page's session (403 without); the quick exit answers anyone with a redirect.
        ("GET", "/inbox/sign-in"): Row("/inbox/sign-in", web_page(200)),
        ("POST", "/inbox/sign-in"): Row("/inbox/sign-in", web_page(403), form={"api_key": "pw_sample_aire_valley_da"}),
        ("POST", "/inbox/sign-out"): Row("/inbox/sign-out", web_page(403), form={}),
        ("GET", "/inbox/exit"): Row("/inbox/exit", web_page()),
        ("GET", "/inbox"): Row("/inbox", web_page()),
        ("GET", "/inbox/offers/{offer_id}"): Row("/inbox/offers/{offer}", web_page()),
        ("GET", "/inbox/offers/{offer_id}/handoff"): Row("/inbox/offers/{offer}/handoff", web_page()),
        ("POST", "/inbox/offers/{offer_id}/accept"): Row("/inbox/offers/{offer}/accept", web_page(), form={}),
        ("POST", "/inbox/offers/{offer_id}/decline"):
            Row("/inbox/offers/{offer}/decline", web_page(), form={"reason": "no-capacity"}),
        ("POST", "/inbox/offers/{offer_id}/outcomes"):
            Row("/inbox/offers/{offer}/outcomes", web_page(), form={"outcome": "contact-made"}),
        ("GET", "/report-tables"): Row("/report-tables", reports(200)),
        ("GET", "/report-tables/{key}.csv"): Row("/report-tables/offers.csv", reports(200)),
        # The ops console (ops users sign in) and the reports (ops users and commissioners sign in).
        **web_realm("/console"),
        **{(method, path): Row(path.format(escalation_id="{missing}", organisation_id="{org}",
                                           service_id="{service}", name="sample", action="revoke",
                                           owner="clients", credential_id="nobody", key="offers"),
                               web_page(), form={} if method == "POST" else None)
           for method, path in (
               ("GET", "/console"), ("GET", "/console/escalations"), ("GET", "/console/escalations/{escalation_id}"),
               ("POST", "/console/escalations/{escalation_id}/assign"),
               ("POST", "/console/escalations/{escalation_id}/notes"), ("GET", "/console/dead-letters"),
               ("POST", "/console/dead-letters/replay"), ("GET", "/console/webhooks"),
               ("POST", "/console/webhooks/{organisation_id}/enable"), ("GET", "/console/directory"),
               ("POST", "/console/directory/organisations"), ("GET", "/console/directory/{organisation_id}"),
               ("POST", "/console/directory/services"), ("POST", "/console/directory/services/{service_id}/capacity"),
               ("POST", "/console/directory/{organisation_id}/edit"),
               ("POST", "/console/directory/services/{service_id}/edit"),
               ("POST", "/console/directory/services/{service_id}/coverage"), ("GET", "/console/credentials"),
               ("POST", "/console/credentials/clients"), ("POST", "/console/credentials/ops-users"),
               ("POST", "/console/credentials/providers/{organisation_id}/keys"),
               ("POST", "/console/credentials/providers/{organisation_id}/keys/{name}/{action}"),
               ("POST", "/console/credentials/{owner}/{credential_id}/{action}"),
               ("GET", "/reports"), ("GET", "/reports/{key}.csv"))},
        **web_realm("/reports"),
    },
    "intake": {
        **PROBES,
        ("GET", "/ops/audit/intake"): Row("/ops/audit/intake", ops_only(200)),
        # The same Bundle again: its first answer replayed (202) for its client; another client may not
        # refer for Y00001.
        ("POST", "/fhir/Bundle"): Row("/fhir/Bundle", referrer_only(202, other=403), body="referral"),
        ("POST", "/fhir/$process-message"): Row("/fhir/$process-message", referrer_only(422, other=422), body={}),
        ("PUT", "/fhir/Consent/{task_id}"): Row("/fhir/Consent/{case}", referrer_only(200, other=404), body="consent"),
        ("GET", "/fhir/Task/{task_id}"): Row("/fhir/Task/{case}", referrer_only(200, other=404)),
        ("GET", "/fhir/Task"): Row("/fhir/Task", referrer_only(200, other=200)),  # each sees only its own
        ("GET", "/fhir/metadata"): Row("/fhir/metadata", everyone()),
        ("POST", "/fhir/Subscription"): Row("/fhir/Subscription", referrer_only(422, other=422), body={}),
        ("GET", "/fhir/Subscription/{subscription_id}"):
            Row("/fhir/Subscription/{missing}", referrer_only(404, other=404)),
        ("DELETE", "/fhir/Subscription/{subscription_id}"):
            Row("/fhir/Subscription/{missing}", referrer_only(404, other=404)),
        ("POST", "/ops/clients"): Row("/ops/clients", ops_only(422), body={}),
        ("GET", "/ops/clients"): Row("/ops/clients", ops_only(200)),
        ("GET", "/ops/clients/{client_id}"): Row("/ops/clients/sample-ehr", ops_only(200)),
        ("PUT", "/ops/clients/{client_id}/keys"): Row("/ops/clients/nobody/keys", ops_only(404), body={}),
        ("POST", "/ops/clients/{client_id}/rotate"): Row("/ops/clients/nobody/rotate", ops_only(404)),
        ("POST", "/ops/clients/{client_id}/{action}"): Row("/ops/clients/nobody/revoke", ops_only(404)),
        # The credential is the signed assertion in the form, not a header: an empty form is refused alike.
        ("POST", "/oauth2/token"): Row("/oauth2/token", everyone(400), form={}),
        # Identifying data: notify only, for the organisation that accepted (the provider did, above).
        ("GET", "/internal/referrals/{case_id}/handoff"):
            Row("/internal/referrals/{case}/handoff?organisation_id={org}&service_type={service_type}"
                "&consent_version=1", internal(200), service="notify", wrong_service="router"),
    },
}
