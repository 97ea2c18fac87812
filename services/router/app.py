"""Router service: matches each case to the right services and explains why."""

from __future__ import annotations

from fastapi import FastAPI

from services.router import consumer
from services.router.api import router
from services.router.settings import RouterSettings
from services.router.store import TABLES
from shared.service import Runtime, create_service_app


def create_app(settings: RouterSettings | None = None) -> FastAPI:
    settings = settings or RouterSettings()

    async def setup(runtime: Runtime) -> None:
        consumer.register(runtime)

    return create_service_app(
        settings=settings,
        title="Pathways router",
        description="Matches each case by area, risk, characteristics and preferences to local services.",
        tables=TABLES,
        routers=[router],
        setup=setup,
    )
