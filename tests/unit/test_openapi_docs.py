"""The checked-in OpenAPI documents (docs/openapi/) are what the code serves; `make openapi` rewrites them."""

from __future__ import annotations

import json

import pytest

from services.openapi_docs import APPS, DOCS, documents


# How each service's callers authenticate (issue 13): API keys (bearer or X-API-Key) everywhere; service
# credentials on the internal routes; OAuth2 client credentials (private_key_jwt) for EHR clients.
SCHEMES = {"intake": {"bearer", "apiKey", "serviceCredential", "oauth2ClientCredentials"},
           "directory": {"bearer", "apiKey", "serviceCredential"}, "router": {"bearer", "apiKey", "serviceCredential"},
           "notify": {"bearer", "apiKey"}}


@pytest.fixture(scope="module")
def served() -> dict[str, str]:
    return documents()


def test_checked_in_documents_are_current(served: dict[str, str]) -> None:
    for name, text in served.items():
        assert (DOCS / f"{name}.json").read_text() == text, "run `make openapi` and commit docs/openapi/"


def test_every_error_answer_has_its_media_type_and_schema(served: dict[str, str]) -> None:
    for name, text in served.items():
        document = json.loads(text)
        assert set(document["components"]["securitySchemes"]) == SCHEMES[name], name
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                for code, response in operation["responses"].items():
                    if int(code) >= 400:
                        media = "application/fhir+json" if name == "intake" and path.startswith("/fhir") \
                            else "application/problem+json"
                        if path == "/oauth2/token" and code in ("400", "401"):
                            media = "application/json"  # RFC 6749's error format
                        assert list(response["content"]) == [media], (name, method, path, code)
                if operation.get("security") and {} not in operation["security"]:
                    assert {"401", "403"} <= set(operation["responses"]), (name, method, path)
    assert sorted(p.stem for p in DOCS.glob("*.json")) == sorted(APPS)


def test_intake_describes_the_referral_bundle_with_the_profile_and_an_example(served: dict[str, str]) -> None:
    intake = json.loads(served["intake"])
    body = intake["paths"]["/fhir/Bundle"]["post"]["requestBody"]
    assert "docs/fhir-referral-profile.md" in body["description"]
    content = body["content"]["application/fhir+json"]
    assert content["schema"] == {"$ref": "#/components/schemas/Bundle"}
    (example,) = content["examples"].values()
    assert example["value"]["resourceType"] == "Bundle" and example["value"]["entry"]
