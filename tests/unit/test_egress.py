"""Which addresses Pathways calls when a caller chose the endpoint (webhooks, FHIR Subscriptions): never
one inside a private network, in IPv4 or IPv6 or an IPv4 address hidden in IPv6, whether given as a
literal or as a name that resolves to it, at registration and again at the connection itself."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI, Request

from shared.egress import (
    EgressPolicy,
    EndpointRefused,
    GuardedTransport,
    external_client,
    header_refusal,
    registration_refusal,
)
from tests.servers import serving

PRODUCTION = EgressPolicy.of(development=False)
DEVELOPMENT = EgressPolicy.of(development=True)


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fc00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("240.0.0.1", "reserved"), ("100.64.0.1", "non-public"),
    # IPv4 inside IPv6: mapped, 6to4, NAT64.
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"),
    ("2002:a00:1::1", "private"), ("64:ff9b::a00:1", "private"),
])
def test_non_public_addresses_are_refused_outside_development(address: str, kind: str):
    refusal = PRODUCTION.refusal(address)
    assert refusal is not None and f" {kind} address" in refusal
    assert address not in refusal  # a caller never learns what an internal name resolves to


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "81.2.69.160"])
def test_public_addresses_may_be_called(address: str):
    assert PRODUCTION.refusal(address) is None


def test_development_allows_loopback_only_and_the_allow_list_what_it_names():
    assert DEVELOPMENT.refusal("127.0.0.1") is None and DEVELOPMENT.refusal("::1") is None
    assert DEVELOPMENT.refusal("10.0.0.1") is not None and DEVELOPMENT.refusal("169.254.169.254") is not None
    hscn = EgressPolicy.of(development=False, allowed_networks="10.20.0.0/16, 2001:db8::/32")
    assert hscn.refusal("10.20.3.4") is None and hscn.refusal("2001:db8::5") is None
    assert hscn.refusal("10.21.0.1") is not None and hscn.refusal("127.0.0.1") is not None


def resolving_to(*addresses: str):
    async def resolver(host: str, port: int) -> list[str]:
        return list(addresses)
    return resolver


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hook", "https://10.0.0.8/hook", "https://169.254.169.254/latest/meta-data",
    "https://[::1]:8443/hook", "https://[::ffff:10.0.0.1]/hook",
    # Other spellings of 127.0.0.1 that resolvers accept: decimal, hexadecimal, octal, shortened.
    "https://2130706433/hook", "https://0x7f.1/hook", "https://0177.0.0.1/hook", "https://127.1/hook",
])
async def test_registration_refuses_non_public_literals(url: str):
    assert await registration_refusal(url, PRODUCTION) is not None


async def test_registration_refuses_a_name_resolving_to_loopback():
    # The real resolver: "localhost" is loopback on every machine.
    assert "loopback" in (await registration_refusal("https://localhost/hook", PRODUCTION) or "")
    # Every address counts: one private among public ones is enough to refuse.
    mixed = resolving_to("93.184.216.34", "10.0.0.9")
    assert "private" in (await registration_refusal("https://hooks.example.org/x", PRODUCTION, resolver=mixed) or "")
    public = resolving_to("93.184.216.34")
    assert await registration_refusal("https://hooks.example.org/x", PRODUCTION, resolver=public) is None


async def test_registration_accepts_a_name_that_does_not_resolve_yet_delivery_checks_it_again():
    async def nothing(host: str, port: int) -> list[str]:
        raise OSError("no such name")
    assert await registration_refusal("https://new-provider.example/hook", PRODUCTION, resolver=nothing) is None


async def test_the_transport_connects_to_the_address_it_checked_keeping_the_name_for_host_and_tls():
    seen: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    transport = GuardedTransport(PRODUCTION, resolver=resolving_to("93.184.216.34"), inner=httpx.MockTransport(upstream))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post("https://hooks.example.org/pathways", content=b"{}")
    assert response.status_code == 204
    [request] = seen
    assert request.url.host == "93.184.216.34" and request.headers["host"] == "hooks.example.org"
    assert request.extensions["sni_hostname"] == "hooks.example.org"


async def test_the_transport_refuses_a_name_that_now_resolves_to_a_private_address_dns_rebinding():
    answers = iter([["93.184.216.34"], ["10.0.0.7"]])
    sent: list[httpx.Request] = []

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    transport = GuardedTransport(PRODUCTION, resolver=rebinding,
                                 inner=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200)))
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.post("https://hooks.example.org/p")).status_code == 200
        with pytest.raises(EndpointRefused, match="private address"):
            await client.post("https://hooks.example.org/p")
    assert len(sent) == 1  # the second request never left


async def test_a_redirect_to_a_private_address_is_checked_like_any_other_request():
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://169.254.169.254/latest/meta-data"})

    transport = GuardedTransport(PRODUCTION, resolver=resolving_to("93.184.216.34"), inner=httpx.MockTransport(upstream))
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
        with pytest.raises(EndpointRefused, match="link-local"):
            await client.get("https://hooks.example.org/p")


@pytest.mark.parametrize("header", [
    "Host: internal.service", "Content-Type: text/plain", "Transfer-Encoding: chunked", "X-Forwarded-For: 10.0.0.1",
    "Proxy-Authorization: Basic x", "Cookie: a=b", "Bad Name: x", "X-Ok: line\r\nInjected: yes", "no colon",
])
def test_subscription_headers_cannot_override_framing_routing_or_inject(header: str):
    assert header_refusal(header) is not None


def test_subscription_headers_for_the_receivers_own_authentication_are_kept():
    # FHIR R4 channel.header exists for this: the EHR's endpoint authenticates Pathways' notifications.
    assert header_refusal("Authorization: Bearer ehr-endpoint-token") is None
    assert header_refusal("X-Tenant: trust-42") is None


async def test_a_real_connection_goes_to_the_checked_address_with_the_name_as_host():
    """Over a real socket: the name resolves (here, by a stand-in for DNS) to the local receiver, which
    development allows; the receiver sees the endpoint's own name in Host."""
    receiver = FastAPI()
    hosts: list[str] = []

    @receiver.post("/hook")
    async def hook(request: Request) -> dict[str, str]:
        hosts.append(request.headers["host"])
        return {}

    async with serving(receiver) as server:
        client = external_client(DEVELOPMENT, resolver=resolving_to("127.0.0.1"))
        async with client:
            response = await client.post(f"http://hooks.provider.example:{server.port}/hook", json={})
        refused = external_client(PRODUCTION, resolver=resolving_to("127.0.0.1"))
        async with refused:
            with pytest.raises(EndpointRefused):
                await refused.post(f"http://hooks.provider.example:{server.port}/hook", json={})
    assert response.status_code == 200 and hosts == [f"hooks.provider.example:{server.port}"]


