"""Notify service: offers to providers, the consent-gated handoff, webhooks, deadlines, the ops queue."""

from __future__ import annotations

from cachetools import TTLCache
from fastapi import FastAPI

from services.notify import consumer
from services.notify.api import router
from services.notify.console.pages import router as console_router
from services.notify.deadlines import DeadlineTimer
from services.notify.inbox import router as inbox_router
from services.notify.migrations import MIGRATIONS
from services.notify.ops import router as ops_router
from services.notify.reports.api import router as reports_router
from services.notify.reports.pages import router as report_pages_router
from services.notify.settings import NotifySettings
from services.notify.store import offers_by_state
from services.notify.webhooks import DeliverySettings, WebhookDispatcher
from shared.audit_api import audit_router
from shared.events import DirectoryChanged, Event
from shared.ops_users import RemoteOpsVerifier
from shared.service import Runtime, create_service_app
from shared.web.pages import mount_assets, refuse_in_html


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    settings = settings or NotifySettings()

    async def setup(runtime: Runtime) -> None:
        channels = DeliverySettings(runtime)  # the providers' delivery settings, one cache for both users
        consumer.register(runtime, channels)
        runtime.metric_refreshers.append(lambda: offers_by_state(runtime.db))

        async def on_directory_changed(event: Event) -> None:
            if isinstance(event, DirectoryChanged) and event.entity in ("provider-key", "organisation"):
                app.state.provider_keys.clear()
                app.state.unknown_provider_keys.clear()  # a key just issued must not stay refused

        # Every replica holds its own cache, so every replica hears (the cache's expiry backs this up).
        await runtime.bus.broadcast([DirectoryChanged.subject], on_directory_changed)
        for worker in (WebhookDispatcher(runtime, channels).worker, DeadlineTimer(runtime).worker):
            worker.start()
            runtime.stop_hooks.append(worker.stop)

    app = create_service_app(
        settings=settings,
        title="Pathways notify",
        description="Offers cases to providers, releases consent-gated handoffs, keeps the referrer informed.",
        migrations=MIGRATIONS,
        routers=[
            router,
            ops_router,
            audit_router("notify"),
            inbox_router,
            reports_router,
            console_router,
            report_pages_router,
        ],
        setup=setup,
    )
    mount_assets(app)
    for prefix in ("/inbox", "/console", "/reports"):
        refuse_in_html(app, prefix)
    # Bounded like the negative cache; each entry also carries its own expiry (never past the key's).
    app.state.provider_keys = TTLCache(
        maxsize=settings.unknown_key_cache_size, ttl=max(settings.provider_key_cache_seconds, 1.0)
    )
    app.state.unknown_provider_keys = TTLCache(
        maxsize=settings.unknown_key_cache_size, ttl=settings.unknown_key_cache_seconds
    )
    app.state.verify_ops = RemoteOpsVerifier(settings.directory_url)
    return app
