"""REJOIN against real PostgreSQL servers: a former primary becomes a standby of the new one,
what it wrote after the fork is rewound away, what cannot be rewound is copied afresh.

The module runs its own stack, without a control plane (its leader would fence and repoint the
servers these tests take apart), and the tests run in file order: eu-west-1 is promoted, the old
primary us-east-1 and the standby ap-southeast-1 (both diverged) rejoin it; then us-east-1 is
promoted back and eu-west-1, killed after a divergent write, rejoins it.

REJOIN restarts servers, so their postmasters are not the ones the stack recorded: the fixture
records the running ones before the stack stops, so that nothing is left behind.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from agent.actuator import Actuator
from agent.config import AgentConfig
from agent.postgres_probe import DatabaseTarget, PostgresProbe
from agent.rejoin import LocalServer
from latitude.stack import processes
from latitude.stack.harness import running_stack
from latitude.stack.stack import Stack
from latitude.v1 import agent_pb2, common_pb2
from tests.integration.connections import eventually, query, session

pytestmark = pytest.mark.stack

K = agent_pb2.CommandKind
PRIMARY, STANDBY = common_pb2.DATABASE_ROLE_PRIMARY, common_pb2.DATABASE_ROLE_STANDBY
US, EU, AP = "us-east-1", "eu-west-1", "ap-southeast-1"


@pytest.fixture(scope="module")
def cluster() -> Stack:
    with running_stack(control_plane=False) as stack:
        try:
            yield stack
        finally:
            adopt_postmasters(stack)


def adopt_postmasters(stack: Stack) -> None:
    """Record the postmasters running now in the stack's state, so that down() stops them."""
    state = stack.state()
    for node in stack.postgres_nodes(state):
        pid = postmaster_pid(stack, node.region)
        if pid is not None and processes.start_ticks(pid) is not None:
            state.processes[node.name] = processes.record_for(node.name, pid)
    state.save()


