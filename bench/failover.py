"""Failover and switchover under write load: timings, unavailability, loss.

Run: .venv/bin/python bench/failover.py [--trials 5] [--switchovers 6] [--synchronous-trials 5]
Prints one JSON object with three parts.

Automatic failover (asynchronous replication): each trial starts a fresh stack and puts two
loads on the primary (us-east-1):
- a Python client inserting one row (a unique id) every ~10 ms in autocommit into the CURRENT
  write region, read from GetStatus whenever its connection fails (0.5 s timeouts); it
  timestamps every acknowledged insert;
- pgbench -n -c 4 (one INSERT of (client, n) per transaction, n counting each client's
  transactions), whose per-transaction log (-l) says which rows it saw acknowledged.
After 1-2 s (random), the agent and the PostgreSQL of us-east-1 are killed with SIGKILL. Timings
run from the kill (wall clock) to the steps of the failover record, read from etcd
(<prefix>/failover/current) once it has finished. The write-unavailability window is the
Python client's: its last acknowledged insert on the old primary to its first on the new one.
Loss: acknowledged rows missing on the new primary (replication is asynchronous), set beside
the record's data-loss bound.

Through HAProxy: every stack runs with the stack's HAProxy (`latitude up --haproxy`,
deploy/haproxy/haproxy.cfg) and a second Python client like the first writes through HAProxy's
write port instead: it is never told where the primary is, reconnects to the same address, and
learns which region took each row from the server's port. Its window (last acknowledged insert on
the old primary to the first on the new one) is reported beside the direct client's, with its
loss, in every part below.

Planned switchover: on one stack, switchovers us-east-1 -> eu-west-1 and back, one after the
other, under the Python client's load; the window is its last acknowledged insert on the old
primary to its first on the new one. Loss: acknowledged rows missing at the end.

Synchronous replication: on one stack with synchronous = true, the same kill -9 trials one
after the other, each killing the primary of the moment; between trials the killed region is
brought back through the stack's ``up`` and rejoins (pg_rewind) before the next kill.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import time
from pathlib import Path

import asyncpg

from coordinator.etcd import Etcd
from latitude.admin_client import NoCoordinator, call_leader, cluster_status
from latitude.stack import haproxy, processes
from latitude.stack.harness import running_stack, superuser_conninfo
from latitude.stack.postgres import SUPERUSER, connect
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2

OLD = "us-east-1"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
RECORD_KEY = b"/latitude/failover/current"  # the coordinators' default etcd prefix
SCRIPT = "\\set n :n + 1\nINSERT INTO bench_pgbench (client, n) VALUES (:client_id, :n);\n"
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
             asyncpg.InternalClientError)  # fmt: skip
STEPS = ("detected", "fenced", "selected", "promoted", "redirected", "repointed")


class Writer:
    """One row at a time into the current write region; remembers every acknowledged id.
    ``through_haproxy``: into HAProxy's write port, whatever the write region; each row's
    region is the port of the server that took it."""

    def __init__(
        self, stack: Stack, old: str = OLD, table: str = "bench_writes", through_haproxy=False
    ) -> None:
        self._stack = stack
        self._state = stack.state()
        self._old = old
        self.table = table
        self._insert = f"INSERT INTO {table} VALUES ($1) RETURNING inet_server_port()"
        self._through_haproxy = through_haproxy
        self._regions = {
            self._state.ports[f"postgres-{r.name}"]: r.name for r in stack.topology.regions
        }
        self.acks: list[tuple[int, float, str]] = []  # (id, wall time, region)
        self.failed_attempts: dict[str, int] = {}  # by exception class
        self.moved = 0  # rows acknowledged outside the old primary
        self.landed = asyncio.Event()  # set at 20 of them

    async def _connect(self, region: str) -> asyncpg.Connection:
        if not self._through_haproxy:
            node = self._stack.postgres_node(self._state, region)
            return await connect(node, self._state.superuser_password, timeout=0.5)
        return await asyncpg.connect(
            host=self._state.host,
            port=self._state.ports[haproxy.WRITE_PORT],
            user=SUPERUSER,
            password=self._state.superuser_password,
            database="postgres",
            timeout=0.5,
        )

    async def _write_region(self, current: str) -> str:
        try:
            view = await cluster_status(self._stack.coordinator_addresses(self._state), 0.5)
        except NoCoordinator:
            return current
        return view.write_region or current

    async def run(self) -> None:
        region, conn, next_id = self._old, None, 1
        try:
            while True:
                try:
                    if conn is None:
                        conn = await self._connect(region)
                    row_id, next_id = next_id, next_id + 1
                    port = await conn.fetchval(self._insert, row_id, timeout=0.5)
                    region = self._regions[port]
                    self.acks.append((row_id, time.time(), region))
                    self.moved += region != self._old
                    if self.moved >= 20:
                        self.landed.set()
                    await asyncio.sleep(0.01)
                except DB_ERRORS as err:
                    kind = type(err).__name__
                    self.failed_attempts[kind] = self.failed_attempts.get(kind, 0) + 1
                    if conn is not None:
                        conn.terminate()
                    conn = None
                    if not self._through_haproxy:
                        region = await self._write_region(region)
                    await asyncio.sleep(0.01)
        finally:
            if conn is not None:
                conn.terminate()


def pgbench_acked(workdir: Path) -> dict[int, int]:
    """Transactions each pgbench client saw committed, from its -l log."""
    acked: dict[int, int] = {}
    for log in workdir.glob("pgbench_log.*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():  # "failed"/"skipped" otherwise
                acked[int(fields[0])] = acked.get(int(fields[0]), 0) + 1
    return acked


def coordinator_problems(stack: Stack) -> list[str]:
    lines = []
    for log in sorted((stack.dir / "logs").glob("coordinator*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if any(word in line for word in ("ERROR", "Traceback", "CRITICAL", "not failing")):
                lines.append(f"{log.stem}: {line.strip()[:200]}")
    return lines


async def read_record(etcd: Etcd) -> admin_pb2.FailoverStatus | None:
    with contextlib.suppress(Exception):
        kv = await etcd.get(RECORD_KEY, timeout=0.5)
        if kv is not None:
            return admin_pb2.FailoverStatus.FromString(kv.value)
    return None


async def wait_finished(
    etcd: Etcd, since: float, timeout: float = 30.0
) -> admin_pb2.FailoverStatus:
    """The record of the failover started after ``since`` (wall clock), once finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = await read_record(etcd)
        if (
            record is not None
            and record.started_at.ToNanoseconds() / 1e9 > since
            and record.HasField("finished_at")
        ):
            return record
        await asyncio.sleep(0.05)
    raise RuntimeError(f"no finished failover within {timeout} s: {await read_record(etcd)}")


