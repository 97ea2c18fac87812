"""``pathways status``: how a running system is doing, at a glance.

Each service's readiness (``/readyz``) and outbox depth (from its ``/metrics``), and from JetStream
itself the event stream, every durable consumer's lag and the dead-letter depth. Only reads: nothing
is declared or changed on NATS, so it is safe against production.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from shared.bus import DLQ_STREAM, EVENTS_STREAM, Bus, ConsumerLag


@dataclass
class ServiceStatus:
    name: str
    url: str
    ready: bool = False
    # "ready", "not ready: database", "down (ConnectError)"…
    state: str = "down"
    checks: dict[str, bool] = field(default_factory=dict)
    outbox_depth: int | None = None


@dataclass
class NatsStatus:
    url: str
    reachable: bool = False
    error: str | None = None
    stream_messages: int | None = None
    dead_letters: int | None = None
    consumers: list[ConsumerLag] = field(default_factory=list)


@dataclass
class SystemStatus:
    services: list[ServiceStatus]
    nats: NatsStatus

    @property
    def healthy(self) -> bool:
        return self.nats.reachable and all(s.ready for s in self.services)

    def as_json(self) -> dict[str, Any]:
        return {"healthy": self.healthy, **asdict(self)}


async def service_status(client: httpx.AsyncClient, name: str, url: str) -> ServiceStatus:
    status = ServiceStatus(name, url)
    try:
        ready = await client.get(f"{url}/readyz")
        status.checks = dict(ready.json().get("checks", {}))
        status.ready = ready.status_code == 200
        failing = [check for check, ok in status.checks.items() if not ok]
        status.state = "ready" if status.ready else "not ready" + (f": {', '.join(failing)}" if failing else "")
        scraped = await client.get(f"{url}/metrics")
        if scraped.status_code == 200:
            status.outbox_depth = outbox_depth(scraped.text)
    except (httpx.HTTPError, ValueError) as exc:
        status.state = f"down ({type(exc).__name__})"
    return status


def outbox_depth(exposition: str) -> int | None:
    for family in text_string_to_metric_families(exposition):
        if family.name == "pathways_outbox_depth":
            return int(sum(sample.value for sample in family.samples))
    return None


async def nats_status(url: str, timeout: float) -> NatsStatus:
    status = NatsStatus(url)
    bus = Bus(url, name="pathways-status")
    try:
        await bus.connect_once(timeout=timeout)
        status.stream_messages = await bus.stream_depth(EVENTS_STREAM)
        status.dead_letters = await bus.stream_depth(DLQ_STREAM)
        status.consumers = sorted(await bus.consumer_lag(()), key=lambda c: c.consumer)
        status.reachable = True
    except Exception as exc:  # noqa: BLE001 - any failure is reported, never raised at the operator
        status.error = type(exc).__name__
    finally:
        await bus.close()
    return status


async def gather(services: dict[str, str], nats_url: str, *, timeout: float = 5.0) -> SystemStatus:
    async with httpx.AsyncClient(timeout=timeout) as client:
        found = await asyncio.gather(
            *(service_status(client, name, url) for name, url in services.items()), nats_status(nats_url, timeout)
        )
    return SystemStatus(services=list(found[:-1]), nats=found[-1])  # type: ignore[arg-type]


def render(status: SystemStatus, console: Console) -> None:
    services = Table(title="Services", title_justify="left")
    for column in ("service", "state", "url", "outbox depth"):
        services.add_column(column, justify="right" if column == "outbox depth" else "left")
    for s in status.services:
        colour = "green" if s.ready else "red"
        depth = "?" if s.outbox_depth is None else str(s.outbox_depth)
        services.add_row(s.name, f"[{colour}]{s.state}[/{colour}]", s.url, depth)
    console.print(services)

    nats = status.nats
    if not nats.reachable:
        console.print(f"[red]NATS {nats.url}: unreachable ({nats.error})[/red]")
        return
    dead = nats.dead_letters or 0
    console.print(
        f"NATS {nats.url}: stream {EVENTS_STREAM} holds {nats.stream_messages} message(s); "
        + (f"[red]{dead} dead letter(s) in {DLQ_STREAM}[/red] (pathways dlq replay)" if dead
           else "[green]no dead letters[/green]")
    )
    consumers = Table(title="Consumers (lag)", title_justify="left")
    for column in ("consumer", "pending", "ack pending", "redelivered"):
        consumers.add_column(column, justify="left" if column == "consumer" else "right")
    for c in nats.consumers:
        lagging = c.pending or c.ack_pending or c.redelivered
        name = f"[yellow]{c.consumer}[/yellow]" if lagging else c.consumer
        consumers.add_row(name, str(c.pending), str(c.ack_pending), str(c.redelivered))
    console.print(consumers)
