"""An independent monitor of the stack's databases, from the observer (the root namespace).

Every 50 ms, on every region's database, on a kept connection per (database, role) — the
superuser, and an application role that has only INSERT on the probe table — it tries
``BEGIN READ WRITE; INSERT ...; COMMIT`` with short timeouts, as a client that ignores every
session default would, and records every commit acknowledged: where, as whom, and when. What
it checks knows nothing of the control plane's own view:

- never two databases taking commits at once: no commit on one database between two on
  another (each certainly after the one before) within a second;
- no acknowledged row lost (within a failover's recorded data-loss bound in asynchronous mode);
- convergence: one writable primary, the write region equal to it, every other region
  streaming from it;
- write unavailability: the longest time with no commit acknowledged anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, field

import asyncpg

from latitude.admin_client import NoCoordinator, call_any, cluster_status
from latitude.stack.postgres import SUPERUSER, connect
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2
from tests.integration.connections import FAILOVER_RECORD

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
TABLE = "chaos_probe"
APP_ROLE = "chaos_app"
ROLES = (SUPERUSER, APP_ROLE)
# Two databases' commits interleaved within this long are two writable primaries (a failover
# and a fail-back take seconds each).
INTERLEAVE_SPAN = 1.0
_CONNECT_TIMEOUT = 0.3
_STATEMENT_TIMEOUT = 0.3
# A connection that dies mid-query can surface as any of these.
_BROKEN = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


@dataclass(frozen=True, slots=True)
class Ack:
    region: str
    role: str
    seq: int
    sent: float  # wall clock, before BEGIN
    at: float  # wall clock, when COMMIT was answered


def app_password(stack: Stack) -> str:
    """The application role's password: derived from the stack's, so every monitor of the
    stack agrees without storing it."""
    secret = stack.state().superuser_password.encode()
    return hashlib.sha256(b"chaos_app:" + secret).hexdigest()[:24]


async def prepare(stack: Stack, primary: str) -> None:
    """The probe table and the application role, on the current primary."""
    state = stack.state()
    conn = await connect(stack.postgres_node(state, primary), state.superuser_password)
    try:
        await conn.execute("SET default_transaction_read_only = off")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, run text NOT NULL, "
            "region text NOT NULL, role text NOT NULL, seq bigint NOT NULL, "
            "at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", APP_ROLE)
        literal = await conn.fetchval("SELECT quote_literal($1)", app_password(stack))
        verb = "ALTER" if exists else "CREATE"
        await conn.execute(f"{verb} ROLE {APP_ROLE} LOGIN PASSWORD {literal}")
        await conn.execute(f"GRANT INSERT ON {TABLE} TO {APP_ROLE}")
        await conn.execute(f"GRANT USAGE ON SEQUENCE {TABLE}_id_seq TO {APP_ROLE}")
    finally:
        await conn.close()


class Monitor:
    def __init__(self, stack: Stack, run: str, *, interval: float = 0.05) -> None:
        self._stack = stack
        self.run_id = run
        self._interval = interval
        self._seq = itertools.count(1)
        self.acks: list[Ack] = []
        self.attempts = 0
        self.started = time.time()
        self.stopped: float | None = None

    async def run(self) -> None:
        self.started = time.time()
        try:
            await asyncio.gather(*(self._probe(r, role) for r in REGIONS for role in ROLES))
        finally:
            self.stopped = time.time()

    async def _probe(self, region: str, role: str) -> None:
        state = self._stack.state()
        node = self._stack.postgres_node(state, region)
        password = state.superuser_password if role == SUPERUSER else app_password(self._stack)
        insert = f"INSERT INTO {TABLE} (run, region, role, seq) VALUES ($1, $2, $3, $4)"
        conn: asyncpg.Connection | None = None
        loop = asyncio.get_running_loop()
        try:
            while True:
                began = loop.time()
                try:
                    if conn is None:
                        conn = await asyncpg.connect(
                            host=node.host, port=node.port, user=role, password=password,
                            database="postgres", timeout=_CONNECT_TIMEOUT,
                            server_settings={
                                "application_name": "chaos-monitor",
                                "statement_timeout": str(int(_STATEMENT_TIMEOUT * 1000)),
                            },
                        )  # fmt: skip
                    seq = next(self._seq)
                    self.attempts += 1
                    sent = time.time()
                    await conn.execute("BEGIN READ WRITE", timeout=_STATEMENT_TIMEOUT)
                    await conn.execute(insert, self.run_id, region, role, seq,
                                       timeout=_STATEMENT_TIMEOUT)  # fmt: skip
                    await conn.execute("COMMIT", timeout=_STATEMENT_TIMEOUT)
                    self.acks.append(Ack(region, role, seq, sent, time.time()))
                except _BROKEN:
                    if conn is not None:
                        conn.terminate()
                    conn = None
                except asyncpg.PostgresError:
                    # Refused (read-only, a standby, shutting down): the connection may be
                    # fine; an aborted transaction must end before the next try.
                    try:
                        if conn is not None and conn.is_in_transaction():
                            await conn.execute("ROLLBACK", timeout=_STATEMENT_TIMEOUT)
                    except (*_BROKEN, asyncpg.PostgresError):
                        conn.terminate()
                        conn = None
                await asyncio.sleep(max(0.0, began + self._interval - loop.time()))
        finally:
            if conn is not None:
                conn.terminate()

    # -- checks --------------------------------------------------------------------------

    def overlaps(self, span: float = INTERLEAVE_SPAN) -> list[tuple[Ack, Ack, Ack]]:
        """Proof that two databases took writes at the same time: a commit on one database,
        then one on another, then again one on the first, each certainly after the one before
        (sent only once the one before had been answered), all within ``span``. However quick
        a handover, it has no such triple: the old primary takes nothing once the new one has.
        Two databases writable together for a probe interval (50 ms) or two leave one."""
        acks = sorted(self.acks, key=lambda a: a.at)
        found = []
        for i, first in enumerate(acks):
            middle = None
            for later in acks[i + 1 :]:
                if later.at - first.sent > span:
                    break
                if later.region != first.region:
                    if middle is None and later.sent >= first.at:
                        middle = later
                elif middle is not None and later.sent >= middle.at:
                    found.append((first, middle, later))
                    break
        return found

    def unavailability(self, start: float | None = None, end: float | None = None) -> float:
        """The longest time within [start, end] with no commit acknowledged anywhere."""
        start = self.started if start is None else start
        end = (self.stopped or time.time()) if end is None else end
        times = [start, *sorted(a.at for a in self.acks if start <= a.at <= end), end]
        return max(b - a for a, b in itertools.pairwise(times))

    def acked_on(self, region: str, since: float = 0.0) -> int:
        return sum(a.region == region and a.at >= since for a in self.acks)

    async def lost(
        self, primary: str, failovers: list[admin_pb2.FailoverStatus], *, synchronous: bool
    ) -> tuple[list[Ack], list[Ack]]:
        """(lost, excused): acknowledged rows missing on ``primary``; those a failover's
        recorded bound excuses (asynchronous mode only: acknowledged on its old primary
        within data_loss_bound_seconds before that primary's writes certainly ended)."""
        acked = list(self.acks)  # before the query: later ones may commit after its snapshot
        state = self._stack.state()
        conn = await connect(self._stack.postgres_node(state, primary), state.superuser_password)
        try:
            rows = await conn.fetch(f"SELECT seq FROM {TABLE} WHERE run = $1", self.run_id)
        finally:
            await conn.close()
        stored = {r["seq"] for r in rows}
        missing = [a for a in acked if a.seq not in stored]
        if synchronous:
            return missing, []
        lost, excused = [], []
        for ack in missing:
            if any(_within_bound(ack, f) for f in failovers):
                excused.append(ack)
            else:
                lost.append(ack)
        return lost, excused


def _within_bound(ack: Ack, failover: admin_pb2.FailoverStatus) -> bool:
    if failover.kind == admin_pb2.FAILOVER_KIND_SWITCHOVER:
        return False  # a switchover loses nothing
    if ack.region != failover.from_region or not failover.HasField("data_loss_bound_seconds"):
        return False
    if failover.HasField("fence_deadline"):
        ended = failover.fence_deadline.ToNanoseconds() / 1e9
    elif "fenced" in failover.steps:
        ended = failover.steps["fenced"].ToNanoseconds() / 1e9
    else:
        return False
    # Acknowledged after the old primary's writes certainly ended, a commit may not be lost:
    # the bound excuses only what came before.
    return ended - failover.data_loss_bound_seconds <= ack.at <= ended


# -- the cluster as the observer sees it ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatabaseView:
    region: str
    up: bool
    primary: bool = False
    writable: bool = False  # a primary whose sessions default to read-write
    streaming_to_it: frozenset[str] = frozenset()


async def database_view(stack: Stack, region: str) -> DatabaseView:
    state = stack.state()
    try:
        conn = await connect(stack.postgres_node(state, region), state.superuser_password, 1.0)
    except (*_BROKEN, asyncpg.PostgresError):
        return DatabaseView(region, False)
    try:
        row = await conn.fetchrow(
            "SELECT NOT pg_is_in_recovery() AS primary, "
            "current_setting('default_transaction_read_only') = 'off' AS writable, "
            "(SELECT array_agg(application_name) FROM pg_stat_replication "
            " WHERE state = 'streaming') AS streaming",
            timeout=1.0,
        )
    except (*_BROKEN, asyncpg.PostgresError):
        return DatabaseView(region, False)
    finally:
        conn.terminate()
    return DatabaseView(
        region, True, row["primary"], row["primary"] and row["writable"],
        frozenset(row["streaming"] or ()),
    )  # fmt: skip


async def status(stack: Stack) -> admin_pb2.ClusterStatus | None:
    try:
        return await cluster_status(stack.coordinator_addresses(stack.state()), 1.0)
    except NoCoordinator:
        return None


async def convergence(stack: Stack) -> tuple[str | None, str]:
    """(the primary, "") when the cluster has converged, else (None, why not)."""
    views = await asyncio.gather(*(database_view(stack, r) for r in REGIONS))
    writable = [v.region for v in views if v.writable]
    if len(writable) != 1:
        return None, f"writable primaries: {writable}"
    primary = writable[0]
    view = await status(stack)
    if view is None:
        return None, "no coordinator answers"
    if view.write_region != primary:
        return None, f"write region {view.write_region!r}, writable {primary}"
    if view.HasField("failover") and view.failover.phase not in (
        admin_pb2.FAILOVER_PHASE_COMPLETED,
        admin_pb2.FAILOVER_PHASE_ABORTED,
    ):
        return None, "a failover is running"
    streaming = next(v for v in views if v.region == primary).streaming_to_it
    behind = [r for r in REGIONS if r != primary and r not in streaming]
    if behind:
        return None, f"not streaming from {primary}: {behind}"
    return primary, ""


async def wait_converged(stack: Stack, timeout: float) -> tuple[str, float]:
    """Wait until the cluster converges: (the primary, how long it took)."""
    began = time.monotonic()
    deadline = began + timeout
    why = ""
    while time.monotonic() < deadline:
        primary, why = await convergence(stack)
        if primary is not None:
            return primary, time.monotonic() - began
        await asyncio.sleep(0.1)
    raise AssertionError(f"the cluster did not converge within {timeout:.0f} s: {why}")


async def failovers_since(stack: Stack, since: float) -> list[admin_pb2.Event]:
    """FAILOVER_STARTED events recorded at or after ``since`` (wall clock)."""
    request = admin_pb2.ListEventsRequest(kinds=[admin_pb2.EVENT_KIND_FAILOVER_STARTED])
    request.since.FromNanoseconds(int(since * 1e9))
    request.limit = 1000
    response = await call_any(stack.coordinator_addresses(stack.state()), "ListEvents",
                              request, 5.0)  # fmt: skip
    return list(response.events)


# -- one scenario's figures ----------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    write_unavailability_s: float = 0.0
    two_writable_overlaps: int = 0
    acknowledged: int = 0
    acknowledged_lost: int = 0
    lost_within_bound: int = 0
    converge_s: float | None = None
    failovers_started: int = 0
    notes: list[str] = field(default_factory=list)
    # The pytest test that ran it (bench/chaos.py joins it with the test's outcome).
    test: str = field(
        default_factory=lambda: os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    )

    def record(self) -> None:
        """Append to the file bench/chaos.py reads (LATITUDE_CHAOS_RESULTS), if any."""
        path = os.environ.get("LATITUDE_CHAOS_RESULTS")
        if path:
            with open(path, "a") as out:
                out.write(json.dumps(asdict(self)) + "\n")


@contextlib.asynccontextmanager
async def monitored(monitor: Monitor):
    task = asyncio.create_task(monitor.run())
    try:
        yield monitor
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_phase(stack: Stack, phase: int, since: float, timeout: float) -> None:
    """Return as soon as a failover started after ``since`` (wall clock) is recorded in
    ``phase``: a watch on the record sees every phase written, however briefly it lasts."""
    from tests.integration.etcd_tls import stack_etcd

    etcd = stack_etcd(stack)
    await etcd.connect()

    def matches(value: bytes) -> bool:
        record = admin_pb2.FailoverStatus.FromString(value)
        return record.phase == phase and record.started_at.ToNanoseconds() / 1e9 >= since

    try:
        async with asyncio.timeout(timeout):
            kv = await etcd.get(FAILOVER_RECORD, timeout=1.0)
            if kv is not None and matches(kv.value):
                return
            start = kv.mod_revision + 1 if kv is not None else 1
            async for event in etcd.watch(FAILOVER_RECORD, start_revision=start):
                if not event.deleted and matches(event.value):
                    return
    except TimeoutError:
        name = admin_pb2.FailoverPhase.Name(phase)
        raise AssertionError(f"no failover reached {name} within {timeout:.0f} s") from None
    finally:
        await etcd.close()
