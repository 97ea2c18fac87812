"""What asking the directory on every provider request costs (issue 13: a revoked key must stop at the next
call, so notify no longer trusts a key for 60 s). Times ``GET /offers`` on notify in-process, with the
directory's real ``/internal/providers/authenticate`` served on a local port (a real HTTP round trip and
an indexed look-up), with no positive cache (the default) and with a 60 s one; and a guessed key, which
the negative cache answers without a directory call after the first try.

    .venv/bin/python bench/provider_auth.py [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from support import PROVIDER_KEY

from services.directory.app import create_app as create_directory
from services.directory.settings import DirectorySettings
from services.launcher import NatsServer, free_port
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from tests.harness import running, service_auth
from tests.servers import LocalServer


async def timed(client: httpx.AsyncClient, key: str, requests: int) -> list[float]:
    samples = []
    for _ in range(requests):
        start = time.perf_counter()
        await client.get("/offers", headers={"Authorization": f"Bearer {key}"})
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def show(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    print(f"{label:<44} median {statistics.median(ordered):6.2f} ms   p95 {ordered[int(len(ordered) * 0.95)]:6.2f} ms")


async def main(requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nats = NatsServer(Path(tmp) / "nats", port=free_port())
        nats.start()
        try:
            directory_app = create_directory(DirectorySettings(
                nats_url=nats.url, database_url=f"sqlite+aiosqlite:///{tmp}/directory.db",
                **service_auth("directory"), load_sample=True))
            directory = LocalServer(directory_app, lifespan="on")
            await directory.start()
            try:
                for cache in (0.0, 60.0):
                    notify_app = create_notify(NotifySettings(
                        nats_url=nats.url, database_url=f"sqlite+aiosqlite:///{tmp}/notify-{cache}.db",
                        **service_auth("notify"), directory_url=directory.url, provider_key_cache_seconds=cache))
                    async with running(notify_app) as notify:
                        await timed(notify, PROVIDER_KEY, 20)  # warm up
                        show(f"GET /offers, provider key cache {cache:.0f} s", await timed(notify, PROVIDER_KEY, requests))
                        show("GET /offers, a guessed key (negative cache)", await timed(notify, "pw_prv_guess", requests))
            finally:
                await directory.stop()
        finally:
            nats.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    asyncio.run(main(parser.parse_args().requests))
