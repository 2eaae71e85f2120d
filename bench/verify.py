"""The data-level check (latitude verify) on a 1,000,000-row table across three regions: its
speed, and what it costs the primary's throughput.

Run: .venv/bin/python bench/verify.py [--rows 1000000] [--seconds 5] [--pairs 10] [--pace 30000]
Prints one JSON object.

One fresh stack (etcd x3, PostgreSQL x3, coordinators x3, agents), the primary in us-east-1.
A table of --rows rows (bigint key, text, numeric, timestamptz: about 80 bytes a row) is
written on the primary; pgbench's own tables (scale 1) beside it.
- Check speed: AdminService.Verify of that table alone, through a coordinator and the three
  agents, the cluster otherwise idle: rows per second (the primary's rows over the check's
  elapsed time, from the report), best and median of three runs; and the CPU seconds the
  check's backends used on the primary in each run (from /proc).
- Cost to the primary: pgbench -N (simple updates) with 4 clients, in --pairs pairs of
  windows of --seconds, one without and one with the check running throughout (the order
  alternating pair by pair), first with the check unpaced, then paced at --pace rows/s. The
  slowdown is the median over the pairs of 1 - tps with / tps without: pairs of short windows
  side by side cancel most of the background load's drift on a shared machine.
  Every region runs on this one machine: the standbys' share of the check competes with the
  primary for the same cores, which a deployment with a host per region does not do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
from pathlib import Path

from latitude import verify_view
from latitude.stack.harness import running_stack, superuser_conninfo
from latitude.stack.postgres import connect
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2

PRIMARY = "us-east-1"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
TABLE = "public.bench_verify"


async def fill(stack: Stack, rows: int) -> None:
    state = stack.state()
    conn = await connect(stack.postgres_node(state, PRIMARY), state.superuser_password)
    try:
        await conn.execute(
            "CREATE TABLE bench_verify (id bigint PRIMARY KEY, name text, amount numeric, "
            "at timestamptz)"
        )
        await conn.execute(
            "INSERT INTO bench_verify SELECT g, 'customer ' || g, g * 1.25, "
            "'2026-01-01'::timestamptz + g * interval '1 second' "
            "FROM generate_series(1, $1) g",
            rows,
            timeout=600,
        )
        await conn.execute("VACUUM ANALYZE bench_verify", timeout=600)
    finally:
        await conn.close()


async def pgbench(stack: Stack, *args: str) -> str:
    node = stack.postgres_node(stack.state(), PRIMARY)
    conninfo = superuser_conninfo(stack, node.host, node.port, stack.dir)
    process = await asyncio.create_subprocess_exec(
        PGBENCH, *args, conninfo,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed: {output.decode()[-2000:]}")
    return output.decode()


def tps(output: str) -> float:
    found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    if found is None:
        raise RuntimeError(f"no tps in pgbench's output: {output[-1000:]}")
    return float(found.group(1))


async def check(
    stack: Stack, pace: float = 0.0, comparing: asyncio.Event | None = None
) -> admin_pb2.VerifyReport:
    """One check of the table; ``comparing`` is set once it compares ranges."""
    request = admin_pb2.VerifyRequest(tables=[TABLE], max_rows_per_second=pace)

    def progress(update: admin_pb2.VerifyProgress) -> None:
        if comparing is not None and update.ranges_done:
            comparing.set()

    addresses = stack.coordinator_addresses(stack.state())
    return await verify_view.verify(addresses, request, 600.0, progress)


async def primary_check_cpu(stack: Stack) -> float:
    """CPU seconds the check's backends on the primary have used so far (user + system, from
    /proc; the agent keeps its connections for 30 s between calls)."""
    state = stack.state()
    conn = await connect(stack.postgres_node(state, PRIMARY), state.superuser_password)
    try:
        pids = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'latitude-verify'"
        )
    finally:
        await conn.close()
    return cpu_seconds([row["pid"] for row in pids])


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of these processes (this host's /proc)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def window(stack: Stack, seconds: int, pace: float | None) -> dict:
    """pgbench for ``seconds``; unless ``pace`` is None, with the check running throughout
    (comparing ranges before pgbench starts, cancelled when it ends; paced at ``pace`` rows/s,
    0: unpaced). A cancelled call cancels the check on the coordinator."""
    checker = None
    if pace is not None:
        comparing = asyncio.Event()
        checker = asyncio.create_task(check(stack, pace, comparing))
        # Under way: past the primary's position and the cuts, comparing ranges.
        await asyncio.wait_for(comparing.wait(), 60.0)
    try:
        output = await pgbench(stack, "-n", "-N", "-c", "4", "-j", "2", "-T", str(seconds))
        if checker is not None and checker.done():
            checker.result()  # a check that failed, or finished early, spoils the window
            raise RuntimeError("the check finished before pgbench: use a longer table")
    finally:
        if checker is not None:
            checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checker
    return {"tps": round(tps(output), 1)}


async def paired(stack: Stack, seconds: int, pairs: int, pace: float) -> dict:
    """``pairs`` windows without and with the check, the order alternating pair by pair so
    that background load drifting over the run hits both alike; the slowdown is the median of
    the pairs' (1 - with / without)."""
    ratios, without, with_ = [], [], []
    for i in range(pairs):
        order = (None, pace) if i % 2 == 0 else (pace, None)
        got = {condition: (await window(stack, seconds, condition))["tps"] for condition in order}
        without.append(got[None])
        with_.append(got[pace])
        ratios.append(got[pace] / got[None])
    slowdown = 1 - statistics.median(ratios)
    return {
        "max_rows_per_second": pace or "unpaced",
        "pgbench_tps_without_check_median": round(statistics.median(without), 1),
        "pgbench_tps_with_check_median": round(statistics.median(with_), 1),
        "slowdown_median_of_pairs": round(slowdown, 3),
        "within_10_percent": slowdown <= 0.10,
        "pairs_tps_without_with": [[a, b] for a, b in zip(without, with_, strict=True)],
    }


