"""The bare peer for bench/intake_load.py: a FastAPI endpoint on the same uvicorn settings as the
services (``shared.service.run_service``) that parses the same JSON and publishes it to JetStream,
waiting for the ack. What intake does beyond this (validation, encryption, the database) is its cost.

    python bench/support/peer.py --port PORT --nats nats://127.0.0.1:4222
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import nats
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from nats.js.api import StreamConfig

STREAM = "BENCH_PEER"
SUBJECT = "bench.peer.referral"


def create_app(nats_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connection = await nats.connect(nats_url)
        app.state.js = connection.jetstream()
        await app.state.js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT], max_msgs=100_000))
        try:
            yield
        finally:
            await connection.drain()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/fhir/Bundle", status_code=202)
    async def receive(request: Request) -> dict[str, Any]:
        raw = await request.body()
        body = json.loads(raw)
        if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            raise HTTPException(400, "not a Bundle")
        event_id = str(uuid4())
        await request.app.state.js.publish(SUBJECT, raw, headers={"Nats-Msg-Id": event_id})
        return {"resourceType": "Task", "id": event_id, "status": "requested"}

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nats", required=True)
    args = parser.parse_args()
    # The same call as shared.service.run_service makes for every Pathways service.
    uvicorn.run(create_app(args.nats), host="127.0.0.1", port=args.port, log_level="info", lifespan="on",
                log_config=None, access_log=False)
