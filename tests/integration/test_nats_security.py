"""NATS as production runs it: TLS with a private CA and a user per service. A service configured as
the production overlay configures it (``tls://user:password@…`` in ``NATS_URL``, ``NATS_CA_FILE``)
connects and uses the bus; a wrong password or an unknown CA is refused."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest

from services.directory.app import create_app
from services.directory.settings import DirectorySettings
from services.launcher import free_port, nats_server_binary, stop_process, wait_until_ok
from services.status import nats_status
from shared.bus import EVENTS_STREAM, Bus
from shared.events import DirectoryChanged
from tests.harness import assert_nats_refuses, running, service_auth
from tests.tls import make_ca, make_tls_files

PASSWORD = "directory-test-password"


@dataclass
class SecuredNats:
    port: int
    ca_file: Path
    other_ca_file: Path

    def url(self, user: str, password: str) -> str:
        return f"tls://{user}:{password}@127.0.0.1:{self.port}"


@pytest.fixture
def secured_nats(tmp_path: Path) -> Iterator[SecuredNats]:
    tls = make_tls_files(tmp_path / "tls")
    other_ca = make_ca(tmp_path, "someone-else")
    port, monitor = free_port(), free_port()
    (tmp_path / "auth.conf").write_text(
        f'authorization {{ users: [ {{user: directory, password: "{PASSWORD}"}} ] }}\n')
    # The production overlay's shape: TLS for clients, JetStream, the users included from a file.
    (tmp_path / "nats.conf").write_text(f"""
listen: 127.0.0.1:{port}
http: 127.0.0.1:{monitor}
jetstream {{ store_dir: "{tmp_path / 'store'}" }}
tls {{ cert_file: "{tls.cert}", key_file: "{tls.key}", ca_file: "{tls.ca}" }}
include "auth.conf"
""")
    with open(tmp_path / "nats.log", "ab") as log:
        process = subprocess.Popen([nats_server_binary(), "-c", str(tmp_path / "nats.conf")],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_ok(f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true", 20, process)
        yield SecuredNats(port, tls.ca, other_ca)
    finally:
        stop_process(process)


async def test_a_service_connects_with_its_user_over_tls_and_uses_the_bus(
    secured_nats: SecuredNats, tmp_path: Path
) -> None:
    settings = DirectorySettings(
        nats_url=secured_nats.url("directory", PASSWORD), nats_ca_file=str(secured_nats.ca_file),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'directory.db'}", **service_auth("directory"),
    )
    app = create_app(settings)
    async with running(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        bus = app.state.runtime.bus
        await bus.publish(DirectoryChanged(entity="service", entity_id="svc-test", change="updated"))
        info = await bus.js.stream_info(EVENTS_STREAM)
        assert info.state.messages >= 1


async def test_a_wrong_password_and_an_unknown_ca_are_refused(secured_nats: SecuredNats) -> None:
    trusted = ssl.create_default_context(cafile=str(secured_nats.ca_file))
    await assert_nats_refuses(secured_nats.url("directory", "not-the-password"), tls=trusted)
    await assert_nats_refuses(secured_nats.url("directory", PASSWORD),
                   tls=ssl.create_default_context(cafile=str(secured_nats.other_ca_file)))
    # Reachable at all: the right user with the right CA is let in.
    nc = await nats.connect(secured_nats.url("directory", PASSWORD), tls=trusted, allow_reconnect=False)
    await nc.close()


async def test_pathways_status_reads_a_tls_nats_with_the_ca_file(secured_nats: SecuredNats) -> None:
    url = secured_nats.url("directory", PASSWORD)
    services = Bus(url, name="test-services", tls_ca_file=str(secured_nats.ca_file))  # declares the streams
    await services.start()
    await services.wait_ready(15)
    await services.close()
    found = await nats_status(url, 5.0, str(secured_nats.ca_file))
    assert found.reachable and found.error is None
    assert PASSWORD not in found.url and found.url == f"tls://127.0.0.1:{secured_nats.port}"  # shown to people
    assert not (await nats_status(url, 5.0)).reachable  # the system's CAs do not know this one
