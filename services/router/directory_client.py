"""The router's in-memory copy of the directory.

Routing must not depend on the directory answering at the moment a case arrives: the router holds
the last good snapshot, indexed for matching, and replaces it when ``directory.changed`` says so (every
router process hears that event), on a timer as a safety net, and on first use. A failed refresh keeps
the copy it had.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from services.router.domain import DirectoryIndex
from shared.background import PeriodicWorker
from shared.directory_contract import DirectorySnapshot
from shared.geography import Gazetteer

log = logging.getLogger(__name__)


class DirectoryUnavailable(RuntimeError):
    """No directory copy is held and the directory cannot be read: the case waits and is retried."""


class DirectoryCache:
    def __init__(
        self, http: httpx.AsyncClient, base_url: str, token: str, *, refresh_seconds: float, timeout: float = 5.0
    ) -> None:
        self.http = http
        self.base_url = base_url
        self.token = token
        self.refresh_seconds = refresh_seconds
        self.timeout = timeout
        self.index: DirectoryIndex | None = None
        self.refreshes = 0
        self._lock = asyncio.Lock()
        # Until the first copy is held, retry every second; afterwards on a change or the timer.
        self._loop = PeriodicWorker(
            "router-directory-refresh", self._refresh_step,
            interval=lambda: 1.0 if self.index is None else self.refresh_seconds,
        )

    async def _get(self, path: str) -> bytes:
        try:
            response = await self.http.get(
                f"{self.base_url}{path}", headers={"Authorization": f"Bearer {self.token}"}, timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise DirectoryUnavailable(type(exc).__name__) from exc
        if response.status_code != 200:
            raise DirectoryUnavailable(f"directory answered {response.status_code}")
        return response.content

    async def fetch(self) -> DirectorySnapshot:
        return DirectorySnapshot.model_validate_json(await self._get("/internal/snapshot"))

    async def gazetteer_for(self, snapshot: DirectorySnapshot) -> Gazetteer | None:
        """The gazetteer copy for this snapshot: the one held while its version is unchanged (it changes only
        on an import), else a fresh read."""
        held = self.index.gazetteer if self.index is not None else None
        if snapshot.gazetteer_version is None:
            return held
        if held is not None and held.version == snapshot.gazetteer_version:
            return held
        return Gazetteer.model_validate_json(await self._get("/internal/gazetteer"))

    async def refresh(self) -> bool:
        """Replace the copy with a fresh snapshot; on failure keep the last good copy. Returns success."""
        async with self._lock:
            try:
                snapshot = await self.fetch()
                gazetteer = await self.gazetteer_for(snapshot)
            except (DirectoryUnavailable, ValueError) as exc:
                log.warning("directory snapshot unavailable (%s); routing from the copy held", type(exc).__name__)
                return False
            if not snapshot.services and self.index is not None and self.index.services:
                # An empty directory (a restore in progress, a fresh database) is not a better copy.
                log.warning("directory snapshot %s is empty; keeping copy %s", snapshot.version, self.index.version)
                return False
            self.index = DirectoryIndex.from_snapshot(snapshot, gazetteer)
            self.refreshes += 1
            log.info("directory copy %s: %d services", snapshot.version, len(snapshot.services))
            return True

    async def _refresh_step(self) -> bool:
        await self.refresh()
        return False  # one snapshot per wake-up: never "run again at once"

    async def current(self) -> DirectoryIndex:
        """The copy to route from: the one held, else a fresh read, else ``DirectoryUnavailable``."""
        if self.index is None:
            await self.refresh()
        if self.index is None:
            raise DirectoryUnavailable("no directory copy yet and the directory cannot be read")
        return self.index

    def changed(self) -> None:
        """The directory changed: refresh soon (many changes in a burst coalesce into one read)."""
        self._loop.wake()

    def start(self) -> None:
        self._loop.start()  # the first step reads the first copy at once

    async def stop(self) -> None:
        await self._loop.stop()