async def test_an_endpoint_cannot_hold_a_delivery_with_an_endless_or_slow_answer():
    async def endless():
        while True:
            yield b"x" * 4096

    async def dripping():
        yield b"x"
        await asyncio.sleep(3600)
        yield b"y"

    for body, error in ((endless(), "larger than"), (dripping(), "took too long")):
        inner = httpx.MockTransport(lambda request, body=body: httpx.Response(200, content=body))
        transport = GuardedTransport(PRODUCTION, resolver=resolving_to("93.184.216.34"), inner=inner,
                                     deadline_seconds=0.2)
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.TransportError, match=error):
                await client.post("https://hooks.example.org/p")


async def test_a_name_keeps_its_connection_alive_and_never_shares_it_with_another_name_on_the_same_address():
    """Deliveries to one endpoint reuse a kept-alive connection (no TCP or TLS handshake per webhook,
    issue 9), while a connection made for one name never carries a request for another name that
    resolves to the same address (its certificate was checked for the first name only)."""
    connections: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = f"connection {len(connections)}"
        connections.append(peer)
        try:
            while request := await reader.readuntil(b"\r\n\r\n"):
                host = next(line for line in request.decode().split("\r\n") if line.lower().startswith("host:"))
                body = f"{peer} {host.split(':')[1].strip()}".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, external_client(DEVELOPMENT, resolver=resolving_to("127.0.0.1")) as client:
        answers = [
            (await client.post(f"http://{name}:{port}/hook", content=b"{}")).text
            for name in ("a.example", "a.example", "b.example", "a.example", "b.example")
        ]
    assert answers == [
        "connection 0 a.example", "connection 0 a.example", "connection 1 b.example",
        "connection 0 a.example", "connection 1 b.example",
    ]
    assert len(connections) == 2