def postmaster_pid(stack: Stack, region: str) -> int | None:
    pid_file = stack.postgres_node(stack.state(), region).data_dir / "postmaster.pid"
    try:
        return int(pid_file.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None


def command(kind: int, *, epoch: int = 1, within: float = 10.0, **args) -> agent_pb2.Command:
    cmd = agent_pb2.Command(command_id=str(uuid.uuid4()), epoch=epoch, kind=kind, **args)
    cmd.deadline.FromNanoseconds(int((time.time() + within) * 1e9))
    return cmd


def rejoin(
    stack: Stack, region: str, primary: str, *, allow_rewind: bool = True, epoch: int = 1,
    within: float = 60.0,
) -> agent_pb2.Command:  # fmt: skip
    node = stack.postgres_node(stack.state(), primary)
    follow = agent_pb2.FollowArgs(
        primary_region=primary, primary_host=node.host, primary_port=node.port,
        slot_name=stack.topology.region(region).slot_name,
    )  # fmt: skip
    args = agent_pb2.RejoinArgs(follow=follow, allow_rewind=allow_rewind)
    return command(K.COMMAND_KIND_REJOIN, epoch=epoch, within=within, rejoin=args)


def agent_config(stack: Stack, region: str) -> AgentConfig:
    """The settings `latitude up` gives the region's agent (see latitude.stack.services)."""
    state = stack.state()
    node = stack.postgres_node(state, region)
    return AgentConfig(
        region=region, db_host=node.host, db_port=node.port, db_user=state.agent_user,
        db_password=state.agent_password, pg_data=node.data_dir, pg_log=node.log,
        replication_passfile=stack.dir / "postgres" / "pgpass",
    )  # fmt: skip


@asynccontextmanager
async def actuator_for(
    stack: Stack, region: str, *, with_data: bool = True
) -> AsyncIterator[Actuator]:
    config = agent_config(stack, region)
    target = DatabaseTarget(
        config.db_host, config.db_port, config.db_user, config.db_password, config.db_name
    )
    probe = PostgresProbe(target, region=region)
    server = LocalServer.from_config(config) if with_data else None
    actuator = Actuator(target, probe, region=region, server=server)
    try:
        yield actuator
    finally:
        await actuator.close()
        await probe.close()


async def rows(stack: Stack, region: str) -> list[int]:
    found = await query(stack, region, "SELECT array_agg(n ORDER BY n) FROM rejoin_probe")
    return list(found or [])


async def has_rows(stack: Stack, region: str, want: list[int], timeout: float = 15.0) -> None:
    async def look() -> bool:
        return await rows(stack, region) == want

    await eventually(look, timeout, f"{region} to hold exactly rows {want}")


async def streams_to(stack: Stack, primary: str, standby: str, timeout: float = 15.0) -> None:
    """``primary`` sends WAL to ``standby``, through the standby's slot."""
    slot = stack.topology.region(standby).slot_name
    sql = """
        SELECT r.state = 'streaming' AND s.active
        FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid
        WHERE r.application_name = $1 AND s.slot_name = $2
    """

    async def look() -> bool:
        return bool(await query(stack, primary, sql, standby, slot))

    await eventually(look, timeout, f"{primary} to stream to {standby} through slot {slot}")


async def write_diverging(stack: Stack, region: str, n: int) -> int:
    """A write on an old primary that another region's promotion left writable (what a fence
    prevents; the tests below make it so to have WAL to rewind). The WAL position after it."""
    async with session(stack, region) as conn:
        await conn.execute("INSERT INTO rejoin_probe VALUES ($1, 'divergent')", n)
        return await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'")


async def assert_read_only_standby(stack: Stack, region: str) -> None:
    async with session(stack, region) as conn:
        assert await conn.fetchval("SELECT pg_is_in_recovery()")
        # The fence is gone from its configuration: a later PROMOTE finds it writable...
        assert await conn.fetchval("SHOW default_transaction_read_only") == "off"
        # ...but as a standby it refuses writes, whatever a session asks.
        await conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("INSERT INTO rejoin_probe VALUES (0, 'never')")


def its_own_settings(stack: Stack, region: str) -> bool:
    """pg_rewind and pg_basebackup copy the source's latitude.conf: it must be the node's own."""
    node = stack.postgres_node(stack.state(), region)
    return f"port = {node.port}\n" in (node.data_dir / "latitude.conf").read_text()


async def stop_server(stack: Stack, region: str) -> None:
    node = stack.postgres_node(stack.state(), region)
    pg_ctl = stack.config.pg_programs()["pg_ctl"]
    await processes.run(
        [str(pg_ctl), "stop", "-D", str(node.data_dir), "-m", "fast", "-w"],
        what=f"stopping {region}", user=stack.config.db_user,
    )  # fmt: skip


def set_aside(stack: Stack, region: str) -> list[Path]:
    data = stack.postgres_node(stack.state(), region).data_dir
    return sorted(data.parent.glob(data.name + ".failed-*"))


async def test_rejoin_needs_a_data_directory_and_a_reachable_primary(cluster: Stack):
    eu = cluster.postgres_node(cluster.state(), EU)
    before = postmaster_pid(cluster, US)
    async with actuator_for(cluster, US, with_data=False) as actuator:
        refused = await actuator.execute(rejoin(cluster, US, EU))
        assert not refused.ok and refused.error.startswith("REJOIN needs pg_data"), refused.error
        assert refused.observed.role == PRIMARY
    async with actuator_for(cluster, US) as actuator:
        nowhere = await actuator.execute(command(K.COMMAND_KIND_REJOIN))
        assert not nowhere.ok and "primary_host" in nowhere.error
        itself = await actuator.execute(rejoin(cluster, US, US))
        assert not itself.ok and "this very server" in itself.error
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind((eu.host, 0))
            closed = probe.getsockname()[1]
        unreachable = rejoin(cluster, US, EU)
        unreachable.rejoin.follow.primary_port = closed
        result = await actuator.execute(unreachable)
        assert not result.ok and "cannot be reached" in result.error, result.error
        assert "nothing changed" in result.error
        # Untouched: the same postmaster, a writable primary.
        assert result.observed.role == PRIMARY and not result.observed.fenced
    assert postmaster_pid(cluster, US) == before
    assert not await query(cluster, US, "SELECT pg_is_in_recovery()")


async def test_a_former_primary_rejoins_and_its_divergent_write_is_rewound(
    cluster: Stack, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="latitude.agent")
    async with session(cluster, US) as conn:
        await conn.execute("CREATE TABLE rejoin_probe (n int PRIMARY KEY, origin text)")
        await conn.execute("INSERT INTO rejoin_probe VALUES (1, 'us-east-1')")
    await has_rows(cluster, EU, [1])
    await has_rows(cluster, AP, [1])
    async with actuator_for(cluster, US) as old, actuator_for(cluster, EU) as new:
        # Not fenced first: us-east-1 stays writable, and REJOIN demotes it before its stop.
        final = await query(cluster, US, "SELECT pg_current_wal_lsn() - '0/0'")
        slots = [cluster.topology.region(r).slot_name for r in (US, AP)]
        args = agent_pb2.PromoteArgs(min_replayed_lsn=int(final), create_slots=slots)
        promoted = await new.execute(command(K.COMMAND_KIND_PROMOTE, within=20, promote=args))
        assert promoted.ok, promoted.error
        async with session(cluster, EU) as conn:
            await conn.execute("INSERT INTO rejoin_probe VALUES (2, 'eu-west-1')")
        # eu-west-1's timeline forked before this: us-east-1's WAL now diverges, and so does
        # that of ap-southeast-1, which still streams from it (the third test copies it).
        diverged = await write_diverging(cluster, US, 3)
        await eventually(
            lambda: query(cluster, AP, "SELECT pg_last_wal_replay_lsn() - '0/0' >= $1", diverged),
            15, "ap-southeast-1 to replay the divergent write",
        )  # fmt: skip
        assert await rows(cluster, AP) == [1, 3]
        before = postmaster_pid(cluster, US)

        result = await old.execute(rejoin(cluster, US, EU))
        assert result.ok, result.error
        observed = result.observed
        assert observed.role == STANDBY and observed.upstream_region == EU
        assert not observed.fenced and observed.fence_cause == common_pb2.FENCE_CAUSE_UNSPECIFIED
        assert old.fence_cause == common_pb2.FENCE_CAUSE_UNSPECIFIED

    assert "rewound with pg_rewind (diverged at" in caplog.text
    assert postmaster_pid(cluster, US) != before  # it was stopped and started
    await streams_to(cluster, EU, US)
    await has_rows(cluster, US, [1, 2])  # the divergent row 3 is gone, eu-west-1's row 2 came
    assert await query(cluster, US, "SELECT received_tli FROM pg_stat_wal_receiver") == 2
    await assert_read_only_standby(cluster, US)
    assert its_own_settings(cluster, US)
    assert set_aside(cluster, US) == []  # rewound, not copied
    # The slots it held as the primary (and the one keeping WAL for pg_rewind) are gone.
    assert await query(cluster, US, "SELECT count(*) FROM pg_replication_slots") == 0


async def test_rejoining_again_changes_nothing(cluster: Stack):
    before = postmaster_pid(cluster, US)
    async with actuator_for(cluster, US) as actuator:
        again = rejoin(cluster, US, EU)
        started = time.monotonic()
        result = await actuator.execute(again)
        assert result.ok, result.error
        assert time.monotonic() - started < 5.0
        assert result.observed.role == STANDBY and result.observed.upstream_region == EU
        assert await actuator.execute(again) == result  # the remembered answer
    assert postmaster_pid(cluster, US) == before  # not restarted
    await streams_to(cluster, EU, US)


async def test_a_standby_that_cannot_be_rewound_is_copied_afresh(
    cluster: Stack, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="latitude.agent")
    node = cluster.postgres_node(cluster.state(), AP)
    await stop_server(cluster, AP)
    # Its WAL recycled away: pg_rewind cannot read what it wrote since the fork.
    for segment in (node.data_dir / "pg_wal").iterdir():
        if re.fullmatch(r"[0-9A-F]{24}", segment.name):
            segment.unlink()

    async with actuator_for(cluster, AP) as actuator:
        result = await actuator.execute(rejoin(cluster, AP, EU, within=90))
        assert result.ok, result.error
        assert result.observed.role == STANDBY and result.observed.upstream_region == EU

    aside = set_aside(cluster, AP)
    assert len(aside) == 1 and (aside[0] / "PG_VERSION").exists()  # kept, not deleted
    assert "pg_rewind --dry-run failed" in caplog.text
    assert f"made a fresh copy with pg_basebackup, the old data is kept in {aside[0]}" in (
        caplog.text
    )
    assert not node.data_dir.with_name(node.data_dir.name + ".incoming").exists()
    await streams_to(cluster, EU, AP)
    await has_rows(cluster, AP, [1, 2])
    await assert_read_only_standby(cluster, AP)
    assert its_own_settings(cluster, AP)


async def test_a_killed_former_primary_is_recovered_then_rewound(
    cluster: Stack, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="latitude.agent")
    async with actuator_for(cluster, EU) as old, actuator_for(cluster, US) as new:
        final = await query(cluster, EU, "SELECT pg_current_wal_lsn() - '0/0'")
        slots = [cluster.topology.region(r).slot_name for r in (EU, AP)]
        args = agent_pb2.PromoteArgs(min_replayed_lsn=int(final), create_slots=slots)
        promoted = await new.execute(
            command(K.COMMAND_KIND_PROMOTE, epoch=2, within=20, promote=args)
        )
        assert promoted.ok, promoted.error
        async with session(cluster, US) as conn:
            await conn.execute("INSERT INTO rejoin_probe VALUES (4, 'us-east-1')")
        await write_diverging(cluster, EU, 5)
        # Killed: it must go through crash recovery before pg_rewind can read it.
        postmaster = processes.record_for("postgres", postmaster_pid(cluster, EU))
        os.kill(postmaster.pid, signal.SIGKILL)
        assert await processes.wait_gone(postmaster, 5.0)

        # Without allow_rewind its data is not rewritten: the command fails, the server stays
        # down (recovered, and set to come back as a standby).
        refused = await old.execute(rejoin(cluster, EU, US, allow_rewind=False, epoch=2))
        assert not refused.ok and "allow_rewind is false" in refused.error, refused.error
        assert refused.observed.role == common_pb2.DATABASE_ROLE_DOWN
        data = cluster.postgres_node(cluster.state(), EU).data_dir
        assert (data / "standby.signal").exists() and postmaster_pid(cluster, EU) is None

        result = await old.execute(rejoin(cluster, EU, US, epoch=2))
        assert result.ok, result.error
        assert result.observed.role == STANDBY and result.observed.upstream_region == US

    assert "finished crash recovery" in caplog.text
    assert "rewound with pg_rewind (diverged at" in caplog.text
    await streams_to(cluster, US, EU)
    await has_rows(cluster, EU, [1, 2, 4])  # its divergent row 5 is gone
    await assert_read_only_standby(cluster, EU)
    assert its_own_settings(cluster, EU)


async def test_a_rewind_that_did_not_finish_is_replaced_by_a_fresh_copy(
    cluster: Stack, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="latitude.agent")
    # eu-west-1 as an interrupted pg_rewind leaves it: stopped, the source's configuration
    # copied over its own, which REJOIN had kept in eu-west-1.rewinding.
    state = cluster.state()
    node, us = cluster.postgres_node(state, EU), cluster.postgres_node(state, US)
    await stop_server(cluster, EU)
    rewinding = node.data_dir.with_name(node.data_dir.name + ".rewinding")
    rewinding.mkdir(mode=0o700)
    for conf in node.data_dir.glob("*.conf"):
        (rewinding / conf.name).write_bytes(conf.read_bytes())
    (node.data_dir / "latitude.conf").write_text(
        f"listen_addresses = '{us.host}'\nport = {us.port}\ncluster_name = '{US}'\n"
    )

    async with actuator_for(cluster, EU) as actuator:
        result = await actuator.execute(rejoin(cluster, EU, US))
        assert result.ok, result.error
        assert result.observed.role == STANDBY and result.observed.upstream_region == US

    assert "a previous pg_rewind did not finish" in caplog.text
    assert len(set_aside(cluster, EU)) == 1 and not rewinding.exists()
    assert its_own_settings(cluster, EU)
    await streams_to(cluster, US, EU)
    await has_rows(cluster, EU, [1, 2, 4])
    await assert_read_only_standby(cluster, EU)
