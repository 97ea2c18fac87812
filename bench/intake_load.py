"""Intake under concurrent load, against a bare peer (issue 9).

Starts the system as `pathways up` does (NATS and the four services as processes, free ports) and the
bare peer (bench/support/peer.py: FastAPI on the same uvicorn settings, parses the JSON, publishes it
to JetStream with an ack). Drives both with wrk from a separate process, in interleaved rounds (intake,
peer, intake, peer…), each request a distinct referral built from examples/gp-referral.json. Between
rounds it waits until the system is idle, so one round's downstream work (router, notify) does not eat
into the next. Reports referrals/s (202s), p50, p99, max, 503s, errors, timeouts and the ratio
intake/peer, on SQLite and on PostgreSQL (when one answers at 127.0.0.1:5432), and intake's CPU per 202
in each round, with how long its event loop waited for a CPU while runnable (from /proc), and where the
machine's CPU went in each round (``support.machine``): how busy its CPUs were, and each process's CPU per
202 (intake, router, notify, directory, NATS, the PostgreSQL server, wrk, the rest of the machine), so a
round bound by the machine's CPUs shows as such, with the rate they allow at that cost.

At 16 connections (``--paused-at``) each set of rounds also has a diagnostic round of intake with router
and notify paused (SIGSTOP; their work waits in JetStream and is done after the round). Its ratio is not
the target: it shows what intake's rate loses by sharing this machine's two cores with the pipeline behind
it, which the bare peer (nothing consumes what it publishes) never does.

Targets (this 2-core machine): at 16 connections every request 202, ratio >= 0.3 on PostgreSQL and
>= 0.2 on SQLite, p99 < 250 ms; at 256 connections no lock-up: every request answered within 5 s, with
202 or a fast 503 + Retry-After.

    .venv/bin/python bench/intake_load.py [--seconds 10] [--rounds 2] [--connections 16,256]
                                          [--databases sqlite,postgresql] [--paused-at 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from support import (
    WrkResult,
    cpu_seconds,
    ensure_wrk,
    paused,
    pin,
    postgres_available,
    quiesce,
    referral_template,
    run_queue_seconds,
    run_wrk,
    running_peer,
    running_system,
    table,
)
from support.machine import OTHER, POSTGRESQL, WRK, Split, snapshot, split

# One EHR client drives the whole load: intake's capacity is measured, not that client's rate limit
# (shared.protection; "" turns the kind's limit off). The services inherit this environment.
os.environ.setdefault("PATHWAYS_RATE_LIMITS", '{"ehr-client": ""}')

RATIO_TARGET = {"sqlite": 0.2, "postgresql": 0.3}
P99_TARGET_MS = 250.0
ANSWER_WITHIN_MS = 5000.0
# The diagnostic target: intake with router and notify stopped for the round (their work waits in
# JetStream), to show what sharing the machine's two cores with them costs intake's rate.
PAUSED = "intake, router+notify paused"
DOWNSTREAM = ("router", "notify")
# The columns of the machine-wide CPU table, in the order a referral (or the peer's request) meets them.
CPU_GROUPS = ("intake", "peer", "NATS", "router", "notify", "directory", POSTGRESQL, WRK, OTHER)


def combine(results: list[WrkResult]) -> WrkResult:
    """Rounds of one target at one concurrency, as one figure: rates summed over time, the median p50,
    the worst p99 and max."""
    statuses: dict[int, int] = {}
    for r in results:
        for code, n in r.statuses.items():
            statuses[code] = statuses.get(code, 0) + n
    return WrkResult(
        target=results[0].target,
        connections=results[0].connections,
        seconds=sum(r.seconds for r in results),
        statuses=statuses,
        busy_without_retry_after=sum(r.busy_without_retry_after for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        timeouts=sum(r.timeouts for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        max_ms=max(r.max_ms for r in results),
    )


def row(database: str, connections: int, r: WrkResult, ratio: str, check: str) -> list[object]:
    return [database, connections, r.target, f"{r.rate:.0f}", f"{r.p50_ms:.0f}", f"{r.p99_ms:.0f}",
            f"{r.max_ms:.0f}", r.accepted, r.busy, r.errors, r.timeouts, ratio, check]


def verdict(database: str, intake: WrkResult, peer: WrkResult) -> str:
    ratio = intake.rate / peer.rate if peer.rate else 0.0
    problems = []
    if intake.connections <= 16:
        if intake.errors or intake.timeouts or intake.busy:
            problems.append("not every request 202")
        if ratio < RATIO_TARGET[database]:
            problems.append(f"ratio < {RATIO_TARGET[database]}")
        if intake.p99_ms >= P99_TARGET_MS:
            problems.append(f"p99 >= {P99_TARGET_MS:g} ms")
    else:
        if intake.errors or intake.timeouts:
            problems.append("errors or timeouts")
        if intake.max_ms > ANSWER_WITHIN_MS:
            problems.append("an answer took over 5 s")
    return "met" if not problems else "MISSED: " + "; ".join(problems)


def cpu_row(database: str, connections: int, target: str, rounds: list[tuple[Split, int]]) -> list[object]:
    """One target's rounds at one concurrency: where the machine's CPU went, per 202 (all rounds together)."""
    accepted = sum(count for _, count in rounds)
    used = Split.combined([split for split, _ in rounds])
    per = used.per(accepted)
    return [
        database, connections, target, f"{used.busy_share:.0%}", f"{used.steal_share:.0%}",
        *(f"{per[name]:.2f}" if per.get(name, 0.0) >= 0.005 else "" for name in CPU_GROUPS),
        f"{per['total']:.2f}" if per else "", f"{used.machine_rate(accepted):.0f}" if used.busy else "",
    ]


def bench_database(database: str, args: argparse.Namespace) -> tuple[list[list[object]], list[list[object]]]:
    rows: list[list[object]] = []
    cpu_rows: list[list[object]] = []
    splits: dict[str, list[tuple[Split, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="pathways-load-") as tmp_name:
        tmp = Path(tmp_name)
        template = referral_template(tmp)
        front, back = ({1}, {0}) if args.pin else (None, None)
        with running_system(tmp, database) as system, running_peer(system.nats.url, front) as peer:  # type: ignore[union-attr]
            pids = [p.pid for p in system.processes.values()]
            # Every process of the system by name, NATS and the peer: where each round's CPU went.
            groups = {name: [p.pid] for name, p in system.processes.items()}
            groups["NATS"] = [system.nats.process.pid]  # type: ignore[union-attr]
            groups["peer"] = [peer.pid]
            watched = [pid for members in groups.values() for pid in members]
            if args.pin:
                for name, process in system.processes.items():
                    pin(process.pid, front if name == "intake" else back)
                pin(system.nats.process.pid, back)  # type: ignore[union-attr]
            targets = {"intake": system.url("intake"), "peer": peer.url}
            for name, url in targets.items():  # warm-up: connections, caches, JIT-free but lazy imports
                run_wrk(
                    url, connections=4, seconds=2, template=template, tag=f"warm-{name}", target=name, cpus=back
                )
                quiesce(pids)
            downstream = [system.processes[name].pid for name in DOWNSTREAM]
            for connections in args.connections:
                results: dict[str, list[WrkResult]] = {name: [] for name in targets}
                rounds = list(targets.items())
                if connections in args.paused_at:
                    rounds.insert(1, (PAUSED, targets["intake"]))
                    results[PAUSED] = []
                for round_no in range(args.rounds):
                    for name, url in rounds:
                        intake_pid = system.processes["intake"].pid
                        intake_cpu, intake_waited = cpu_seconds(intake_pid), run_queue_seconds(intake_pid)
                        machine_before = snapshot(watched)
                        with paused(downstream if name == PAUSED else []):
                            result = run_wrk(
                                url,
                                connections=connections,
                                seconds=args.seconds,
                                template=template,
                                tag=f"{database}-{connections}-{round_no}-{'paused' if name == PAUSED else name}",
                                target=name,
                                cpus=back,
                            )
                            intake_cpu = cpu_seconds(intake_pid) - intake_cpu
                            waited_until = run_queue_seconds(intake_pid)
                            used = split(machine_before, snapshot(watched), result.seconds, groups)
                        results[name].append(result)
                        splits.setdefault(name, []).append((used, result.accepted))
                        cost = ""
                        if name != "peer" and result.accepted:
                            cost = (
                                f" intake {intake_cpu * 1000 / result.accepted:.2f} ms CPU per 202, "
                                f"{intake_cpu / result.seconds:.0%} of a core"
                            )
                            if intake_waited is not None and waited_until is not None:
                                waited = (waited_until - intake_waited) / result.seconds
                                cost += f", its event loop waiting for a CPU {waited:.0%} of the round"
                        print(
                            f"  {database} c={connections} round {round_no + 1} {name}: {result.rate:.0f}/s "
                            f"p50 {result.p50_ms:.0f} ms p99 {result.p99_ms:.0f} ms max {result.max_ms:.0f} ms "
                            f"202={result.accepted} 503={result.busy} errors={result.errors} "
                            f"timeouts={result.timeouts}{cost}\n    {used.line(result.accepted)}",
                            flush=True,
                        )
                        # After a paused round, router and notify work off its backlog: let them finish.
                        quiesce(pids, limit=args.settle * (4 if name == PAUSED else 1))
                peer_result = combine(results["peer"])
                for name, measured in results.items():
                    if name == "peer":
                        continue
                    intake = combine(measured)
                    ratio = intake.rate / peer_result.rate if peer_result.rate else 0.0
                    check = "diagnostic, not the target"
                    if name == "intake":
                        check = verdict(database, intake, peer_result)
                    rows.append(row(database, connections, intake, f"{ratio:.2f}", check))
                rows.append(row(database, connections, peer_result, "", ""))
                cpu_rows += [cpu_row(database, connections, name, splits.pop(name)) for name in results]
    return rows, cpu_rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each wrk round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per target and concurrency")
    parser.add_argument("--connections", type=lambda s: [int(c) for c in s.split(",")], default=[16, 256])
    parser.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="longest wait between rounds for the system to go idle (downstream work)",
    )
    parser.add_argument(
        "--paused-at",
        type=lambda s: [int(c) for c in s.split(",") if c],
        default=[16],
        help="connection counts at which a diagnostic round of intake with router and notify paused is"
        " added to each set of rounds ('' for none)",
    )
    parser.add_argument("--databases", type=lambda s: s.split(","), default=["sqlite", "postgresql"])
    parser.add_argument(
        "--pin",
        action="store_true",
        help="intake and the peer on CPU 1, everything else (NATS, router, notify, directory, wrk) on CPU 0:"
        " the production layout, where intake has a core of its own, on this two-core machine",
    )
    args = parser.parse_args()
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        parser.error("--pin needs two CPUs")
    ensure_wrk()
    rows: list[list[object]] = []
    cpu_rows: list[list[object]] = []
    for database in args.databases:
        if database == "postgresql" and not postgres_available():
            print("PostgreSQL not reachable at 127.0.0.1:5432: skipped")
            continue
        measured, cpu_measured = bench_database(database, args)
        rows += measured
        cpu_rows += cpu_measured
    print()
    print(
        f"intake vs bare peer: wrk, {args.rounds} interleaved round(s) of {args.seconds:g} s per target; "
        "rate = 202s per second; latency over all answers"
        + ("; pinned: intake and peer on CPU 1, the rest and wrk on CPU 0" if args.pin else "")
    )
    print(
        table(
            [
                "database",
                "conns",
                "target",
                "ref/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "202",
                "503+RA",
                "errors",
                "timeouts",
                "ratio",
                "target check",
            ],
            rows,
        )
    )
    print()
    print(
        "where the machine's CPU went: how busy its CPUs were, and each part's CPU ms per 202 (all rounds of"
        " a target together; PostgreSQL = the server's processes, other = the rest of the machine); the last"
        " column is the rate every CPU busy at that cost would give"
    )
    print(
        table(
            ["database", "conns", "target", "busy", "steal", *CPU_GROUPS, "total ms", "rate at 100 %"],
            cpu_rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
