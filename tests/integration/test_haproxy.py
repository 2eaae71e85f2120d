"""A real HAProxy (Debian's) beside a private stack, configured from deploy/haproxy/haproxy.cfg:
clients write through one address across a switchover and a kill -9 failover.

Two loads go through HAProxy's write port. A Python writer (asyncpg) reconnects to the same
address whenever its connection fails, so it shows when writes resume; every insert returns the
port and clock of the server that took it, so that each acknowledged row is known to have been
written by which database, and when. pgbench runs beside it, as the issue asks, but pgbench ends
a client at its first lost connection and never reconnects: a failover always cuts connections,
so each pgbench run lasts until the next failover, and a new run starts on the same address.

Safety is judged on the databases: every acknowledged row exists on the new primary
(synchronous replication and a switchover lose nothing), no row was taken by the old primary
after it was fenced, and HAProxy never had two servers up in its write listener.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from latitude.admin_client import call_leader
from latitude.errors import StackError
from latitude.stack import haproxy, processes
from latitude.stack.harness import running_stack, superuser_conninfo
from latitude.stack.postgres import SUPERUSER
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2
from tests.integration.connections import (
    CONNECTION_TROUBLE,
    TLS,
    Ack,
    Writer,
    eventually,
    failover_from,
    kill_region,
    missing_on,
    query,
    running,
    session,
    streams_to,
)
from tests.integration.test_operations import maintenance

pytestmark = pytest.mark.stack

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
# One row per pgbench transaction: (run, client, n) with n counting each client's transactions.
PGBENCH_SCRIPT = (
    "\\set n :n + 1\nINSERT INTO haproxy_pgbench (run, client, n) VALUES (:run, :client_id, :n);\n"
)


@pytest.fixture(scope="module")
def haproxy_stack():
    """A synchronous stack with HAProxy; ``down`` must stop HAProxy too."""
    with running_stack(haproxy=True, synchronous=True) as stack:
        yield stack
        record = stack.state().processes[haproxy.COMPONENT]
        asyncio.run(stack.down())
        assert not processes.is_alive(record), "down left HAProxy running"


def write_address(stack: Stack) -> tuple[str, int]:
    state = stack.state()
    return state.host, state.ports[haproxy.WRITE_PORT]


async def through(stack: Stack, listener: str, sql: str):
    """One query on a fresh session through HAProxy's ``listener`` ("write" or "read")."""
    state = stack.state()
    port = state.ports[f"{haproxy.COMPONENT}.{listener}"]
    conn = await asyncpg.connect(
        host=state.host,
        port=port,
        user=SUPERUSER,
        password=state.superuser_password,
        database="postgres",
        timeout=3.0,
    )
    try:
        return await conn.fetchrow(sql, timeout=3.0)
    finally:
        await conn.close(timeout=3.0)


def regions_by_port(stack: Stack) -> dict[int, str]:
    state = stack.state()
    return {state.ports[f"postgres-{r.name}"]: r.name for r in stack.topology.regions}


class ProxyWriter(Writer):
    """The tests' Writer, but always to HAProxy's write address: never told where the
    primary is. Each acknowledgement names the region that took the row (from the server's
    port) and when the server wrote it (``written_at``, its clock, before its commit)."""

    def __init__(self, stack: Stack, table: str, timeout: float) -> None:
        super().__init__(stack, table, timeout)
        self._insert = (
            f"INSERT INTO {table} (id) VALUES ($1) "
            "RETURNING inet_server_port() AS port, extract(epoch FROM clock_timestamp()) AS at"
        )
        self.written_at: dict[int, float] = {}

    async def run(self) -> None:
        state = self._stack.state()
        host, port = write_address(self._stack)
        regions = regions_by_port(self._stack)
        conn, next_id = None, 1
        try:
            while True:
                try:
                    if conn is None:
                        conn = await asyncpg.connect(
                            host=host,
                            port=port,
                            user=SUPERUSER,
                            password=state.superuser_password,
                            database="postgres",
                            timeout=1.0,
                        )
                    row = await conn.fetchrow(self._insert, next_id, timeout=self._timeout)
                    self.acked.append(Ack(next_id, time.time(), regions[row["port"]]))
                    self.written_at[next_id] = float(row["at"])
                except CONNECTION_TROUBLE:
                    if conn is not None:
                        conn.terminate()
                    conn = None
                next_id += 1
                await asyncio.sleep(0.01)
        finally:
            if conn is not None:
                conn.terminate()


class WriteServers:
    """Samples HAProxy's stats 10 times a second: the most servers ever UP at once in its
    write listener, and every change of them (for a failure message)."""

    def __init__(self, stack: Stack) -> None:
        self._stats = haproxy.addresses(stack.state().host, stack.state().ports)["stats"]
        self.most_up = 0
        self.changes: list[tuple[float, tuple[str, ...]]] = []

    async def run(self) -> None:
        while True:
            try:
                up = tuple((await haproxy.servers_up(self._stats)).get("write", []))
            except StackError as err:  # HAProxy must keep answering
                up = (f"stats unreadable: {err}",)
            self.most_up = max(self.most_up, len(up))
            if not self.changes or self.changes[-1][1] != up:
                self.changes.append((time.time(), up))
            await asyncio.sleep(0.1)


