"""Load the bundled sample directory and default gazetteer into empty tables (development and demos)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sqlmodel import select

from services.directory.domain import OrganisationCreate, ServiceCreate
from services.directory.store import AreaCentroid, DistrictArea, OpsUser, Organisation, Service
from services.directory.credentials import ProviderKeyCreate, add_provider_key
from shared.credentials import SAMPLE_DATA, Validity, issue
from shared.db import Database
from shared.events import DirectoryChanged, utcnow
from shared.outbox import enqueue

log = logging.getLogger(__name__)
SAMPLE_DIR = Path(__file__).parent / "sample"
DEVELOPMENT_OPS_USER = "dev-ops"


def sample_directory() -> tuple[list[tuple[OrganisationCreate, str | None]], list[ServiceCreate]]:
    """The sample organisations (with their sample API keys) and services, validated like ops input."""
    directory = json.loads((SAMPLE_DIR / "directory.json").read_text())
    organisations, services = [], []
    for raw in directory["organisations"]:
        org = dict(raw)
        org_services = org.pop("services")
        key = org.pop("sample_api_key", None)
        organisations.append((OrganisationCreate.model_validate(org), key))
        services.extend(ServiceCreate.model_validate({**s, "organisation_id": org["id"]}) for s in org_services)
    return organisations, services


async def load_sample_if_empty(db: Database) -> bool:
    """Load ``sample/directory.json`` and ``sample/gazetteer.json``; returns whether it loaded."""
    async with db.transaction() as session:
        if (await session.exec(select(Organisation).limit(1))).first() is not None:
            return False
        organisations, services = sample_directory()
        for org, _key in organisations:
            session.add(Organisation(**org.columns()))
        await session.flush()
        for org, key in organisations:
            if key:
                await add_provider_key(session, SAMPLE_DATA, org.id, ProviderKeyCreate(name="sample"), api_key=key)
        for service in services:
            session.add(Service(**service.columns()))
        if (await session.exec(select(DistrictArea).limit(1))).first() is None:
            gazetteer = json.loads((SAMPLE_DIR / "gazetteer.json").read_text())
            for row in gazetteer["districts"]:
                session.add(DistrictArea(**row))
            for row in gazetteer.get("centroids", []):
                session.add(AreaCentroid(**row))
        enqueue(session, DirectoryChanged(entity="organisation", entity_id="*", change="imported"))
    log.info("loaded the sample directory (%d organisations)", len(organisations))
    return True


async def add_development_ops_user(db: Database, key_hash: str) -> None:
    """The ops user ``dev-ops`` with the key ``pathways up`` keeps in .data/secrets.env (once)."""
    async with db.transaction() as session:
        if await session.get(OpsUser, DEVELOPMENT_OPS_USER) is None:
            user = OpsUser(id=DEVELOPMENT_OPS_USER, name="Development ops (sample)", key_hash=key_hash,
                           expires_at=Validity().expires_at(utcnow()))
            issue(session, SAMPLE_DATA, user, kind="ops-user", subject=f"ops user {DEVELOPMENT_OPS_USER}")
