"""Where a round's CPU went, machine-wide: every CPU's busy time (``/proc/stat``), split among named groups of
processes (``/proc/<pid>/stat``), the PostgreSQL server's processes, and the load generator (wrk, a child that
the benchmark waits for: ``RUSAGE_CHILDREN``). Divided by the referrals answered, it is the round's cost
per referral across the whole machine, and ``CPUs / cost`` the rate that machine could give at that cost
(issue 9: is a round bound by the machine's CPUs, and by which process's share?)."""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import CLK_TCK, cpu_seconds

POSTGRESQL = "PostgreSQL"
WRK = "wrk"
OTHER = "other"


def _postgres_pids() -> list[int]:
    """The PostgreSQL server's processes on this machine (postmaster, backends, writers), by name."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass(frozen=True)
class Snapshot:
    busy: float  # CPU seconds every CPU spent not idle since boot (steal excluded)
    steal: float  # CPU seconds the hypervisor ran something else on this machine's CPUs
    processes: dict[int, float]  # CPU seconds of each process watched
    children: float  # CPU seconds of the benchmark's finished children (wrk)


def snapshot(pids: Sequence[int]) -> Snapshot:
    """The machine's and the processes' CPU so far, with the PostgreSQL server's processes added."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    watched: dict[int, float] = {}
    for pid in (*pids, *_postgres_pids()):
        try:
            watched[pid] = cpu_seconds(pid)
        except OSError:  # gone meanwhile
            continue
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Snapshot(
        busy=(user + nice + system + irq + softirq) / CLK_TCK,
        steal=steal / CLK_TCK,
        processes=watched,
        children=usage.ru_utime + usage.ru_stime,
    )


@dataclass(frozen=True)
class Split:
    """One round's CPU: how busy the machine was, and each group's CPU seconds (with wrk, PostgreSQL and
    everything else on the machine as groups of their own)."""

    seconds: float
    cpus: int
    busy: float
    steal: float
    groups: dict[str, float]

    @classmethod
    def combined(cls, splits: Sequence[Split]) -> Split:
        """Several rounds of one target as one: their seconds and CPU seconds summed."""
        groups: dict[str, float] = {}
        for one in splits:
            for name, seconds in one.groups.items():
                groups[name] = groups.get(name, 0.0) + seconds
        return cls(seconds=sum(s.seconds for s in splits), cpus=splits[0].cpus,
                   busy=sum(s.busy for s in splits), steal=sum(s.steal for s in splits), groups=groups)

    @property
    def busy_share(self) -> float:
        """How busy the machine's CPUs were over the round, 1.0 = all of them all the time."""
        return self.busy / (self.seconds * self.cpus) if self.seconds else 0.0

    @property
    def steal_share(self) -> float:
        return self.steal / (self.seconds * self.cpus) if self.seconds else 0.0

    def per(self, count: int) -> dict[str, float]:
        """Each group's CPU milliseconds per ``count`` (referrals answered), and the total."""
        if not count:
            return {}
        shares = {name: seconds * 1000 / count for name, seconds in self.groups.items()}
        shares["total"] = self.busy * 1000 / count
        return shares

    def machine_rate(self, count: int) -> float:
        """The rate this machine's CPUs could give, all of them busy, at this round's cost per ``count``."""
        return self.cpus * count / self.busy if self.busy else 0.0

    def line(self, count: int) -> str:
        per = self.per(count)
        if not per:
            return ""
        parts = ", ".join(f"{name} {per[name]:.2f}" for name in self.groups if per[name] >= 0.005)
        return (
            f"machine {self.busy_share:.0%} busy on {self.cpus} CPUs (steal {self.steal_share:.0%}); "
            f"CPU ms per 202: {parts}; total {per['total']:.2f}, "
            f"{self.machine_rate(count):.0f}/s with every CPU busy at that cost"
        )


def split(before: Snapshot, after: Snapshot, seconds: float, groups: Mapping[str, Sequence[int]]) -> Split:
    """The CPU used between two snapshots, by group. A process that started in between counts from its
    start; one that ended in between is lost to its group and counted in "other"."""

    def used(pid: int) -> float:
        if pid not in after.processes:
            return 0.0
        return after.processes[pid] - before.processes.get(pid, 0.0)

    named = {pid for pids in groups.values() for pid in pids}
    result = {name: sum(used(pid) for pid in pids) for name, pids in groups.items()}
    result[POSTGRESQL] = sum(used(pid) for pid in after.processes if pid not in named)
    result[WRK] = after.children - before.children
    busy = after.busy - before.busy
    result[OTHER] = max(0.0, busy - sum(result.values()))
    return Split(seconds=seconds, cpus=os.cpu_count() or 1, busy=busy, steal=after.steal - before.steal,
                 groups=result)