class Pgbench:
    """pgbench -c 2 through HAProxy's write port until its connections are cut; its log
    says which transactions it saw committed."""

    def __init__(self, stack: Stack, workdir: Path, run: int) -> None:
        self._stack = stack
        self.run = run
        self._dir = workdir / f"pgbench-{run}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._dir.mkdir(parents=True)
        (self._dir / "insert.sql").write_text(PGBENCH_SCRIPT)
        host, port = write_address(self._stack)
        options = ["-n", "-c", "2", "-T", "300", "-l", "-D", "n=0", "-D", f"run={self.run}"]
        conninfo = superuser_conninfo(self._stack, host, port, self._dir) + " connect_timeout=3"
        self.process = await asyncio.create_subprocess_exec(
            PGBENCH,
            *options,
            "-f",
            str(self._dir / "insert.sql"),
            conninfo,
            cwd=self._dir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )

    async def ended(self, timeout: float) -> str:
        """Its output once it has ended on its own (cut off by the failover)."""
        assert self.process is not None
        try:
            out, _ = await asyncio.wait_for(self.process.communicate(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(
                f"pgbench run {self.run} still wrote {timeout} s after the failover"
            ) from None
        return out.decode(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    def acked(self) -> dict[int, int]:
        """Transactions each client saw committed (its -l log: a line per transaction)."""
        acked: dict[int, int] = {}
        for log in self._dir.glob("pgbench_log.*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():  # "failed" otherwise
                    acked[int(fields[0])] = acked.get(int(fields[0]), 0) + 1
        return acked

    async def missing_on(self, stack: Stack, region: str) -> int:
        """Transactions pgbench saw committed that ``region`` does not have."""
        acked = self.acked()
        async with session(stack, region) as conn:
            kept = await conn.fetchval(
                "SELECT count(*) FROM haproxy_pgbench p "
                "JOIN unnest($1::int[], $2::int[]) a(client, acked) USING (client) "
                "WHERE p.run = $3 AND p.n <= a.acked",
                list(acked),
                list(acked.values()),
                self.run,
            )
        return sum(acked.values()) - kept


def written_after(writer: ProxyWriter, region: str, moment: float) -> list[Ack]:
    """Rows ``region`` acknowledged that its server wrote after ``moment`` (wall clock)."""
    return [a for a in writer.acked if a.region == region and writer.written_at[a.id] > moment]


async def test_the_template_rendered_for_the_stack_is_a_configuration_haproxy_accepts(
    tmp_path: Path,
):
    backends = [
        haproxy.Backend("us-east-1", "127.0.0.1:5432", "127.0.0.1", 8008),
        haproxy.Backend("eu-west-1", "127.0.0.1:5433", "127.0.0.1", 8009),
    ]
    listen = {"write": "127.0.0.1:6000", "read": "127.0.0.1:6001", "stats": "127.0.0.1:6002"}
    config = haproxy.write_config(tmp_path, listen, backends)
    await haproxy.check(haproxy.binary(), config)
    # And the check can fail: HAProxy names what it refuses.
    config.write_text(config.read_text().replace("on-marked-down", "on-marked-sideways"))
    with pytest.raises(StackError, match="(?s)checking .*haproxy.cfg failed .*on-marked-sideways"):
        await haproxy.check(haproxy.binary(), config)


async def test_up_runs_haproxy_routing_writes_to_the_primary_and_reads_to_standbys(
    haproxy_stack: Stack,
):
    stack = haproxy_stack
    status = await stack.status()
    state = stack.state()
    assert status.haproxy == haproxy.addresses(state.host, state.ports)
    assert status.processes[haproxy.COMPONENT]
    stats = status.haproxy["stats"]
    standbys = ["eu-west-1", "ap-southeast-1"]

    async def routed() -> bool:
        up = await haproxy.servers_up(stats)
        return up.get("write") == ["us-east-1"] and sorted(up.get("read", [])) == sorted(standbys)

    await eventually(routed, 15, "HAProxy to route writes to us-east-1 and reads to standbys")
    by_port = regions_by_port(stack)
    write = await through(stack, "write", "SELECT pg_is_in_recovery() r, inet_server_port() p")
    assert (write["r"], by_port[write["p"]]) == (False, "us-east-1")
    read = await through(stack, "read", "SELECT pg_is_in_recovery() r, inet_server_port() p")
    assert read["r"] and by_port[read["p"]] in standbys

    # A standby in maintenance answers 503 on /replica: the read listener drops it, and
    # takes it back once the flag is cleared.
    resting, serving = standbys
    try:
        await maintenance(stack, resting, True, reason="kernel upgrade")

        async def dropped() -> bool:
            return (await haproxy.servers_up(stats)).get("read") == [serving]

        await eventually(dropped, 15, f"HAProxy to drop {resting} from its read listener")
        read = await through(stack, "read", "SELECT inet_server_port() p")
        assert by_port[read["p"]] == serving
    finally:
        await maintenance(stack, resting, False)
    await eventually(routed, 15, f"HAProxy to take {resting} back for reads")

    # A crashed HAProxy is started again by `up`, on the same ports, like any component.
    killed = await stack.kill(haproxy.COMPONENT)
    _, started = await stack.up()
    assert started
    again = stack.state().processes[haproxy.COMPONENT]
    assert again.pid != killed.pid and processes.is_alive(again)
    write = await through(stack, "write", "SELECT inet_server_port() p")
    assert by_port[write["p"]] == "us-east-1"


@pytest.mark.timeout(420)
async def test_writes_through_haproxy_follow_a_switchover_and_a_kill_9_losing_nothing(
    haproxy_stack: Stack, tmp_path: Path
):
    stack = haproxy_stack
    async with session(stack, "us-east-1") as conn:
        await conn.execute(
            "CREATE TABLE haproxy_writes (id int PRIMARY KEY);"
            "CREATE TABLE haproxy_pgbench (run int, client int, n int, "
            "PRIMARY KEY (run, client, n))"
        )
        await eventually(
            lambda: conn.fetchval("SELECT current_setting('synchronous_standby_names') <> ''"),
            15,
            "the leader to make replication synchronous",
        )
    workdir = tmp_path
    writer = ProxyWriter(stack, "haproxy_writes", timeout=5.0)
    servers = WriteServers(stack)
    runs = [Pgbench(stack, workdir, 1), Pgbench(stack, workdir, 2)]
    try:
        async with running(writer.run(), servers.run()):
            # 1. A switchover us-east-1 -> eu-west-1.
            await runs[0].start()
            await eventually(lambda: writer.acked_on("us-east-1") >= 50, 15, "writes to land")
            request = admin_pb2.SwitchoverRequest(target_region="eu-west-1", wait=True)
            addresses = stack.coordinator_addresses(stack.state())
            reply = await call_leader(addresses, "Switchover", request, 60, tls=TLS)
            record = reply.failover
            assert record.phase == admin_pb2.FAILOVER_PHASE_COMPLETED, record.error
            await eventually(lambda: writer.acked_on("eu-west-1") >= 20, 15, "writes resumed")
            output = await runs[0].ended(30)
            assert sum(runs[0].acked().values()) > 0, output
            assert await missing_on(stack, "eu-west-1", "haproxy_writes", writer) == []
            assert await runs[0].missing_on(stack, "eu-west-1") == 0, output
            fenced = record.steps["fenced"].ToNanoseconds() / 1e9
            late = written_after(writer, "us-east-1", fenced)
            assert late == [], f"the old primary took {len(late)} rows after its fence"

            # 2. kill -9 of the new primary's region, once the old one follows it.
            await streams_to(stack, "eu-west-1", "us-east-1", timeout=30)
            await runs[1].start()
            await eventually(lambda: sum(runs[1].acked().values()) >= 20, 15, "pgbench again")
            acked = len(writer.acked)
            await eventually(lambda: len(writer.acked) >= acked + 20, 15, "writes to land")
            killed_at = await kill_region(stack, "eu-west-1")
            dead_at = time.time()  # its server took writes until its kill, after killed_at
            record = await failover_from(stack, "eu-west-1", timeout=60, since=killed_at)
            assert record.phase == admin_pb2.FAILOVER_PHASE_COMPLETED, record.error
            new = record.to_region

            def resumed() -> list[Ack]:
                # us-east-1 may be the new primary again: only what it took after the kill.
                return [a for a in writer.acked if a.region == new and a.at > killed_at]

            await eventually(lambda: len(resumed()) >= 20, 20, f"writes resumed on {new}")
            output = await runs[1].ended(30)
            missing = await missing_on(stack, new, "haproxy_writes", writer)
            assert missing == [], f"{len(missing)} acknowledged rows lost: {missing[:5]}"
            assert await runs[1].missing_on(stack, new) == 0, output
            late = written_after(writer, "eu-west-1", dead_at)
            assert late == [], f"rows written by the killed region after its death: {late[:5]}"
            first_new = resumed()[0].at
            late = [a for a in writer.acked if a.region == "eu-west-1" and a.at > first_new]
            assert late == [], f"the old primary acknowledged rows after the new one: {late[:5]}"
            assert await query(stack, new, "SELECT NOT pg_is_in_recovery()")
    finally:
        for run in runs:
            run.stop()
    assert servers.most_up == 1, f"two write servers up at once: {servers.changes}"
    # Every acknowledged row came through the one address, from the regions that led in turn.
    assert {a.region for a in writer.acked} == {"us-east-1", "eu-west-1", new}