async def bench(stack: Stack, rows: int, seconds: int, pairs: int, pace: float) -> dict:
    await fill(stack, rows)
    await pgbench(stack, "-i", "-s", "1", "-q")
    alone, cpu = [], []
    for _ in range(3):
        before = await primary_check_cpu(stack)
        alone.append(await check(stack))
        cpu.append(await primary_check_cpu(stack) - before)
    speeds = [r.rows_per_second for r in alone]
    last = alone[-1]
    return {
        "rows": rows,
        "check_alone": {
            "rows_per_second_best": round(max(speeds)),
            "rows_per_second_median": round(statistics.median(speeds)),
            "elapsed_seconds": [round(r.elapsed_seconds, 2) for r in alone],
            "primary_cpu_seconds_per_check": [round(c, 2) for c in cpu],
            "ranges": last.ranges,
            "agreeing_fraction": last.agreeing_fraction,
            "consistent": all(r.consistent for r in alone),
        },
        "with_check": await paired(stack, seconds, pairs, 0.0),
        "with_paced_check": await paired(stack, seconds, pairs, pace),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=5, help="per pgbench window")
    parser.add_argument("--pairs", type=int, default=10, help="windows without/with, per pace")
    parser.add_argument("--pace", type=float, default=30_000, help="rows/s of the paced check")
    args = parser.parse_args()
    with running_stack() as stack:
        result = asyncio.run(bench(stack, args.rows, args.seconds, args.pairs, args.pace))
    print(
        json.dumps(
            {
                "benchmark": "verify",
                "what": "latitude verify of one table across three regions (rows per second "
                "of the check on an idle cluster, and the CPU its backends used on the "
                "primary) and pgbench -N -c 4 throughput on the primary in paired windows "
                "without and with the check running (unpaced, and paced)",
                **result,
                "pgbench": "-n -N -c 4 -j 2, scale 1",
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
