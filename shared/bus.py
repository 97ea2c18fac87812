"""The JetStream bus: the one place where events are published and consumed.

- Streams are declared idempotently at start-up (create, or update when they exist), with limits
  (``StreamLimits``): events hold case summaries (risk, district, shared characteristics), so they are
  kept only as long as configured, never for ever.
- Publishing sends ``Nats-Msg-Id`` = ``event_id`` and waits for the JetStream ack, so a retried
  publish inside the stream's duplicate window is stored once.
- Consumers are durable pull consumers. A message is acked only after its handler returned, and the
  handler returns only after its own commit. A failure is nak'ed with a delay chosen from the delivery
  count (the consumer's ``backoff`` applies only to ack timeouts); after ``max_deliver`` failed
  deliveries the message is copied to ``dlq.<subject>`` and terminated, so ops can inspect and replay it.
- The connection retries forever and pings often; a fetch loop re-binds its subscription when it
  notices the connection was re-established, because pull subscriptions can stall after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, DiscardPolicy, StorageType, StreamConfig
from opentelemetry import trace

from shared.events import Event, decode_event
from shared.telemetry import extract_context, inject_headers, safe_attributes, tracer

log = logging.getLogger(__name__)

EVENTS_STREAM = "PATHWAYS"
EVENTS_SUBJECTS = ("referral.>", "case.>", "directory.>")
DLQ_STREAM = "PATHWAYS_DLQ"
DLQ_PREFIX = "dlq"
DEFAULT_BACKOFF = (1.0, 5.0, 15.0, 60.0, 300.0)

Handler = Callable[[Event, "Delivery"], Awaitable[None]]
BroadcastHandler = Callable[[Event], Awaitable[None]]
# Handles a fetched batch at once (one database transaction for all, see ``Runtime.consume``) and says,
# per event and in order, whether it failed: ``None`` for done, or the error (that message alone is
# retried or dead-lettered as a single handler's failure would be).
BatchHandler = Callable[[Sequence["Received"]], Awaitable[Sequence[BaseException | None]]]


DAY = 86400.0


@dataclass(frozen=True)
class StreamLimits:
    """What JetStream keeps, and for how long.

    ``events_max_age``: an event (and the case summary in it) is deleted this long after it was stored,
    consumed or not; consumers handle events in seconds, so this bounds retention, not delivery, unless a
    consumer is down for that long (a dead consumer is an alert long before). ``dead_letters_max_age``:
    dead letters wait this long for ops to replay them (the dead-letter depth alerts meanwhile).
    ``max_bytes``: a full stream refuses new messages (the outbox keeps them and retries) rather than
    dropping old ones that may not have been consumed. ``max_msg_size``: events are small; a huge one is
    a bug.
    """

    events_max_age: float = 14 * DAY
    dead_letters_max_age: float = 30 * DAY
    max_bytes: int = 1 << 30
    max_msg_size: int = 1 << 20


@dataclass(frozen=True)
class Outgoing:
    """A message to publish as it is stored (the outbox's rows): subject, body, id, trace headers."""

    subject: str
    data: bytes
    msg_id: str
    headers: dict[str, str] | None = None


def _ack_error(ack: asyncio.Future[object]) -> BaseException | None:
    if ack.cancelled():
        return TimeoutError("no JetStream ack in time")
    return ack.exception()


@dataclass(frozen=True)
class Delivery:
    """What a handler may want to know about the message beyond its event."""

    subject: str
    num_delivered: int
    stream_sequence: int


@dataclass(frozen=True)
class Received:
    """One decoded message of a batch: the event, its delivery, and the trace context it came with."""

    durable: str
    event: Event
    delivery: Delivery
    headers: dict[str, str] | None

    def start_span(self) -> trace.Span:
        """The consumer span for this event, in the trace the message came with. Not current and not
        ended: the caller makes it current while the event's work runs (``trace.use_span``; events it
        enqueues carry it) and ends it once the event is settled."""
        return tracer().start_span(
            f"consume {self.delivery.subject}",
            context=extract_context(self.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes=safe_attributes(
                messaging__system="nats",
                messaging__destination__name=self.delivery.subject,
                messaging__consumer__group__name=self.durable,
                pathways__event_id=self.event.event_id,
            ),
        )


@dataclass
class ConsumerSpec:
    durable: str
    subjects: Sequence[str]
    handler: Handler
    max_deliver: int = 5
    backoff: Sequence[float] = DEFAULT_BACKOFF
    ack_wait: float = 30.0
    batch: int = 10
    batch_handler: BatchHandler | None = None
    processed: int = field(default=0, init=False)
    dead_lettered: int = field(default=0, init=False)

    def delay_for(self, num_delivered: int) -> float:
        return self.backoff[min(num_delivered - 1, len(self.backoff) - 1)]


@dataclass(frozen=True)
class ConsumerLag:
    """How far a durable consumer is behind (JetStream's consumer info)."""

    consumer: str
    pending: int  # in the stream, not yet delivered
    ack_pending: int  # delivered, not yet acknowledged
    redelivered: int  # delivered more than once and not yet acknowledged


@dataclass(frozen=True)
class DeadLetter:
    """A message a consumer gave up on: where it was going, who failed, how (the body stays in the stream)."""

    sequence: int
    subject: str
    consumer: str
    error: str
    deliveries: int


class BusNotConnected(RuntimeError):
    pass


class Bus:
    """A NATS JetStream connection with Pathways' streams, publishing rules and consumer loops."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        duplicate_window: float = 120.0,
        stream_replicas: int | None = None,
        tls_ca_file: str | None = None,
        limits: StreamLimits | None = None,
    ) -> None:
        self.url = url
        self.name = name
        self.duplicate_window = duplicate_window
        # None (a CLI, a test probe) keeps an existing stream's replica count: only the services,
        # configured like the cluster they run on, decide it.
        self.stream_replicas = stream_replicas
        # Likewise: None keeps an existing stream's limits (and gives a new one the defaults).
        self.limits = limits
        # The CA that signed the NATS servers' certificates (tls:// URLs); the system's CAs otherwise.
        self.tls_ca_file = tls_ca_file
        self.nc: NATS | None = None
        self._js: tuple[NATS, nats.js.JetStreamContext] | None = None
        self._consumers: list[ConsumerSpec] = []
        self._broadcasts: list[tuple[tuple[str, ...], BroadcastHandler]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self._stopping = False
        self._generation = 0  # bumped on every (re)connect; fetch loops re-bind when it changes

    # ---- connection -------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.nc is not None and self.nc.is_connected

    async def start(self) -> None:
        """Connect in the background (retrying until NATS answers), declare streams, run consumers."""
        self._tasks.append(asyncio.create_task(self._connect_forever(), name=f"{self.name}-bus-connect"))

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def _connect_forever(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                self.nc = await nats.connect(
                    servers=self._servers(),
                    name=self.name,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    ping_interval=5,
                    max_outstanding_pings=3,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    tls=self._tls(),
                )
                await self.declare_streams()
                break
            except Exception as exc:  # noqa: BLE001 - any failure here means "try again"
                log.warning("bus %s: cannot reach NATS yet (%s); retrying", self.name, type(exc).__name__)
                if self.nc is not None:
                    with contextlib.suppress(Exception):
                        await self.nc.close()
                    self.nc = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if self._stopping:
            return
        self._generation += 1
        self._ready.set()
        for spec in self._consumers:
            self._spawn_consumer(spec)
        for subjects, handler in list(self._broadcasts):
            await self._subscribe_broadcast(subjects, handler)

    async def connect_once(self, *, timeout: float = 5.0) -> None:
        """Connect without declaring streams or starting consumers (for tools that only look)."""
        self.nc = await nats.connect(
            servers=self._servers(),
            name=self.name,
            connect_timeout=timeout,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=self._on_error,
            tls=self._tls(),
        )

    def _servers(self) -> list[str]:
        return [url.strip() for url in self.url.split(",")]

    def _tls(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.tls_ca_file) if self.tls_ca_file else None

    async def _on_error(self, exc: Exception) -> None:
        log.warning("bus %s: %s", self.name, type(exc).__name__)

    async def _on_disconnected(self) -> None:
        log.warning("bus %s: disconnected from NATS", self.name)

    async def _on_reconnected(self) -> None:
        self._generation += 1
        log.info("bus %s: reconnected to NATS", self.name)

    async def close(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)
        self._ready.clear()

    @property
    def js(self) -> nats.js.JetStreamContext:
        if self.nc is None or not self.nc.is_connected:
            raise BusNotConnected("not connected to NATS")
        # One context per connection: building one per publish showed in the profile (issue 9).
        if self._js is None or self._js[0] is not self.nc:
            self._js = (self.nc, self.nc.jetstream(timeout=5))
        return self._js[1]

    async def declare_streams(self) -> None:
        """Create or update the event stream and the dead-letter stream (with ``stream_replicas`` copies and
        ``limits``: an existing stream gets the configured retention at start-up)."""
        limits = self.limits or StreamLimits()
        for config in (
            StreamConfig(
                name=EVENTS_STREAM,
                subjects=list(EVENTS_SUBJECTS),
                storage=StorageType.FILE,
                duplicate_window=self.duplicate_window,
                max_age=limits.events_max_age,
            ),
            StreamConfig(
                name=DLQ_STREAM,
                subjects=[f"{DLQ_PREFIX}.>"],
                storage=StorageType.FILE,
                duplicate_window=self.duplicate_window,
                max_age=limits.dead_letters_max_age,
            ),
        ):
            # JetStream refuses a duplicate window longer than the stream keeps its messages.
            config.duplicate_window = min(self.duplicate_window, config.max_age or self.duplicate_window)
            config.max_bytes = limits.max_bytes
            config.max_msg_size = limits.max_msg_size
            config.discard = DiscardPolicy.NEW
            assert self.nc is not None
            js = self.nc.jetstream(timeout=5)
            try:
                existing = await js.stream_info(config.name)
            except nats.js.errors.NotFoundError:
                config.num_replicas = self.stream_replicas or 1
                with contextlib.suppress(nats.js.errors.BadRequestError):  # lost a race with a peer
                    await js.add_stream(config)
            else:
                config.num_replicas = self.stream_replicas or existing.config.num_replicas
                if self.limits is None:
                    for name in ("max_age", "max_bytes", "max_msg_size", "discard", "duplicate_window"):
                        setattr(config, name, getattr(existing.config, name))
                await js.update_stream(config)

    # ---- state, for metrics and ``pathways status`` --------------------------------------------
    async def consumer_lag(self, durables: Sequence[str] | None = None) -> list[ConsumerLag]:
        """Lag of the named durable consumers (default: this process's), or of every consumer when ``()``."""
        js = self.js
        if durables is None:
            durables = [spec.durable for spec in self._consumers]
        infos = (
            [await js.consumer_info(EVENTS_STREAM, durable) for durable in durables]
            if durables
            else await js.consumers_info(EVENTS_STREAM)
        )
        return [
            ConsumerLag(
                info.name, info.num_pending or 0, info.num_ack_pending or 0, info.num_redelivered or 0
            )
            for info in infos
        ]

    async def stream_depth(self, stream: str) -> int:
        """Messages held in a stream (the dead-letter stream's depth is what ops must act on)."""
        info = await self.js.stream_info(stream)
        return int(info.state.messages)

    # ---- publishing ---------------------------------------------------------------------------
    async def publish(self, event: Event, *, headers: dict[str, str] | None = None) -> None:
        """Publish an event and wait for JetStream to store it (raises when it cannot)."""
        await self.publish_raw(
            event.subject, event.model_dump_json().encode(), msg_id=str(event.event_id), headers=headers
        )

    async def publish_raw(
        self, subject: str, data: bytes, *, msg_id: str, headers: dict[str, str] | None = None
    ) -> None:
        with self._producer_span(subject, msg_id, headers):
            await self.js.publish(subject, data, headers=self._headers(msg_id, headers), timeout=5)

    async def publish_many(
        self, messages: Sequence[Outgoing], *, timeout: float = 5.0
    ) -> list[BaseException | None]:
        """Publish messages in order and wait for their JetStream acks together: one wait for the lot
        instead of a round trip each (the outbox relay's batches, issue 9). Returns, per message,
        ``None`` once JetStream stored it, or the error; an ack that does not come within ``timeout``
        is a ``TimeoutError`` (publishing that message again is safe: ``Nats-Msg-Id``)."""
        js = self.js
        sent: list[tuple[trace.Span, asyncio.Future[object] | BaseException]] = []
        for message in messages:
            # Sent one after the other on the one connection, so JetStream stores them in this order.
            with self._producer_span(
                message.subject, message.msg_id, message.headers, end_on_exit=False
            ) as span:
                try:
                    ack: asyncio.Future[object] | BaseException = await js.publish_async(
                        message.subject, message.data, headers=self._headers(message.msg_id, message.headers)
                    )
                except Exception as exc:  # noqa: BLE001 - reported for this message
                    ack = exc
            sent.append((span, ack))
        waiting = [ack for _, ack in sent if isinstance(ack, asyncio.Future)]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=timeout)
            for ack in late:  # frees nats-py's slot for it; the message is published again later
                ack.cancel()
        outcomes: list[BaseException | None] = []
        for span, ack in sent:
            error = ack if isinstance(ack, BaseException) else _ack_error(ack)
            if error is not None:
                span.record_exception(error, attributes={"exception.message": type(error).__name__})
            span.end()
            outcomes.append(error)
        return outcomes

    def _producer_span(
        self, subject: str, msg_id: str, headers: dict[str, str] | None, *, end_on_exit: bool = True
    ) -> contextlib.AbstractContextManager[trace.Span]:
        # An outbox row carries the trace context of the request that wrote it: continue that trace.
        parent = extract_context(headers) if headers and "traceparent" in headers else None
        return tracer().start_as_current_span(
            f"publish {subject}",
            context=parent,
            kind=trace.SpanKind.PRODUCER,
            attributes=safe_attributes(
                messaging__system="nats", messaging__destination__name=subject, pathways__event_id=msg_id
            ),
            end_on_exit=end_on_exit,
        )

    @staticmethod
    def _headers(msg_id: str, headers: dict[str, str] | None) -> dict[str, str]:
        """The message's headers with the current trace context and ``Nats-Msg-Id``."""
        all_headers = inject_headers(
            {k: v for k, v in (headers or {}).items() if k not in ("traceparent", "tracestate")}
        )
        all_headers["Nats-Msg-Id"] = msg_id
        return all_headers

    # ---- consuming ----------------------------------------------------------------------------
    def consume(
        self,
        durable: str,
        subjects: Sequence[str],
        handler: Handler,
        *,
        max_deliver: int = 5,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        ack_wait: float = 30.0,
        batch_handler: BatchHandler | None = None,
    ) -> ConsumerSpec:
        """Register a durable pull consumer; it starts once the bus is connected. With ``batch_handler``
        each fetched batch is handed over at once (``handler`` is then not called)."""
        spec = ConsumerSpec(
            durable,
            tuple(subjects),
            handler,
            max_deliver,
            tuple(backoff),
            ack_wait,
            batch_handler=batch_handler,
        )
        self._consumers.append(spec)
        if self._ready.is_set():
            self._spawn_consumer(spec)
        return spec

    async def broadcast(self, subjects: Sequence[str], handler: BroadcastHandler) -> None:
        """Hear every event on ``subjects`` in *this* process, whatever other replicas do.

        A durable consumer shares its messages among replicas; a cache that every replica holds needs
        each of them to hear each change, so this is a plain (core NATS) subscription instead: at most
        once, and only while connected (the client re-subscribes after a reconnect). Use it for hints
        such as "refresh your copy", backed by a periodic refresh; never for work that must not be lost.
        """
        entry = (tuple(subjects), handler)
        self._broadcasts.append(entry)
        if self._ready.is_set():
            await self._subscribe_broadcast(*entry)

    async def _subscribe_broadcast(self, subjects: tuple[str, ...], handler: BroadcastHandler) -> None:
        async def on_message(msg: Msg) -> None:
            try:
                await handler(decode_event(msg.subject, msg.data))
            except Exception as exc:  # noqa: BLE001 - a hint that fails must not stop the subscription
                log.warning(
                    "bus %s: broadcast handler for %s failed: %s", self.name, msg.subject, type(exc).__name__
                )

        assert self.nc is not None
        for subject in subjects:
            await self.nc.subscribe(subject, cb=on_message)

    def _spawn_consumer(self, spec: ConsumerSpec) -> None:
        self._tasks.append(asyncio.create_task(self._consume_loop(spec), name=f"{self.name}-{spec.durable}"))

    async def _bind(self, spec: ConsumerSpec) -> nats.js.JetStreamContext.PullSubscription:
        js = self.js
        # Create-or-update first: pull_subscribe would ignore a changed config for an existing durable.
        await js.add_consumer(
            EVENTS_STREAM,
            ConsumerConfig(
                name=spec.durable,
                durable_name=spec.durable,
                filter_subjects=list(spec.subjects),
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=spec.ack_wait,
                # Unlimited on the server: this loop decides when a message is dead, so that it is
                # always copied to the dead-letter stream rather than silently left undelivered.
                max_deliver=-1,
            ),
        )
        return await js.pull_subscribe_bind(durable=spec.durable, stream=EVENTS_STREAM)

    async def _consume_loop(self, spec: ConsumerSpec) -> None:
        sub = None
        bound_generation = -1
        while not self._stopping:
            try:
                if sub is None or bound_generation != self._generation:
                    if sub is not None:
                        with contextlib.suppress(Exception):
                            await sub.unsubscribe()
                    bound_generation = self._generation
                    sub = await self._bind(spec)
                try:
                    msgs = await sub.fetch(batch=spec.batch, timeout=1)
                except TimeoutError:
                    # nats-py raises its own TimeoutError or, when the deadline runs out between its
                    # probes, a plain asyncio.TimeoutError: both only mean "nothing to fetch".
                    continue
                if spec.batch_handler is not None:
                    await self._process_batch(spec, msgs)
                else:
                    for msg in msgs:
                        await self._process(spec, msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep consuming whatever happens
                log.warning(
                    "bus %s: consumer %s: %s; re-binding", self.name, spec.durable, type(exc).__name__
                )
                sub = None
                await asyncio.sleep(0.5)

    async def _process(self, spec: ConsumerSpec, msg: Msg) -> None:
        meta = msg.metadata
        delivery = Delivery(msg.subject, meta.num_delivered, meta.sequence.stream)
        ctx = extract_context(msg.headers)
        with tracer().start_as_current_span(
            f"consume {msg.subject}",
            context=ctx,
            kind=trace.SpanKind.CONSUMER,
            attributes=safe_attributes(
                messaging__system="nats",
                messaging__destination__name=msg.subject,
                messaging__consumer__group__name=spec.durable,
            ),
        ) as span:
            try:
                event = decode_event(msg.subject, msg.data)
            except Exception as exc:  # noqa: BLE001 - a message we cannot read can never succeed
                await self._dead_letter(spec, msg, exc)
                return
            span.set_attributes(safe_attributes(pathways__event_id=event.event_id))
            if delivery.num_delivered > spec.max_deliver:
                # Delivered again after the last allowed attempt crashed before it could nak.
                await self._dead_letter(spec, msg, RuntimeError("delivery limit reached"))
                return
            try:
                await spec.handler(event, delivery)
            except Exception as exc:  # noqa: BLE001 - the handler's failure decides retry or DLQ
                span.record_exception(exc, attributes={"exception.message": type(exc).__name__})
                if delivery.num_delivered >= spec.max_deliver:
                    await self._dead_letter(spec, msg, exc)
                else:
                    log.warning(
                        "bus %s: %s failed on event %s (delivery %d): %s",
                        self.name,
                        spec.durable,
                        event.event_id,
                        delivery.num_delivered,
                        type(exc).__name__,
                    )
                    await msg.nak(delay=spec.delay_for(delivery.num_delivered))
                return
            await msg.ack()
            spec.processed += 1

    async def _process_batch(self, spec: ConsumerSpec, msgs: Sequence[Msg]) -> None:
        """A fetched batch through ``spec.batch_handler``; then each message acked, or (alone) retried
        or dead-lettered, as ``_process`` does for one."""
        assert spec.batch_handler is not None
        ready: list[tuple[Msg, Received]] = []
        for msg in msgs:
            meta = msg.metadata
            delivery = Delivery(msg.subject, meta.num_delivered, meta.sequence.stream)
            try:
                event = decode_event(msg.subject, msg.data)
            except Exception as exc:  # noqa: BLE001 - a message we cannot read can never succeed
                await self._dead_letter(spec, msg, exc)
                continue
            if delivery.num_delivered > spec.max_deliver:
                await self._dead_letter(spec, msg, RuntimeError("delivery limit reached"))
                continue
            ready.append((msg, Received(spec.durable, event, delivery, msg.headers)))
        if not ready:
            return
        try:
            outcomes = list(await spec.batch_handler([received for _, received in ready]))
        except Exception as exc:  # noqa: BLE001 - the whole batch failed (its transaction): each is retried
            outcomes = [exc] * len(ready)
        for (msg, received), error in zip(ready, outcomes, strict=True):
            if error is None:
                await msg.ack()
                spec.processed += 1
            elif received.delivery.num_delivered >= spec.max_deliver:
                await self._dead_letter(spec, msg, error)
            else:
                log.warning(
                    "bus %s: %s failed on event %s (delivery %d): %s",
                    self.name,
                    spec.durable,
                    received.event.event_id,
                    received.delivery.num_delivered,
                    type(error).__name__,
                )
                await msg.nak(delay=spec.delay_for(received.delivery.num_delivered))

    async def _dead_letter(self, spec: ConsumerSpec, msg: Msg, exc: BaseException) -> None:
        """Copy the message to ``dlq.<subject>`` (with why and for whom), then terminate it."""
        headers = dict(msg.headers or {})
        original_id = headers.pop("Nats-Msg-Id", f"seq-{msg.metadata.sequence.stream}")
        headers.update(
            {
                "Pathways-Dlq-Consumer": spec.durable,
                "Pathways-Dlq-Subject": msg.subject,
                # Only the exception's type: its message could quote the payload.
                "Pathways-Dlq-Error": type(exc).__name__,
                "Pathways-Dlq-Deliveries": str(msg.metadata.num_delivered),
            }
        )
        await self.publish_raw(
            f"{DLQ_PREFIX}.{msg.subject}", msg.data, msg_id=f"{spec.durable}:{original_id}", headers=headers
        )
        await msg.term()
        spec.dead_lettered += 1
        log.error(
            "bus %s: %s dead-lettered stream message %d after %d deliveries (%s)",
            self.name,
            spec.durable,
            msg.metadata.sequence.stream,
            msg.metadata.num_delivered,
            type(exc).__name__,
        )

    async def dead_letters(self, *, limit: int = 200) -> list[DeadLetter]:
        """The dead-lettered messages, oldest first (read without consuming them), for ops to inspect."""
        info = await self.js.stream_info(DLQ_STREAM)
        found: list[DeadLetter] = []
        seq = info.state.first_seq
        while seq and seq <= info.state.last_seq and len(found) < limit:
            try:
                msg = await self.js.get_msg(DLQ_STREAM, seq)
            except nats.js.errors.NotFoundError:
                seq += 1
                continue
            headers = dict(msg.headers or {})
            found.append(
                DeadLetter(
                    sequence=seq,
                    subject=headers.get("Pathways-Dlq-Subject", msg.subject or ""),
                    consumer=headers.get("Pathways-Dlq-Consumer", ""),
                    error=headers.get("Pathways-Dlq-Error", ""),
                    deliveries=int(headers.get("Pathways-Dlq-Deliveries", "0") or 0),
                )
            )
            seq += 1
        return found

    async def replay_dead_letters(self, *, limit: int = 1000, up_to: int | None = None) -> int:
        """Republish dead-lettered messages to their original subjects (ops' replay).

        Consumers that already processed an event skip it by ``event_id``; the one that failed gets
        it afresh. Replayed messages are removed from the dead-letter stream. ``up_to`` (a stream
        sequence) replays only what was there when ops looked; by default, what is there when the replay
        starts. Either way a message that fails again and comes back is not replayed round and round.
        """
        js = self.js
        if up_to is None:
            # What is there now: a message that fails again and comes back waits for the next replay.
            up_to = (await js.stream_info(DLQ_STREAM)).state.last_seq
        sub = await js.pull_subscribe(f"{DLQ_PREFIX}.>", durable=None, stream=DLQ_STREAM)
        replayed = 0
        try:
            while replayed < limit:
                try:
                    msgs = await sub.fetch(batch=min(100, limit - replayed), timeout=1)
                except TimeoutError:  # either kind nats-py raises (see _consume_loop)
                    break
                if up_to is not None and msgs and msgs[0].metadata.sequence.stream > up_to:
                    break
                for msg in msgs:
                    if up_to is not None and msg.metadata.sequence.stream > up_to:
                        break
                    headers = dict(msg.headers or {})
                    subject = headers.pop("Pathways-Dlq-Subject")
                    consumer = headers.pop("Pathways-Dlq-Consumer", "")
                    for key in ("Pathways-Dlq-Error", "Pathways-Dlq-Deliveries", "Nats-Msg-Id"):
                        headers.pop(key, None)
                    await self.publish_raw(
                        subject,
                        msg.data,
                        msg_id=f"replay:{consumer}:{msg.metadata.sequence.stream}",
                        headers=headers,
                    )
                    await msg.ack()
                    await js.delete_msg(DLQ_STREAM, msg.metadata.sequence.stream)
                    replayed += 1
        finally:
            await sub.unsubscribe()
        return replayed