def prepare(workdir: Path) -> None:
    workdir.mkdir()
    (workdir / "insert.sql").write_text(SCRIPT)


async def start_pgbench(stack: Stack, workdir: Path, old: str) -> asyncio.subprocess.Process:
    node = stack.postgres_node(stack.state(), old)
    conninfo = superuser_conninfo(stack, node.host, node.port, workdir)
    return await asyncio.create_subprocess_exec(
        PGBENCH, "-n", "-c", "4", "-T", "300", "-l", "-D", "n=0", "-f", str(workdir / "insert.sql"),
        conninfo, cwd=workdir,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def trial(stack: Stack, workdir: Path, old: str = OLD) -> dict:
    """kill -9 of ``old`` (the primary) under load; the failover it caused, measured."""
    prepare(workdir)
    await stack.status()  # an agent may have restarted its server: learn the postmaster
    state = stack.state()
    password = state.superuser_password
    conn = await connect(stack.postgres_node(state, old), password)
    await conn.execute(
        "DROP TABLE IF EXISTS bench_writes, bench_haproxy, bench_pgbench;"
        "CREATE TABLE bench_writes (id bigint PRIMARY KEY, at timestamptz DEFAULT now());"
        "CREATE TABLE bench_haproxy (id bigint PRIMARY KEY, at timestamptz DEFAULT now());"
        "CREATE TABLE bench_pgbench (client int, n int, PRIMARY KEY (client, n))"
    )
    await conn.close()
    certs = stack.etcd_certs(state)
    etcd = Etcd(
        [m.endpoint for m in stack.etcd_members(state)], tls=None if certs is None else certs.root
    )
    await etcd.connect()
    writer = Writer(stack, old)
    writers = [writer]
    if stack.has_haproxy(state):
        writers.append(Writer(stack, old, "bench_haproxy", through_haproxy=True))
    writing = [asyncio.create_task(w.run()) for w in writers]
    pgbench = await start_pgbench(stack, workdir, old)
    try:
        await asyncio.sleep(random.uniform(1.0, 2.0))
        agent, postgres = (state.processes[f"{p}-{old}"] for p in ("agent", "postgres"))
        killed_at = time.time()
        os.kill(agent.pid, signal.SIGKILL)
        os.kill(postgres.pid, signal.SIGKILL)
        await asyncio.gather(processes.wait_gone(agent, 5), processes.wait_gone(postgres, 5))
        record = await wait_finished(etcd, since=killed_at)
        # Let the writers land a few rows on the new primary (or give up after 10 s).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(w.landed.wait() for w in writers)), 10)
        try:
            output, _ = await asyncio.wait_for(pgbench.communicate(), 10)
            pgbench_exit = f"exited {pgbench.returncode}"
        except TimeoutError:
            pgbench.kill()
            output, _ = await pgbench.communicate()
            pgbench_exit = "still running after the failover; killed (its log may be cut)"
    finally:
        for task in writing:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if pgbench.returncode is None:
            pgbench.kill()
            await pgbench.wait()
        await etcd.close()

    new = record.to_region
    result: dict = {
        "phase": admin_pb2.FailoverPhase.Name(record.phase),
        "from_region": record.from_region,
        "to_region": new,
        "error": record.error,
        "selection_reason": record.selection_reason,
        "seconds_after_kill": {
            step: round(record.steps[step].ToNanoseconds() / 1e9 - killed_at, 3)
            for step in STEPS
            if step in record.steps
        },
        # None: unknown in bytes (the old primary was unreachable; see the seconds bound).
        "data_loss_bound_bytes": record.data_loss_bound_bytes
        if record.HasField("data_loss_bound_bytes")
        else None,
        "data_loss_bound_seconds": round(record.data_loss_bound_seconds, 3),
        "old_primary_lsn": record.old_primary_lsn,
        "promoted_lsn": record.promoted_lsn,
        "coordinator_log_problems": await asyncio.to_thread(coordinator_problems, stack),
    }
    acked_pgbench = await asyncio.to_thread(pgbench_acked, workdir)
    text = output.decode(errors="replace")
    processed = next(
        (int(line.split(":")[1]) for line in text.splitlines()
         if line.startswith("number of transactions actually processed")), None,
    )  # fmt: skip
    conn = await connect(stack.postgres_node(state, new), password)
    try:
        missing = [await missing_rows(conn, w) for w in writers]
        kept, rows = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE p.n <= a.acked), count(*) FROM bench_pgbench p "
            "LEFT JOIN unnest($1::int[], $2::int[]) a(client, acked) USING (client)",
            list(acked_pgbench), list(acked_pgbench.values()),
        )  # fmt: skip
    finally:
        await conn.close()
    # The bound counts back from when the old primary's writes certainly ended.
    ended = (record.fence_deadline if record.HasField("fence_deadline")
             else record.steps["fenced"]).ToNanoseconds() / 1e9  # fmt: skip
    result["writer"] = writer_figures(writer, missing[0], record, ended, killed_at, old)
    if len(writers) > 1:
        result["haproxy_writer"] = writer_figures(
            writers[1], missing[1], record, ended, killed_at, old
        )
    result["pgbench"] = {
        "exit": pgbench_exit,
        "transactions_processed_summary": processed,
        "acknowledged_by_log": sum(acked_pgbench.values()),
        "acknowledged_kept_on_new_primary": kept,
        "lost": sum(acked_pgbench.values()) - kept,
        "rows_on_new_primary": rows,
        "last_lines": text.strip().splitlines()[-3:],
    }
    return result


