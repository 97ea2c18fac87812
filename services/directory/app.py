"""Directory service: local and by-and-for providers, their services, coverage and the gazetteer."""

from __future__ import annotations

from fastapi import FastAPI

from services.directory.api import internal, ops, router
from services.directory.gazetteer import load_reference_if_empty
from services.directory import credentials
from services.directory.sample import add_development_ops_user, load_sample_if_empty
from services.directory.search import SearchIndex
from services.directory.settings import DirectorySettings
from services.directory.store import TABLES
from shared.service import Runtime, create_service_app


def create_app(settings: DirectorySettings | None = None) -> FastAPI:
    settings = settings or DirectorySettings()

    async def setup(runtime: Runtime) -> None:
        runtime.db.on_commit.append(app.state.search_index.invalidate)
        # Local authority names and the LAD → ICB table are reference data, not sample data.
        await load_reference_if_empty(runtime.db)
        if settings.load_sample:
            await load_sample_if_empty(runtime.db)
            if settings.sample_ops_key_hash:
                await add_development_ops_user(runtime.db, settings.sample_ops_key_hash)

    app = create_service_app(
        settings=settings,
        title="Pathways directory",
        description="Local and by-and-for domestic abuse services, what they serve and where.",
        tables=TABLES,
        routers=[router, ops, internal, credentials.ops, credentials.internal],
        setup=setup,
    )
    app.state.search_index = SearchIndex()
    app.state.verify_ops = credentials.verify_ops
    return app
