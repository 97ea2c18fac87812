"""The router against the real directory (its snapshot over HTTP), as ops and a commissioner use it."""

from __future__ import annotations

import httpx

from services.launcher import System, load_or_create_secrets
from tests.conftest import EXAMPLES
from tests.e2e.conftest import poll

EHR_KEY = {"Authorization": "Bearer pw_sample_ehr_client"}


def ops_headers(system: System) -> dict[str, str]:
    return {"Authorization": f"Bearer {load_or_create_secrets(system.data_dir / 'secrets.env')['PATHWAYS_OPS_KEY']}"}


def test_ops_reads_why_a_referral_went_where_it_did(system: System) -> None:
    posted = httpx.post(f"{system.url('intake')}/fhir/Bundle", content=(EXAMPLES / "gp-referral.json").read_bytes(),
                        headers={**EHR_KEY, "Content-Type": "application/fhir+json"})
    assert posted.status_code == 202, posted.text
    case_id = posted.json()["id"]
    url = f"{system.url('router')}/cases/{case_id}/decision"
    response = poll(lambda: httpx.get(url, headers=ops_headers(system)), lambda r: r.status_code != 404)
    assert response.status_code == 200, response.text
    body = response.json()
    first = body["decisions"][0]
    assert [s["service_id"] for s in first["offer_to"]] == ["aire-valley-da-outreach"]
    assert first["offer_to"][0]["reasons"][:2] == ["serves Leeds (E08000035)", "community specialist service"]
    assert first["rule_version"] and first["directory_version"]
    assert body["note"].startswith("offered to ")
    assert httpx.get(url, headers=EHR_KEY).status_code == 401


def test_a_commissioner_asks_what_would_happen_to_a_deaf_survivor_in_ls7(system: System) -> None:
    question = {"summary": {"postcode_district": "LS7", "risk_band": "standard", "setting": "gp", "needs": ["bsl"]}}
    answer = httpx.post(f"{system.url('router')}/explain", json=question, headers=ops_headers(system))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # Whatever the sample directory holds, the answer is explained and nobody without BSL is offered.
    assert body["notes"][0].startswith("area: Leeds (E08000035)")
    for service in body["offer_to"]:
        assert service["service_type"] == "national-helpline" or "BSL provision" in service["reasons"]
    if body["outcome"] == "fallback":
        assert body["escalation"]