async def missing_rows(conn: asyncpg.Connection, writer: Writer) -> set[int]:
    """The writer's acknowledged ids that the database of ``conn`` does not have."""
    return set(
        await conn.fetchval(
            "SELECT coalesce(array_agg(a.id), '{}') FROM unnest($1::bigint[]) a(id) "
            f"WHERE NOT EXISTS (SELECT 1 FROM {writer.table} w WHERE w.id = a.id)",
            [a[0] for a in writer.acks],
        )
    )


def writer_figures(
    writer: Writer,
    missing: set[int],
    record: admin_pb2.FailoverStatus,
    ended: float,
    killed_at: float,
    old: str,
) -> dict:
    """What one writer saw of a failover: its window without writes, and its loss."""
    old_acks = [a for a in writer.acks if a[2] == old]
    new_acks = [a for a in writer.acks if a[2] != old]
    lost_acks = [a for a in writer.acks if a[0] in missing]
    lost_span = [round(ended - a[1], 3) for a in (lost_acks[:1] + lost_acks[-1:])]
    return {
        "acknowledged": len(writer.acks),
        "acknowledged_on_old_primary": len(old_acks),
        "acknowledged_on_old_primary_after_kill": sum(a[1] > killed_at for a in old_acks),
        "lost": len(missing),
        # The first and the last lost row: acknowledged this long before the writes ended.
        "lost_acknowledged_seconds_before_writes_ended": lost_span or None,
        "lost_outside_the_bound": sum(
            ended - a[1] > record.data_loss_bound_seconds for a in lost_acks
        ),
        "failed_attempts": writer.failed_attempts,
        "write_unavailable_seconds": round(new_acks[0][1] - old_acks[-1][1], 3)
        if old_acks and new_acks
        else None,
        "last_ack_before_kill_seconds": round(killed_at - old_acks[-1][1], 3) if old_acks else None,
        "first_ack_after_kill_seconds": round(new_acks[0][1] - killed_at, 3) if new_acks else None,
    }


