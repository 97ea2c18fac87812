"""Router service: matches each case to the right services and explains why."""

from __future__ import annotations

from fastapi import FastAPI

from services.router import consumer
from services.router.api import router
from services.router.directory_client import DirectoryCache
from services.router.migrations import MIGRATIONS
from services.router.settings import RouterSettings
from shared.audit_api import audit_router
from shared.events import DirectoryChanged, Event
from shared.ops_users import RemoteOpsVerifier
from shared.service import Runtime, create_service_app


def create_app(settings: RouterSettings | None = None) -> FastAPI:
    settings = settings or RouterSettings()
    app: FastAPI

    async def setup(runtime: Runtime) -> None:
        cache = DirectoryCache(
            runtime.http, settings.directory_url, settings.service_credential.get_secret_value(),
            refresh_seconds=settings.directory_refresh_seconds, timeout=settings.directory_timeout_seconds,
        )
        state = consumer.Router(settings, cache)
        app.state.router = state

        async def on_directory_changed(_event: Event) -> None:
            cache.changed()

        # Every replica hears every change (a durable consumer would give each change to one of them).
        await runtime.bus.broadcast([DirectoryChanged.subject], on_directory_changed)
        cache.start()
        runtime.stop_hooks.append(cache.stop)
        consumer.register(runtime, state)

    app = create_service_app(
        settings=settings,
        title="Pathways router",
        description="Matches each case by area, risk, characteristics and preferences to local services, "
        "and explains every decision.",
        migrations=MIGRATIONS,
        routers=[router, audit_router("router")],
        setup=setup,
    )
    app.state.verify_ops = RemoteOpsVerifier(settings.directory_url)
    return app
