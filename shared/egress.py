"""Calls out of Pathways to addresses a caller chose (provider webhooks, FHIR Subscription endpoints):
which addresses they may reach, checked when the endpoint is registered and again at every connection.

An endpoint URL comes from outside (an EHR client posts a Subscription, ops register a provider's
webhook): without these checks it would make Pathways call its own internal services, the cloud
metadata service (169.254.169.254) or anything else on the private network, with a body and headers
the caller partly chose (server-side request forgery). So outside development an endpoint may only be
a public address: never private, loopback, link-local, multicast, reserved, shared (CGNAT) or
unspecified, in IPv4 or IPv6, including IPv4 addresses embedded in IPv6 ones (``::ffff:10.0.0.1``,
6to4, Teredo, NAT64). A name is resolved and *every* address it resolves to is checked.

A check at registration alone is not enough: the name can later resolve elsewhere (DNS rebinding).
``GuardedTransport`` resolves the name at each request, checks every address, and connects to the
address it checked (TLS still verifies the certificate against the name), so what was checked is
what is called; redirects are not followed by the senders, and would pass through the same check.

Exceptions are explicit: ``PATHWAYS_ENV=development`` allows loopback (local demos and tests), and
``PATHWAYS_EGRESS_ALLOWED_NETWORKS`` lists networks that may be called anyway (e.g. a provider
reached over HSCN on a private range).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from shared.settings import ServiceSettings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses the name resolves to (a test may give its own).
Resolver = Callable[[str, int], Awaitable[list[str]]]

NAT64 = ipaddress.ip_network("64:ff9b::/96")
# How long a registration waits for DNS before accepting the name (delivery checks it again anyway).
REGISTRATION_RESOLVE_SECONDS = 3.0
# The most of an endpoint's answer Pathways reads: a status is all it needs.
MAX_RESPONSE_BYTES = 64 * 1024


class EndpointRefused(httpx.TransportError):
    """The endpoint resolves to an address Pathways does not call. A transport error, so senders treat it
    as an attempt that failed (and record why) rather than crash."""


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, through the system resolver (looked up at call time, so a test
    can stand in for DNS)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_kind(address: Address) -> str | None:
    """What makes this address one Pathways does not call (``"loopback"``, ``"private"``, …), or ``None``
    for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(address)) is not None:
        return address_kind(embedded)
    for kind, flag in (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
                       ("link-local", address.is_link_local), ("multicast", address.is_multicast),
                       ("reserved", address.is_reserved), ("private", address.is_private)):
        if flag:
            return kind
    # Shared address space (100.64.0.0/10), documentation ranges and the like: not reachable publicly.
    return None if address.is_global else "non-public"


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses outbound deliveries may reach."""

    allow_loopback: bool = False
    allowed_networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, *, development: bool, allowed_networks: str = "") -> EgressPolicy:
        """The policy for a service: loopback only in development; ``allowed_networks`` is a comma-separated
        list of CIDRs (``10.20.0.0/16,2001:db8::/32``) callable in any environment."""
        networks = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in allowed_networks.split(",") if n.strip())
        return cls(allow_loopback=development, allowed_networks=networks)

    def refusal(self, address: str) -> str | None:
        """Why this address may not be called, or ``None`` when it may."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id names an interface, not an address
        if any(ip in network for network in self.allowed_networks if ip.version == network.version):
            return None
        kind = address_kind(ip)
        if kind is None or (kind == "loopback" and self.allow_loopback):
            return None
        article = "an" if kind[0] in "aeiou" else "a"
        # Never the address itself: a caller must not learn how internal names resolve.
        return f"the host is or resolves to {article} {kind} address, which Pathways does not call"

    def first_refusal(self, addresses: Iterable[str]) -> str | None:
        return next((r for a in addresses if (r := self.refusal(a)) is not None), None)


def policy_for(settings: ServiceSettings) -> EgressPolicy:
    return EgressPolicy.of(development=settings.is_development, allowed_networks=settings.egress_allowed_networks)


def _host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return host, parts.port or (443 if parts.scheme == "https" else 80)


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


async def registration_refusal(url: str, policy: EgressPolicy, *, resolver: Resolver | None = None) -> str | None:
    """Why an endpoint may not be registered, or ``None``: an address literal or a name that resolves
    (now) to any address the policy refuses. A name that does not resolve yet is accepted: it is checked
    again at every delivery."""
    host, port = _host_and_port(url)
    if not host:
        return "the URL has no host"
    if _literal(host):
        return policy.refusal(host)
    try:
        async with asyncio.timeout(REGISTRATION_RESOLVE_SECONDS):
            addresses = await (resolver or resolve)(host, port)
    except (OSError, TimeoutError, UnicodeError):
        return None
    return policy.first_refusal(addresses)


