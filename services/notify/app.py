"""Notify service: offers to providers, the consent-gated handoff, webhooks, deadlines, the ops queue."""

from __future__ import annotations

from cachetools import TTLCache
from fastapi import FastAPI

from services.notify import consumer
from services.notify.api import router
from services.notify.deadlines import DeadlineTimer
from services.notify.ops import router as ops_router
from services.notify.settings import NotifySettings
from services.notify.store import TABLES
from services.notify.webhooks import WebhookDispatcher
from shared.service import Runtime, create_service_app


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    settings = settings or NotifySettings()

    async def setup(runtime: Runtime) -> None:
        consumer.register(runtime)
        for worker in (WebhookDispatcher(runtime).worker, DeadlineTimer(runtime).worker):
            worker.start()
            runtime.stop_hooks.append(worker.stop)

    app = create_service_app(
        settings=settings,
        title="Pathways notify",
        description="Offers cases to providers, releases consent-gated handoffs, keeps the referrer informed.",
        tables=TABLES,
        routers=[router, ops_router],
        setup=setup,
    )
    app.state.provider_keys = TTLCache(maxsize=10_000, ttl=settings.provider_key_cache_seconds)
    return app
