"""Load the bundled sample directory and gazetteer into empty tables (development and demos)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sqlmodel import select

from services.directory.store import DistrictArea, Organisation, Service
from shared.auth import hash_api_key
from shared.db import Database
from shared.events import DirectoryChanged
from shared.outbox import enqueue

log = logging.getLogger(__name__)
SAMPLE_DIR = Path(__file__).parent / "sample"


async def load_sample_if_empty(db: Database) -> bool:
    """Load ``sample/directory.json`` and ``sample/gazetteer.json``; returns whether it loaded."""
    async with db.transaction() as session:
        if (await session.exec(select(Organisation).limit(1))).first() is not None:
            return False
        directory = json.loads((SAMPLE_DIR / "directory.json").read_text())
        gazetteer = json.loads((SAMPLE_DIR / "gazetteer.json").read_text())
        for org in directory["organisations"]:
            services = org.pop("services")
            sample_key = org.pop("sample_api_key", None)
            session.add(Organisation(**org, api_key_hash=hash_api_key(sample_key) if sample_key else None))
            for service in services:
                session.add(Service(**service, organisation_id=org["id"]))
        for row in gazetteer["districts"]:
            session.add(DistrictArea(**row))
        enqueue(session, DirectoryChanged(entity="organisation", entity_id="*", change="imported"))
    log.info("loaded the sample directory (%d organisations)", len(directory["organisations"]))
    return True
