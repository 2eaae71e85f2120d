"""The data-level check (latitude verify) on a 1,000,000-row table across three regions: its
speed, and what it costs the primary's throughput.

Run: .venv/bin/python bench/verify.py [--rows 1000000] [--seconds 20] [--rounds 2]
Prints one JSON object.

One fresh stack (etcd x3, PostgreSQL x3, coordinators x3, agents), the primary in us-east-1.
A table of --rows rows (bigint key, text, numeric, timestamptz: about 80 bytes a row) is
written on the primary; pgbench's own tables (scale 1) beside it.
- Check speed: AdminService.Verify of that table alone, through a coordinator and the three
  agents, the cluster otherwise idle: rows per second (the primary's rows over the check's
  elapsed time, from the report), best and median of three runs.
- Cost to the primary: pgbench -N (simple updates) with 4 clients for --seconds, alternately
  without and with the check running throughout (checks one after another until pgbench
  ends), --rounds times each; transactions per second, median per condition, and the slowdown.
  Throughout the run with the check, the check reads the table while pgbench writes to other
  tables on the same primary, and every region is on this one machine: the standbys' work
  competes with the primary for the same cores, which a real deployment does not do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics

from latitude import verify_view
from latitude.stack.harness import running_stack
from latitude.stack.postgres import SUPERUSER
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2
from tests.integration.connections import session

PRIMARY = "us-east-1"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
TABLE = "public.bench_verify"


async def fill(stack: Stack, rows: int) -> None:
    async with session(stack, PRIMARY) as conn:
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


def _pgbench_env(stack: Stack) -> tuple[str, dict]:
    state = stack.state()
    node = stack.postgres_node(state, PRIMARY)
    conninfo = f"host={node.host} port={node.port} user={SUPERUSER} dbname=postgres"
    return conninfo, {**os.environ, "PGPASSWORD": state.superuser_password}


async def pgbench(stack: Stack, *args: str) -> str:
    conninfo, env = _pgbench_env(stack)
    process = await asyncio.create_subprocess_exec(
        PGBENCH, *args, conninfo, env=env,
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


async def check(stack: Stack) -> admin_pb2.VerifyReport:
    request = admin_pb2.VerifyRequest(tables=[TABLE])
    return await verify_view.verify(stack.coordinator_addresses(stack.state()), request, 600.0)


async def load(stack: Stack, seconds: int, with_check: bool) -> dict:
    """pgbench for ``seconds``; with the check, checks back to back until pgbench ends (the
    last one may run past it; its rows still count for the check's speed)."""
    args = ("-n", "-N", "-c", "4", "-j", "2", "-T", str(seconds))
    bench = asyncio.create_task(pgbench(stack, *args))
    checks: list[admin_pb2.VerifyReport] = []
    if with_check:
        while not bench.done():
            checks.append(await check(stack))
    result = {"tps": tps(await bench)}
    if with_check:
        speeds = [c.rows_per_second for c in checks]
        result["checks"] = len(checks)
        result["check_rows_per_second"] = round(statistics.median(speeds))
        result["all_consistent"] = all(c.consistent for c in checks)
    return result


async def bench(stack: Stack, rows: int, seconds: int, rounds: int) -> dict:
    await fill(stack, rows)
    await pgbench(stack, "-i", "-s", "1", "-q")
    alone = [await check(stack) for _ in range(3)]
    speeds = [r.rows_per_second for r in alone]
    runs: dict[str, list[dict]] = {"without_check": [], "with_check": []}
    for _ in range(rounds):
        runs["without_check"].append(await load(stack, seconds, with_check=False))
        runs["with_check"].append(await load(stack, seconds, with_check=True))
    without = statistics.median(r["tps"] for r in runs["without_check"])
    with_ = statistics.median(r["tps"] for r in runs["with_check"])
    last = alone[-1]
    return {
        "rows": rows,
        "check_alone": {
            "rows_per_second_best": round(max(speeds)),
            "rows_per_second_median": round(statistics.median(speeds)),
            "elapsed_seconds": [round(r.elapsed_seconds, 2) for r in alone],
            "ranges": last.ranges,
            "agreeing_fraction": last.agreeing_fraction,
            "consistent": all(r.consistent for r in alone),
        },
        "pgbench_tps_without_check": round(without, 1),
        "pgbench_tps_with_check": round(with_, 1),
        "slowdown": round(1 - with_ / without, 3),
        "within_10_percent": with_ >= 0.9 * without,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with running_stack() as stack:
        result = asyncio.run(bench(stack, args.rows, args.seconds, args.rounds))
    print(
        json.dumps(
            {
                "benchmark": "verify",
                "what": "latitude verify of one table across three regions (rows per second "
                "of the check, idle cluster) and pgbench -N -c 4 throughput on the primary "
                "without and with checks running back to back",
                **result,
                "pgbench": "-n -N -c 4 -j 2, scale 1",
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