def stats(values: list[float | None]) -> dict:
    present = [v for v in values if v is not None]
    if not present:
        return {"values": values}
    return {"p50": round(statistics.median(present), 3), "max": round(max(present), 3),
            "values": values}  # fmt: skip


def through_haproxy(trials: list[dict]) -> dict:
    """The HAProxy writer's figures over ``trials``: its window and its loss."""
    seen = [t["haproxy_writer"] for t in trials if "haproxy_writer" in t]
    if not seen:
        return {}
    return {
        "write_unavailable_seconds through HAProxy (its writer: last ack old -> first ack new)": (
            stats([w["write_unavailable_seconds"] for w in seen])
        ),
        "haproxy_writer_acknowledged_total": sum(w["acknowledged"] for w in seen),
        "haproxy_writer_lost_total": sum(w["lost"] for w in seen),
        "haproxy_writer_lost_outside_the_recorded_bound": sum(
            w["lost_outside_the_bound"] for w in seen
        ),
    }


def summarise(trials: list[dict]) -> dict:
    def metric(step: str) -> dict:
        return stats([t["seconds_after_kill"].get(step) for t in trials])

    redirected = metric("redirected")
    return {
        "detection_seconds (kill -> detected)": metric("detected"),
        "fence_seconds (kill -> fenced)": metric("fenced"),
        "promote_seconds (kill -> promoted)": metric("promoted"),
        "failover_seconds (kill -> redirected: write region moved)": redirected,
        "failover_seconds (kill -> repointed: standbys follow)": metric("repointed"),
        "write_unavailable_seconds (writer: last ack old -> first ack new)": stats(
            [t["writer"]["write_unavailable_seconds"] for t in trials]
        ),
        **through_haproxy(trials),
        "writer_acknowledged_total": sum(t["writer"]["acknowledged"] for t in trials),
        "writer_lost_total": sum(t["writer"]["lost"] for t in trials),
        "writer_lost_outside_the_recorded_bound": sum(
            t["writer"]["lost_outside_the_bound"] for t in trials
        ),
        "pgbench_acknowledged_total": sum(t["pgbench"]["acknowledged_by_log"] for t in trials),
        "pgbench_lost_total": sum(t["pgbench"]["lost"] for t in trials),
        "data_loss_bound_bytes": [t["data_loss_bound_bytes"] for t in trials],
        "data_loss_bound_seconds": [t["data_loss_bound_seconds"] for t in trials],
        "trials_losing_acknowledged_rows_with_zero_bound": sum(
            t["data_loss_bound_bytes"] == 0 and t["writer"]["lost"] + t["pgbench"]["lost"] > 0
            for t in trials
        ),
        "target": "total failover (kill -> redirected) p50 <= 6 s, max <= 8 s",
        "target_met": "p50" in redirected
        and redirected["p50"] <= 6.0
        and redirected["max"] <= 8.0
        and all(t["phase"] == "FAILOVER_PHASE_COMPLETED" for t in trials),
    }


