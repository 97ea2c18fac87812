"""What shared.protection costs per request (rate limits, body limit, security headers), in process.

Calls a bare ASGI app directly (no HTTP, no client), with and without the middleware, so the figure
is the middleware's own: microseconds per request with a credential (hashed, counted against its
kind), without one (counted per address), and with many distinct callers already counted (the
in-memory store's expiry sweep visits every key). Not part of the test run.

    .venv/bin/python bench/protection_overhead.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from types import SimpleNamespace

from shared.protection import Protection, RateLimits, problem_refusal, security_headers


async def bare_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def scope_for(app_state: SimpleNamespace, credential: str | None, address: str) -> dict:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    if credential is not None:
        headers.append((b"authorization", f"Bearer {credential}".encode()))
    return {"type": "http", "path": "/fhir/Bundle", "method": "POST", "headers": headers,
            "client": (address, 40000), "app": SimpleNamespace(state=app_state)}


async def run(app, scopes: list[dict]) -> float:  # type: ignore[no-untyped-def]
    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        pass

    start = time.perf_counter()
    for scope in scopes:
        await app(scope, receive, send)
    return (time.perf_counter() - start) / len(scopes) * 1e6


async def main(requests: int) -> None:
    state = SimpleNamespace(
        rate_limits=RateLimits(storage="async+memory://", strategy="fixed-window", overrides={
            "ehr-client": "1000000/second", "anonymous": "1000000/second", "caller": "1000000/second"}),
        security_headers=security_headers(development=False), refusal=problem_refusal, max_body_bytes=1_000_000)
    protected = Protection(bare_app)
    one_client = [scope_for(state, "pw_ehr_" + "k" * 43, "203.0.113.1")] * requests
    anonymous = [scope_for(state, None, "203.0.113.1")] * requests
    many = [scope_for(state, f"pw_ehr_{i:043d}", f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}")
            for i in range(requests)]
    rows = [
        ("bare app, no middleware", await run(bare_app, one_client)),
        ("protection, one EHR client", await run(protected, one_client)),
        ("protection, anonymous (per address)", await run(protected, anonymous)),
        (f"protection, {requests} distinct clients", await run(protected, many)),
    ]
    print(f"{'case':45} {'µs/request':>10}")
    for name, micros in rows:
        print(f"{name:45} {micros:10.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().requests))