# Per endpoint name (GuardedTransport): connections open at once, how long an idle one is kept, and how
# many names keep a pool.
MAX_CONNECTIONS_PER_HOST = 16
KEEPALIVE_SECONDS = 30.0
MAX_HOST_POOLS = 256


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that resolves each request's host, refuses it if any address is not allowed,
    and otherwise connects to the first checked address: the request keeps its ``Host`` header, and TLS
    its server name (SNI and certificate verification), so only the connection target is pinned."""

    def __init__(self, policy: EgressPolicy, *, resolver: Resolver | None = None,
                 inner: httpx.AsyncBaseTransport | None = None, deadline_seconds: float = 30.0,
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.policy = policy
        self.resolver = resolver
        self.deadline_seconds = deadline_seconds
        self.max_response_bytes = max_response_bytes
        self.inner = inner
        # Kept-alive connections, never shared between names: a connection is to an address, and one made
        # (and its certificate verified) for one name must never carry a request for another name on the
        # same address. So each name has a pool of its own (a connection per checked address in it): a
        # provider's deliveries reuse their connection instead of a TCP (and TLS) handshake each, which
        # was the largest part of a webhook's cost (issue 9). The least recently used names' pools are
        # closed beyond ``MAX_HOST_POOLS`` (a request still open on one fails like a network error, and a
        # delivery is retried as after any).
        self._pools: OrderedDict[str, httpx.AsyncBaseTransport] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def _pool(self, host: str) -> httpx.AsyncBaseTransport:
        if self.inner is not None:
            return self.inner
        pool = self._pools.pop(host, None) or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS_PER_HOST,
                                max_keepalive_connections=MAX_CONNECTIONS_PER_HOST,
                                keepalive_expiry=KEEPALIVE_SECONDS),
            trust_env=False,
        )
        self._pools[host] = pool  # the most recently used last
        while len(self._pools) > MAX_HOST_POOLS:
            _, oldest = self._pools.popitem(last=False)
            task = asyncio.get_running_loop().create_task(oldest.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        if _literal(host):
            addresses = [host]
        else:
            try:
                addresses = await (self.resolver or resolve)(host, port)
            except (OSError, UnicodeError) as exc:
                raise httpx.ConnectError(f"cannot resolve the endpoint's host ({type(exc).__name__})",
                                         request=request) from None
        if not addresses:
            raise httpx.ConnectError("the endpoint's host has no address", request=request)
        if (refusal := self.policy.first_refusal(addresses)) is not None:
            raise EndpointRefused(f"endpoint refused: {refusal}", request=request)
        if not _literal(host):
            pinned = addresses[0]
            request.url = request.url.copy_with(host=pinned)
            if request.url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": host}
        # httpx's timeouts bound each read, not the exchange: an endpoint that answers a byte at a time,
        # or without end, must not hold a delivery worker or fill its memory.
        deadline = asyncio.get_running_loop().time() + self.deadline_seconds
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._pool(host.lower()).handle_async_request(request)
        except TimeoutError:
            raise httpx.ReadTimeout("the endpoint did not answer in time", request=request) from None
        response.stream = _Bounded(response.stream, request, deadline, self.max_response_bytes)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        pools, self._pools = [*self._pools.values(), *([self.inner] if self.inner else [])], OrderedDict()
        await asyncio.gather(*(pool.aclose() for pool in pools), *self._closing, return_exceptions=True)


class _Bounded(httpx.AsyncByteStream):
    """A response body read within the exchange's deadline and up to a size (receivers answer with a
    status; their bodies are not needed)."""

    def __init__(self, stream: httpx.AsyncByteStream, request: httpx.Request, deadline: float, limit: int) -> None:
        self.stream, self.request, self.deadline, self.limit = stream, request, deadline, limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        iterator = self.stream.__aiter__()
        while True:
            try:
                async with asyncio.timeout_at(self.deadline):
                    chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise httpx.ReadTimeout("the endpoint's answer took too long", request=self.request) from None
            seen += len(chunk)
            if seen > self.limit:
                raise httpx.ReadError(f"the endpoint's answer is larger than {self.limit} bytes", request=self.request)
            yield chunk

    async def aclose(self) -> None:
        await self.stream.aclose()


def external_client(policy: EgressPolicy, *, timeout: float = 10.0, resolver: Resolver | None = None) -> httpx.AsyncClient:
    """The HTTP client for deliveries to endpoints outside Pathways: every connection checked, no
    redirects followed, no proxy or credentials taken from the environment; each exchange bounded in
    time (``timeout`` per step, three times it in all) and in the size of the answer."""
    transport = GuardedTransport(policy, resolver=resolver, deadline_seconds=3 * timeout)
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)


# Headers a Subscription may not set on its notifications: framing and routing (Host, lengths,
# hop-by-hop headers), what Pathways itself sets (Content-Type), and what would make a proxy or the
# receiver believe the request came from somewhere else.
FORBIDDEN_HEADERS = frozenset({
    "host", "content-length", "content-type", "content-encoding", "transfer-encoding", "connection",
    "keep-alive", "upgrade", "te", "trailer", "expect", "cookie", "forwarded", "via", "x-real-ip",
    "proxy-authorization", "proxy-connection",
})
FORBIDDEN_HEADER_PREFIXES = ("x-forwarded-", "proxy-", "sec-", ":")
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
MAX_HEADERS = 10
MAX_HEADER_LENGTH = 1000


def header_refusal(header: object) -> str | None:
    """Why a ``Name: value`` header a caller asks to be sent is refused, or ``None`` when it may be sent."""
    if not isinstance(header, str) or ":" not in header:
        return "each header must be 'Name: value'"
    if len(header) > MAX_HEADER_LENGTH:
        return f"a header may be at most {MAX_HEADER_LENGTH} characters"
    name, _, value = header.partition(":")
    name = name.strip()
    if not name or not set(name) <= _TOKEN:
        return "a header name must be an HTTP token"
    if any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in value):
        return f"the value of '{name}' contains control characters"
    lowered = name.lower()
    if lowered in FORBIDDEN_HEADERS or lowered.startswith(FORBIDDEN_HEADER_PREFIXES):
        return f"'{name}' is set by Pathways or the network and cannot be chosen"
    return None
