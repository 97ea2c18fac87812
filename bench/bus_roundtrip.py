"""Bus round trip: publish events with JetStream acks and consume them through a durable consumer
with the database inbox (SQLite), as every service does. Prints throughput and latency percentiles.

    .venv/bin/python bench/bus_roundtrip.py [events]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

from services.launcher import NatsServer
from shared.bus import Bus, Delivery
from shared.db import Database
from shared.events import CaseEscalated, Event


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats")
        server.start()
        db = Database(f"sqlite+aiosqlite:///{tmp}/bench.db", [])
        await db.create_all()
        bus = Bus(server.url, name="bench")
        await bus.start()
        await bus.wait_ready(10)
        sent: dict[str, float] = {}
        latencies: list[float] = []
        done = asyncio.Event()

        async def handler(event: Event, _delivery: Delivery) -> None:
            async def work(_session) -> None:
                return None

            await db.run_once("bench", event.event_id, work)
            latencies.append(time.perf_counter() - sent[str(event.event_id)])
            if len(latencies) == count:
                done.set()

        bus.consume("bench", [CaseEscalated.subject], handler)
        start = time.perf_counter()
        for i in range(count):
            event = CaseEscalated(case_id=uuid4(), reason=f"bench {i}")
            sent[str(event.event_id)] = time.perf_counter()
            await bus.publish(event)
        publish_seconds = time.perf_counter() - start
        await asyncio.wait_for(done.wait(), 120)
        total_seconds = time.perf_counter() - start
        await bus.close()
        await db.dispose()
        server.stop()

    ms = sorted(latency * 1000 for latency in latencies)
    print(f"events:                 {count}")
    print(f"publish (acked) rate:   {count / publish_seconds:,.0f} events/s")
    print(f"end-to-end rate:        {count / total_seconds:,.0f} events/s (publish → consume → inbox commit → ack)")
    print(f"latency p50 / p99 / max: {statistics.median(ms):.1f} / {ms[int(len(ms) * 0.99) - 1]:.1f} / {ms[-1]:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
