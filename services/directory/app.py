"""Directory service: local and by-and-for providers, their services, coverage and the gazetteer."""

from __future__ import annotations

from fastapi import FastAPI

from services.directory.api import internal, ops, router
from services.directory import credentials
from services.directory.default_gazetteer import default_gazetteer
from services.directory.sample import add_development_ops_user, load_sample_if_empty
from services.directory.search import SearchIndex
from services.directory.migrations import MIGRATIONS
from services.directory.settings import DirectorySettings
from shared.audit_api import audit_router
from shared.service import Runtime, create_service_app


def create_app(settings: DirectorySettings | None = None) -> FastAPI:
    settings = settings or DirectorySettings()

    async def setup(runtime: Runtime) -> None:
        runtime.db.on_commit.append(app.state.search_index.invalidate)
        # The shipped gazetteer for all of England is reference data, not sample data: held in memory.
        default_gazetteer()
        if settings.load_sample:
            await load_sample_if_empty(runtime.db)
            if settings.sample_ops_key_hash:
                await add_development_ops_user(runtime.db, settings.sample_ops_key_hash)

    app = create_service_app(
        settings=settings,
        title="Pathways directory",
        description="Local and by-and-for domestic abuse services, what they serve and where.",
        migrations=MIGRATIONS,
        routers=[router, ops, internal, credentials.ops, credentials.internal, audit_router("directory")],
        setup=setup,
    )
    app.state.search_index = SearchIndex()
    app.state.verify_ops = credentials.verify_ops
    return app