async def switchovers(stack: Stack, count: int) -> dict:
    """``count`` switchovers us-east-1 -> eu-west-1 and back under the Python client's load."""
    state = stack.state()
    addresses = stack.coordinator_addresses(state)
    conn = await connect(stack.postgres_node(state, OLD), state.superuser_password)
    await conn.execute("CREATE TABLE bench_switchover (id bigint PRIMARY KEY)")
    await conn.execute("CREATE TABLE bench_switchover_haproxy (id bigint PRIMARY KEY)")
    await conn.close()
    writer = Writer(stack, OLD, "bench_switchover")
    writers = [writer]
    if stack.has_haproxy(state):
        writers.append(Writer(stack, OLD, "bench_switchover_haproxy", through_haproxy=True))
    writing = [asyncio.create_task(w.run()) for w in writers]
    runs, here = [], OLD
    try:
        for n in range(count):
            there = "eu-west-1" if here == OLD else OLD
            await until(lambda n=n: len(writer.acks) >= 50 * (n + 1), "writes to land")
            asked = time.time()
            request = admin_pb2.SwitchoverRequest(target_region=there, wait=True)
            record = (await call_leader(addresses, "Switchover", request, 60)).failover
            for w in writers:
                await until(
                    lambda a=asked, t=there, w=w: any(x[2] == t and x[1] > a for x in w.acks),
                    f"writes to land on {there}",
                )
            windows = [switch_window(w, here, there, asked) for w in writers]
            runs.append({
                "from": here, "to": there, "phase": admin_pb2.FailoverPhase.Name(record.phase),
                "error": record.error,
                "write_unavailable_seconds": windows[0],
                "write_unavailable_seconds_through_haproxy": windows[1] if windows[1:] else None,
                "switchover_seconds (asked -> redirected)": round(
                    record.steps["redirected"].ToNanoseconds() / 1e9 - asked, 3),
                "switchover_seconds (asked -> old primary rejoined)": round(
                    record.finished_at.ToNanoseconds() / 1e9 - asked, 3),
            })  # fmt: skip
            here = there
            await until(lambda h=here: streaming_standbys(stack, h), "both standbys to stream")
    finally:
        for task in writing:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    conn = await connect(stack.postgres_node(state, here), state.superuser_password)
    try:
        stored = {r["id"] for r in await conn.fetch("SELECT id FROM bench_switchover")}
        lost_through_haproxy = [len(await missing_rows(conn, w)) for w in writers[1:]]
    finally:
        await conn.close()
    windows = stats([r["write_unavailable_seconds"] for r in runs])
    through_haproxy = stats([r["write_unavailable_seconds_through_haproxy"] for r in runs])
    return {
        "what": "switchovers us-east-1 <-> eu-west-1 one after the other under the Python "
        "writer's load; window = its last acknowledged insert on the old primary to its first "
        "on the new one; lost = acknowledged rows missing at the end",
        "switchovers": count,
        "write_unavailable_seconds": windows,
        "acknowledged": len(writer.acks),
        "lost": sum(a[0] not in stored for a in writer.acks),
        "through_haproxy": {
            "write_unavailable_seconds": through_haproxy,
            "acknowledged": sum(len(w.acks) for w in writers[1:]),
            "lost": sum(lost_through_haproxy),
        }
        if writers[1:]
        else None,
        "target": "write unavailability <= 2 s, zero loss",
        "target_met": "max" in windows
        and windows["max"] <= 2.0
        and all(a[0] in stored for a in writer.acks)
        and all(r["phase"] == "FAILOVER_PHASE_COMPLETED" for r in runs),
        "per_switchover": runs,
    }


def switch_window(writer: Writer, here: str, there: str, asked: float) -> float:
    """The writer's last acknowledged insert on ``here`` to its first on ``there``."""
    first_new = next(a for a in writer.acks if a[2] == there and a[1] > asked)
    last_old = max(a[1] for a in writer.acks if a[2] == here and a[1] < first_new[1])
    return round(first_new[1] - last_old, 3)


async def streaming_standbys(stack: Stack, primary: str) -> bool:
    state = stack.state()
    try:
        conn = await connect(stack.postgres_node(state, primary), state.superuser_password)
    except DB_ERRORS:
        return False
    try:
        streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
        return await conn.fetchval(streaming) == len(stack.topology.regions) - 1
    finally:
        await conn.close()


