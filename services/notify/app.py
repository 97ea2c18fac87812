"""Notify service: offers to providers, the consent-gated handoff, and status back to the referrer."""

from __future__ import annotations

from fastapi import FastAPI

from services.notify import consumer
from services.notify.api import router
from services.notify.settings import NotifySettings
from services.notify.store import TABLES
from shared.service import Runtime, create_service_app


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    settings = settings or NotifySettings()

    async def setup(runtime: Runtime) -> None:
        consumer.register(runtime)

    app = create_service_app(
        settings=settings,
        title="Pathways notify",
        description="Offers cases to providers, releases consent-gated handoffs, keeps the referrer informed.",
        tables=TABLES,
        routers=[router],
        setup=setup,
    )
    app.state.provider_keys = {}
    return app
