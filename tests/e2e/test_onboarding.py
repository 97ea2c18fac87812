"""A new area, as its ops team would set it up: `pathways up --no-sample` starts an empty system; the
first ops user is bootstrapped, the area's directory arrives as HSDS JSON and its gazetteer as an ONS
file, an EHR client and a provider key are issued with the CLI, and one referral goes all the way to
the provider's accepted handoff."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.directory import hsds
from services.directory.sample import sample_directory
from services.directory.store import Organisation, Service
from services.launcher import free_port
from tests.conftest import EXAMPLES
from tests.e2e.conftest import poll, read_banner
from tests.unit.test_directory_model import ONSPD_HEADER, onspd_row

NAMES = ("intake", "router", "directory", "notify", "nats", "nats_monitor")
PATHWAYS = str(Path(sys.executable).parent / "pathways")
LEEDS, WEST_YORKSHIRE = "E08000035", "E54000054"


class Area:
    def __init__(self, root: Path, ports: dict[str, int], env: dict[str, str], output: str) -> None:
        self.root, self.ports, self.env, self.output = root, ports, env, output

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def cli(self, *args: str, **env: str) -> Any:
        """Run a ``pathways`` command as the area's ops team would; its JSON answer."""
        done = subprocess.run([PATHWAYS, *args], env={**self.env, **env}, cwd=self.root, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip().startswith(("{", "[")) else done.stdout


@pytest.fixture(scope="module")
def empty_area(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Area]:
    root = tmp_path_factory.mktemp("area")
    ports = {name: free_port() for name in NAMES}
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    # The documented switches say "sample", --no-sample wins: an area's system starts empty.
    env.update({f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
               DIRECTORY_LOAD_SAMPLE="true", INTAKE_SEED_SAMPLE_CLIENT="true")
    up = subprocess.Popen([PATHWAYS, "up", "--no-sample", "--data-dir", str(root / ".data")], env=env, cwd=root,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = read_banner(up, 120)
        cli_env = {**env, "PATHWAYS_INTAKE_URL": f"http://127.0.0.1:{ports['intake']}",
                   "PATHWAYS_DIRECTORY_URL": f"http://127.0.0.1:{ports['directory']}"}
        yield Area(root, ports, cli_env, output)
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
        assert up.stdout is not None
        up.stdout.close()


def hsds_document() -> dict[str, Any]:
    """The area's directory as Open Referral UK / HSDS JSON (here: the synthetic sample's organisations)."""
    organisations, services = sample_directory()
    return hsds.export_document([Organisation(**o.columns()) for o, _key in organisations],
                                [Service(**s.columns()) for s in services])


def test_an_empty_system_is_filled_by_its_area_and_a_referral_reaches_an_accepted_handoff(empty_area: Area):
    area = empty_area
    directory, intake, notify = area.url("directory"), area.url("intake"), area.url("notify")
    assert "No sample data" in area.output and "pw_sample_ehr_client" not in area.output

    # Empty: no organisations, and none of the sample credentials work.
    assert httpx.get(f"{directory}/organisations").json() == []
    assert httpx.get(f"{intake}/fhir/Task", headers={"Authorization": "Bearer pw_sample_ehr_client"}).status_code == 401
    assert httpx.get(f"{notify}/offers", headers={"Authorization": "Bearer pw_sample_aire_valley_da"}).status_code == 401

    # The first ops user, straight into the directory's database (a second bootstrap is refused:
    # tests/integration/test_credentials.py).
    database = f"sqlite+aiosqlite:///{area.root / '.data' / 'directory.db'}"
    first = area.cli("ops-users", "bootstrap", "alex", "--name", "Alex (synthetic)", "--database-url", database)
    ops_key = first["api_key"]
    ops = {"Authorization": f"Bearer {ops_key}"}

    # The directory, as HSDS JSON through the ops API; the gazetteer from an ONS Postcode Directory file.
    imported = httpx.post(f"{directory}/hsds", json=hsds_document(), headers=ops, timeout=30)
    assert imported.status_code == 200, imported.text
    onspd = area.root / "ONSPD_AREA.csv"
    onspd.write_text("\n".join([ONSPD_HEADER, onspd_row("LS7 3ZZ", LEEDS, WEST_YORKSHIRE, "53.82", "-1.53"),
                                onspd_row("LS7 9ZZ", LEEDS, WEST_YORKSHIRE, "53.83", "-1.52")]) + "\n")
    assert "imported 2 postcodes" in area.cli("gazetteer", "import", str(onspd), "--database-url", database)
    assert httpx.get(f"{directory}/areas/LS7").json()["parts"][0]["lad_code"] == LEEDS

    # Credentials, issued with the CLI by the ops user.
    ehr = area.cli("clients", "create", "emis-leeds-north", "--name", "EMIS Web, Leeds North (synthetic)",
                   "--ods", "Y00001", PATHWAYS_OPS_KEY=ops_key)
    provider = area.cli("providers", "keys", "create", "aire-valley-da", "case-system", PATHWAYS_OPS_KEY=ops_key)
    assert ehr["ods_codes"] == ["Y00001"] and provider["organisation_id"] == "aire-valley-da"
    ehr_key = {"Authorization": f"Bearer {ehr['api_key']}"}
    provider_key = {"Authorization": f"Bearer {provider['api_key']}"}

    posted = httpx.post(f"{intake}/fhir/Bundle", content=(EXAMPLES / "gp-referral.json").read_bytes(),
                        headers={**ehr_key, "Content-Type": "application/fhir+json"})
    assert posted.status_code == 202, posted.text
    task_id = posted.json()["id"]

    offers = poll(lambda: httpx.get(f"{notify}/offers", headers=provider_key).json(), lambda o: len(o) == 1, 60)
    assert offers[0]["case_id"] == task_id
    accepted = httpx.post(f"{notify}/offers/{offers[0]['id']}/accept", headers=provider_key)
    assert accepted.status_code == 200
    handoff = httpx.get(f"{notify}/offers/{offers[0]['id']}/handoff", headers=provider_key)
    assert handoff.status_code == 200, handoff.text
    assert handoff.json()["survivor"]["birth_date"] == "1990-04-01"
    task = poll(lambda: httpx.get(f"{intake}/fhir/Task/{task_id}", headers=ehr_key).json(),
                lambda t: t["status"] == "accepted")
    assert task["status"] == "accepted"

    # Revoking the provider's key ends its access; the ops user's own list shows it.
    area.cli("providers", "keys", "revoke", "aire-valley-da", "case-system", PATHWAYS_OPS_KEY=ops_key)
    poll(lambda: httpx.get(f"{notify}/offers", headers=provider_key).status_code, lambda code: code == 401)
    keys = area.cli("providers", "keys", "list", "aire-valley-da", PATHWAYS_OPS_KEY=ops_key)
    assert [(k["name"], k["state"]) for k in keys] == [("case-system", "revoked")]