async def until(look, what: str, timeout: float = 30.0) -> None:
    """Poll ``look`` (plain or async) until it is true; RuntimeError at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        seen = look()
        if asyncio.iscoroutine(seen):
            seen = await seen
        if seen:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def synchronous_trials(stack: Stack, count: int) -> list[dict]:
    """The kill -9 trials one after the other on one synchronous stack: each kills the
    primary of the moment; the killed region comes back through ``up`` and rejoins."""
    trials, primary = [], OLD
    state = stack.state()

    async def synchronous() -> bool:
        conn = await connect(stack.postgres_node(state, OLD), state.superuser_password)
        try:
            return bool(await conn.fetchval("SHOW synchronous_standby_names"))
        finally:
            await conn.close()

    await until(synchronous, "the leader to make replication synchronous")
    for n in range(count):
        result = await trial(stack, stack.dir.parent / f"pgbench-{n}", primary)
        log = stack.dir / "logs" / f"agent-{primary}.log"
        offset = log_size(log)
        started = time.monotonic()
        await stack.up()  # the killed region restarts fenced and rejoins as a standby
        result["old_primary_back"] = {
            "up_seconds (restart -> rejoined, streaming, every region HEALTHY)": round(
                time.monotonic() - started, 3),
            "rewound": "rewound with pg_rewind" in log_since(log, offset),
        }  # fmt: skip
        trials.append(result)
        primary = result["to_region"]
    return trials


def log_size(log: Path) -> int:
    return log.stat().st_size


def log_since(log: Path, offset: int) -> str:
    with log.open("rb") as lines:
        lines.seek(offset)
        return lines.read().decode(errors="replace")


def summarise_synchronous(trials: list[dict]) -> dict:
    acknowledged = sum(
        t["writer"]["acknowledged"] + t["pgbench"]["acknowledged_by_log"] for t in trials
    )
    lost = sum(t["writer"]["lost"] + t["pgbench"]["lost"] for t in trials)
    redirected = stats([t["seconds_after_kill"].get("redirected") for t in trials])
    return {
        "what": "synchronous = true: the kill -9 trials one after the other on one stack, each "
        "killing the primary of the moment (Python writer + pgbench -c 4 on it); between trials "
        "the killed region comes back through `up` and rejoins",
        "trials": len(trials),
        "failovers": [f"{t['from_region']} -> {t['to_region']}" for t in trials],
        "failover_seconds (kill -> redirected)": redirected,
        "write_unavailable_seconds (writer: last ack old -> first ack new)": stats(
            [t["writer"]["write_unavailable_seconds"] for t in trials]
        ),
        **through_haproxy(trials),
        "acknowledged (writer + pgbench)": acknowledged,
        "lost (writer + pgbench)": lost,
        "old_primary_rejoined_by_pg_rewind": sum(t["old_primary_back"]["rewound"] for t in trials),
        "old_primary_back_seconds": stats(
            [next(iter(t["old_primary_back"].values())) for t in trials]
        ),
        "target": "zero acknowledged transactions lost",
        "target_met": lost == 0 and all(t["phase"] == "FAILOVER_PHASE_COMPLETED" for t in trials),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--switchovers", type=int, default=6)
    parser.add_argument("--synchronous-trials", type=int, default=5)
    args = parser.parse_args()
    trials = []
    for _ in range(args.trials):
        with running_stack(haproxy=True) as stack:
            trials.append(asyncio.run(trial(stack, stack.dir.parent / "pgbench")))
    with running_stack(haproxy=True) as stack:
        switching = asyncio.run(switchovers(stack, args.switchovers))
    with running_stack(synchronous=True, haproxy=True) as stack:
        synchronous = asyncio.run(synchronous_trials(stack, args.synchronous_trials))
    print(
        json.dumps(
            {
                "benchmark": "failover",
                "what": "kill -9 of us-east-1 (agent + PostgreSQL) at a random moment under a "
                "write load (Python writer every ~10 ms + pgbench -c 4); timings from the kill "
                "to the failover record's steps; loss = acknowledged rows missing on the new "
                "primary (asynchronous replication), and those lost outside the record's bound",
                "trials": args.trials,
                "summary": summarise(trials),
                "switchover": switching,
                "synchronous": {**summarise_synchronous(synchronous), "per_trial": synchronous},
                "per_trial": trials,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
