"""What the benchmarks share: the system started as ``pathways up`` starts it (on free ports, on SQLite
or on PostgreSQL), wrk, the bare peer, and small process probes. Not a benchmark itself: ``make bench``
runs ``bench/*.py`` only."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.launcher import (
    DEFAULT_PORTS,
    SERVICES,
    System,
    free_port,
    postgres_answers,
    stop_process,
    wait_until_ok,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gp-referral.json"
EHR_KEY = "pw_sample_ehr_client"  # the synthetic sample client `pathways up` seeds
PROVIDER_KEY = "pw_sample_aire_valley_da"  # the sample directory's provider key
PG_HOST = os.environ.get("PATHWAYS_BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PATHWAYS_BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("PATHWAYS_BENCH_PG_USER", "postgres")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the system ---------------------------------------------------------------------------------------


def postgres_available() -> bool:
    return postgres_answers(PG_HOST, PG_PORT, PG_USER)


def _pg_admin(statements: Sequence[str]) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@contextmanager
def running_system(
    tmp: Path, database: str = "sqlite", extra_env: dict[str, str] | None = None
) -> Iterator[System]:
    """NATS and the four services as `pathways up` starts them (launcher.System), on free ports.

    On PostgreSQL each service gets a fresh database of its own (dropped afterwards), as each owns its
    tables; on SQLite each uses its file under ``tmp/.data`` as `pathways up` does.
    """
    ports = {name: free_port() for name in DEFAULT_PORTS}
    system = System(data_dir=tmp / ".data", ports=ports, extra_env=dict(extra_env or {}))
    databases: dict[str, str] = {}
    if database == "postgresql":
        tag = uuid.uuid4().hex[:8]
        databases = {service: f"pathways_bench_{tag}_{service}" for service in SERVICES}
        _pg_admin([f'CREATE DATABASE "{name}"' for name in databases.values()])
    try:
        system.data_dir.mkdir(parents=True, exist_ok=True)
        system.log_dir.mkdir(exist_ok=True)
        from services.launcher import NatsServer

        system.nats = NatsServer(
            system.data_dir / "nats", ports["nats"], ports["nats_monitor"], system.log_dir / "nats.log"
        )
        system.nats.start()
        for service in SERVICES:
            env = system.environment()
            if databases:
                env["DATABASE_URL"] = (
                    f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{databases[service]}"
                )
            system.start_service(service, env)
        for service in SERVICES:
            wait_until_ok(f"{system.url(service)}/readyz", 60, system.processes[service])
        yield system
    finally:
        system.stop()
        if databases:
            _pg_admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in databases.values()])


def secrets_of(system: System) -> dict[str, str]:
    path = system.data_dir / "secrets.env"
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@dataclass(frozen=True)
class Peer:
    url: str
    pid: int


@contextmanager
def running_peer(nats_url: str, cpus: set[int] | None = None) -> Iterator[Peer]:
    """The bare peer (bench/support/peer.py) on a free port: its base URL and process. With ``cpus``, the
    peer runs on those CPUs only (see ``pin``)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("peer.py")), "--port", str(port), "--nats", nats_url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/healthz", 30, process)
        if cpus:
            pin(process.pid, cpus)
        yield Peer(f"http://127.0.0.1:{port}", process.pid)
    finally:
        stop_process(process)


# --- processes ----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def run_queue_seconds(pid: int) -> float | None:
    """How long the process's main thread has waited, runnable, for a CPU (``/proc/<pid>/schedstat``);
    ``None`` where the kernel keeps no such count."""
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


@contextmanager
def paused(pids: Sequence[int]) -> Iterator[None]:
    """The processes stopped (SIGSTOP) for the block and resumed after it, whatever happens: their work
    waits in JetStream meanwhile, as it would for a service that is down."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def pin(pid: int, cpus: set[int]) -> None:
    """Run every thread of a process on ``cpus`` only (threads it starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:  # a thread that ended meanwhile
            pass


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def quiesce(
    pids: Sequence[int], *, idle_share: float = 0.05, window: float = 0.5, limit: float = 120.0
) -> float:
    """Wait until the processes together use under ``idle_share`` of one core (the downstream work of
    the last round is done), so that one round's backlog does not eat into the next; returns seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(window)
        if sum(cpu_seconds(p) for p in pids) - before < idle_share * window:
            break
    return time.monotonic() - start


# --- wrk ----------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """wrk from Debian's packages, installed when absent (as root, or through sudo)."""
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print("installing wrk (apt-get install wrk)…", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "wrk"],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk could not be installed")
    return found


def referral_template(tmp: Path) -> Path:
    """The GP example with a placeholder where each request puts its own Bundle.identifier."""
    bundle = json.loads(EXAMPLE.read_text())
    bundle["identifier"]["value"] = "__REFERRAL__"
    path = tmp / "referral-template.json"
    path.write_text(json.dumps(bundle))
    return path


@dataclass
class WrkResult:
    target: str
    connections: int
    seconds: float
    statuses: dict[int, int]
    busy_without_retry_after: int
    socket_errors: int
    timeouts: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)

    @property
    def busy(self) -> int:
        return self.statuses.get(503, 0)

    @property
    def errors(self) -> int:
        """Anything but a 202 or a 503 that carried Retry-After."""
        others = sum(n for code, n in self.statuses.items() if code not in (202, 503))
        return others + self.busy_without_retry_after + self.socket_errors

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    template: Path,
    tag: str,
    target: str,
    threads: int = 2,
    timeout_s: int = 5,
    cpus: set[int] | None = None,
) -> WrkResult:
    """wrk against POST /fhir/Bundle, each request a distinct referral (bench/support/referrals.lua);
    with ``cpus``, wrk runs on those CPUs only."""
    threads = min(threads, connections)
    command = [
        *(["taskset", "-c", ",".join(str(c) for c in sorted(cpus))] if cpus else []),
        ensure_wrk(),
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        f"{timeout_s}s",
        "-s",
        str(Path(__file__).with_name("referrals.lua")),
        url,
        "--",
        str(template),
        tag,
        EHR_KEY,
    ]
    for attempt in range(2):  # wrk has been seen to exit 1 at start on a busy machine: try once more
        done = subprocess.run(command, capture_output=True, text=True)
        line = next((l for l in done.stdout.splitlines() if l.startswith("WRKJSON ")), None)
        if line is not None:
            break
    else:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:500]}")
    data = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(
        target=target,
        connections=connections,
        seconds=data["duration_us"] / 1e6,
        statuses={int(k): int(v) for k, v in data["statuses"].items()},
        busy_without_retry_after=data["busy_without_retry_after"],
        socket_errors=data["connect"] + data["read"] + data["write"],
        timeouts=data["timeout"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )


# --- reporting ----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table (also valid Markdown) for the summaries the benchmarks print."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
