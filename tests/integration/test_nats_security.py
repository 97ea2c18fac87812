"""NATS as production runs it: TLS with a private CA and a user per service. A service configured as
the production overlay configures it (``tls://user:password@…`` in ``NATS_URL``, ``NATS_CA_FILE``)
connects and uses the bus; a wrong password, a plain connection or an unknown CA is refused."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.directory.app import create_app
from services.directory.settings import DirectorySettings
from services.launcher import free_port, nats_server_binary, stop_process, wait_until_ok
from shared.bus import EVENTS_STREAM
from shared.events import DirectoryChanged
from tests.harness import SERVICE_TOKEN, running

PASSWORD = "directory-test-password"


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                 signer: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@dataclass
class SecuredNats:
    port: int
    ca_file: Path
    other_ca_file: Path

    def url(self, user: str, password: str, scheme: str = "tls") -> str:
        return f"{scheme}://{user}:{password}@127.0.0.1:{self.port}"


@pytest.fixture
def secured_nats(tmp_path: Path) -> Iterator[SecuredNats]:
    ca_key, server_key, other_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("pathways-test-ca", ca_key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pathways-test-ca")]),
                      ca_key, ca=True)
    _write(tmp_path / "ca.crt", ca)
    _write(tmp_path / "server.crt", _certificate("nats", server_key, ca.subject, ca_key, ca=False), server_key)
    other = _certificate("someone-else", other_key,
                         x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone-else")]), other_key, ca=True)
    _write(tmp_path / "other-ca.crt", other)

    port, monitor = free_port(), free_port()
    (tmp_path / "auth.conf").write_text(
        f'authorization {{ users: [ {{user: directory, password: "{PASSWORD}"}} ] }}\n')
    # The production overlay's shape: TLS for clients, JetStream, the users included from a file.
    (tmp_path / "nats.conf").write_text(f"""
listen: 127.0.0.1:{port}
http: 127.0.0.1:{monitor}
jetstream {{ store_dir: "{tmp_path / 'store'}" }}
tls {{ cert_file: "{tmp_path / 'server.crt'}", key_file: "{tmp_path / 'server.key'}", ca_file: "{tmp_path / 'ca.crt'}" }}
include "auth.conf"
""")
    with open(tmp_path / "nats.log", "ab") as log:
        process = subprocess.Popen([nats_server_binary(), "-c", str(tmp_path / "nats.conf")],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_ok(f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true", 20, process)
        yield SecuredNats(port, tmp_path / "ca.crt", tmp_path / "other-ca.crt")
    finally:
        stop_process(process)


async def test_a_service_connects_with_its_user_over_tls_and_uses_the_bus(
    secured_nats: SecuredNats, tmp_path: Path
) -> None:
    settings = DirectorySettings(
        nats_url=secured_nats.url("directory", PASSWORD), nats_ca_file=str(secured_nats.ca_file),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'directory.db'}", service_token=SERVICE_TOKEN,
    )
    app = create_app(settings)
    async with running(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        bus = app.state.runtime.bus
        await bus.publish(DirectoryChanged(entity="service", entity_id="svc-test", change="updated"))
        info = await bus.js.stream_info(EVENTS_STREAM)
        assert info.state.messages >= 1


async def _refused(url: str, **options: object) -> None:
    with pytest.raises(Exception) as refused:  # noqa: PT011 - nats-py raises several kinds here
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0, **options)
        await nc.close()
    assert refused.value is not None


async def test_a_wrong_password_a_plain_connection_and_an_unknown_ca_are_refused(secured_nats: SecuredNats) -> None:
    trusted = ssl.create_default_context(cafile=str(secured_nats.ca_file))
    await _refused(secured_nats.url("directory", "not-the-password"), tls=trusted)
    await _refused(secured_nats.url("directory", PASSWORD, scheme="nats"))
    await _refused(secured_nats.url("directory", PASSWORD),
                   tls=ssl.create_default_context(cafile=str(secured_nats.other_ca_file)))
    # Reachable at all: the right user with the right CA is let in.
    nc = await nats.connect(secured_nats.url("directory", PASSWORD), tls=trusted, allow_reconnect=False)
    await nc.close()
