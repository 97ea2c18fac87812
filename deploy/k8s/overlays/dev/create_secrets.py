"""The dev overlay's Secrets, for a laptop cluster: prints them as one Kubernetes List (JSON) to pipe
into kubectl. Nothing is written to the repository; the values are kept in .data/k8s-dev-secrets.env
(as `make run` keeps its own), so running this again gives the same passwords and keys.

    .venv/bin/python deploy/k8s/overlays/dev/create_secrets.py | kubectl apply -n pathways-dev -f -

The sample ops user's key (dev-ops, for the ops APIs) is printed to stderr; only its hash goes into
the cluster.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Any

from services.launcher import (
    SERVICES,
    accepted_service_credentials,
    load_or_create_secrets,
    service_credential_variable,
)
from shared.auth import hash_api_key

SECRETS_FILE = Path(".data") / "k8s-dev-secrets.env"


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "stringData": data}


def _with_passwords(values: dict[str, str], path: Path) -> dict[str, str]:
    """Add the NATS users' and PostgreSQL's passwords to the kept values (made once)."""
    wanted = ["POSTGRES_PASSWORD", *(f"NATS_PASSWORD_{s.upper()}" for s in SERVICES)]
    missing = [name for name in wanted if name not in values]
    if missing:
        values.update({name: secrets.token_urlsafe(24) for name in missing})
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return values


def dev_secrets(path: Path = SECRETS_FILE) -> list[dict[str, Any]]:
    values = _with_passwords(load_or_create_secrets(path), path)
    database = f"postgresql+asyncpg://pathways:{values['POSTGRES_PASSWORD']}@postgres:5432/pathways"
    users = ", ".join(
        f'{{user: {s}, password: "{values[f"NATS_PASSWORD_{s.upper()}"]}"}}' for s in SERVICES
    )
    documents = [
        _secret("postgres", {"password": values["POSTGRES_PASSWORD"]}),
        _secret("nats-auth", {"auth.conf": f"authorization {{ users: [ {users} ] }}\n"}),
    ]
    for service in SERVICES:
        data = {
            "DATABASE_URL": database,
            "NATS_URL": f"nats://{service}:{values[f'NATS_PASSWORD_{service.upper()}']}@nats:4222",
            # Its own credential for internal calls, and the digests of every service's it accepts.
            "PATHWAYS_SERVICE_CREDENTIAL": values[service_credential_variable(service)],
            "PATHWAYS_SERVICE_CREDENTIALS": accepted_service_credentials(values),
            # The web pages' session cookie keys (notify serves the provider inbox).
            "PATHWAYS_WEB_SESSION_KEYS": values["PATHWAYS_WEB_SESSION_KEYS"],
        }
        if service == "directory":
            # The sample's ops user "dev-ops" signs in with the key printed on stderr.
            data["DIRECTORY_SAMPLE_OPS_KEY_HASH"] = hash_api_key(values["PATHWAYS_OPS_KEY"])
        data["PATHWAYS_AUDIT_KEYS"] = values["PATHWAYS_AUDIT_KEYS"]  # each seals its audit trail's hash chain
        if service == "intake":
            data["INTAKE_ENCRYPTION_KEYS"] = values["INTAKE_ENCRYPTION_KEYS"]
            data["INTAKE_ACTIVE_KEY_ID"] = values["INTAKE_ACTIVE_KEY_ID"]
        documents.append(_secret(f"pathways-{service}", data))
    return documents


def main() -> None:
    documents = dev_secrets()
    json.dump({"apiVersion": "v1", "kind": "List", "items": documents}, sys.stdout, indent=2)
    ops_key = load_or_create_secrets(SECRETS_FILE)["PATHWAYS_OPS_KEY"]
    print(f"\nops key of the sample ops user dev-ops (kept in {SECRETS_FILE}): {ops_key}", file=sys.stderr)


if __name__ == "__main__":
    main()
