"""The actuator against real PostgreSQL servers: fence, unfence, follow, promote.

These tests change the cluster (the last one promotes eu-west-1), so the module runs its own
stack instead of the session's, and the tests run in file order: each leaves us-east-1 the
writable primary with both standbys streaming from it, except the last. A fence demotes
us-east-1 and an unfence promotes it again, each time on a new timeline. The attacks on the
fence are tests/integration/test_hard_fence.py's.
"""

from __future__ import annotations

import time

import asyncpg
import pytest

from agent.conninfo import ConninfoError, follow_conninfo, parse_conninfo
from latitude.stack.harness import running_stack
from latitude.stack.stack import Stack
from latitude.v1 import agent_pb2, common_pb2
from tests.integration.actuators import actuator_for, command, in_recovery, timeline
from tests.integration.connections import eventually, query, session

pytestmark = pytest.mark.stack

K = agent_pb2.CommandKind
PRIMARY, STANDBY = common_pb2.DATABASE_ROLE_PRIMARY, common_pb2.DATABASE_ROLE_STANDBY
BY_COMMAND = common_pb2.FENCE_CAUSE_COMMAND


@pytest.fixture(scope="module")
def cluster() -> Stack:
    """A stack of this module's own: the tests below fence, repoint and promote."""
    # No control plane: its leader would fence the primaries these tests make.
    with running_stack(control_plane=False) as stack:
        yield stack


async def receiver(stack: Stack, region: str) -> tuple[str, int] | None:
    return await query(stack, region, "SELECT (status, sender_port) FROM pg_stat_wal_receiver")


async def streams_from(stack: Stack, region: str, upstream: str, timeout: float = 15.0) -> None:
    port = stack.postgres_node(stack.state(), upstream).port
    await eventually(
        lambda: _streaming_from(stack, region, port), timeout, f"{region} to stream from {upstream}"
    )


async def _streaming_from(stack: Stack, region: str, port: int) -> bool:
    return tuple(await receiver(stack, region) or ()) == ("streaming", port)


def test_conninfo_rewrite_keeps_everything_but_the_address():
    current = (
        "user=replicator passfile='/tmp/a b/pgpass' host=10.0.0.1 hostaddr=10.0.0.1 port=5433 "
        r"application_name=eu-west-1 password='it\'s \\ odd' sslmode = prefer"
    )
    rewritten = follow_conninfo(current, "db.example", 6543)
    assert parse_conninfo(rewritten) == [
        ("host", "db.example"), ("port", "6543"), ("user", "replicator"),
        ("passfile", "/tmp/a b/pgpass"), ("application_name", "eu-west-1"),
        ("password", "it's \\ odd"), ("sslmode", "prefer"),
    ]  # fmt: skip
    for bad in ("user", "user='unterminated", "postgresql://replicator@db/postgres"):
        with pytest.raises(ConninfoError):
            parse_conninfo(bad)


async def test_fence_demotes_and_unfence_promotes_on_a_new_timeline(cluster: Stack):
    before = await timeline(cluster, "us-east-1")
    async with (
        actuator_for(cluster, "us-east-1") as actuator,
        session(cluster, "us-east-1") as writer,
    ):
        await writer.execute("CREATE TABLE fence_test (n int)")
        transaction = writer.transaction()
        await transaction.start()
        await writer.execute("INSERT INTO fence_test VALUES (1)")
        head = await query(cluster, "us-east-1", "SELECT pg_current_wal_lsn() - '0/0'")

        fenced = await actuator.execute(command(K.COMMAND_KIND_FENCE))
        assert fenced.ok, fenced.error
        assert fenced.observed.role == PRIMARY and fenced.observed.fenced
        assert fenced.observed.fence_cause == BY_COMMAND == actuator.fence_cause
        # The shutdown checkpoint: after every commit, and the position it answers.
        assert fenced.fence_lsn >= head and fenced.observed.current_lsn == fenced.fence_lsn
        assert fenced.observed.timeline_id == before
        # The server stopped: the open write transaction cannot commit.
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await transaction.commit()
        # It is back, in recovery, for reads and the probe, reported as a fenced primary.
        report = await actuator.execute(command(K.COMMAND_KIND_REPORT_NOW))
        assert report.observed.role == PRIMARY and report.observed.fenced, report
        assert report.observed.fence_cause == BY_COMMAND
        assert report.observed.current_lsn > fenced.fence_lsn  # the end of the checkpoint
        assert await in_recovery(cluster, "us-east-1")
        assert await query(cluster, "us-east-1", "SELECT count(*) FROM fence_test") == 0
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await query(cluster, "us-east-1", "INSERT INTO fence_test VALUES (2)")

        again = await actuator.execute(command(K.COMMAND_KIND_FENCE))
        assert again.ok and again.observed.fenced, again.error
        assert again.fence_lsn == report.observed.current_lsn  # nothing written since

        unfenced = await actuator.execute(command(K.COMMAND_KIND_UNFENCE))
        assert unfenced.ok, unfenced.error
        assert unfenced.observed.role == PRIMARY and not unfenced.observed.fenced
        assert unfenced.observed.fence_cause == common_pb2.FENCE_CAUSE_UNSPECIFIED
        assert unfenced.observed.timeline_id == before + 1
        assert actuator.fence_cause == common_pb2.FENCE_CAUSE_UNSPECIFIED
        async with session(cluster, "us-east-1") as conn:
            await conn.execute("INSERT INTO fence_test VALUES (3)")
            assert await conn.fetchval("SELECT count(*) FROM fence_test") == 1
        # Standbys follow the new timeline by themselves.
        for standby in ("eu-west-1", "ap-southeast-1"):
            await streams_from(cluster, standby, "us-east-1")


async def test_fence_and_unfence_need_no_pg_data_only_to_refuse(cluster: Stack):
    async with actuator_for(cluster, "us-east-1", with_data=False) as actuator:
        refused = await actuator.execute(command(K.COMMAND_KIND_FENCE))
        assert not refused.ok and "a hard fence needs pg_data" in refused.error
        assert refused.observed.role == PRIMARY and not refused.observed.fenced
        assert not await in_recovery(cluster, "us-east-1")
        # Nothing to lift: a no-op.
        assert (await actuator.execute(command(K.COMMAND_KIND_UNFENCE))).ok


async def test_self_fence_records_its_cause(cluster: Stack):
    async with actuator_for(cluster, "us-east-1") as actuator:
        await actuator.fence(common_pb2.FENCE_CAUSE_SELF)
        await actuator.fence(common_pb2.FENCE_CAUSE_SELF)  # idempotent
        assert await in_recovery(cluster, "us-east-1")
        report = await actuator.execute(command(K.COMMAND_KIND_REPORT_NOW))
        assert report.ok and report.observed.fenced
        assert report.observed.fence_cause == common_pb2.FENCE_CAUSE_SELF
        # A later fence by command keeps the first cause, as the data directory does.
        assert (await actuator.execute(command(K.COMMAND_KIND_FENCE))).ok
        assert actuator.reported_fence_cause == common_pb2.FENCE_CAUSE_SELF
        assert (await actuator.execute(command(K.COMMAND_KIND_UNFENCE))).ok
    assert not await in_recovery(cluster, "us-east-1")


async def test_a_primary_the_stack_restarts_comes_back_fenced_until_unfenced(cluster: Stack):
    await cluster.status()  # adopts the postmaster that the fences above started again
    await cluster.kill("postgres-us-east-1")
    await cluster.up()  # as `latitude up` restarts it
    status = {r.region: r for r in (await cluster.status()).regions}
    assert status["us-east-1"].role == "primary" and status["us-east-1"].fenced
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await query(cluster, "us-east-1", "CREATE TABLE restarted (n int)")
    async with actuator_for(cluster, "us-east-1") as actuator:
        # The agent did not fence it: it says it found it so.
        report = await actuator.execute(command(K.COMMAND_KIND_REPORT_NOW))
        assert report.observed.role == PRIMARY and report.observed.fenced
        assert report.observed.fence_cause == common_pb2.FENCE_CAUSE_STARTUP
        # PROMOTE never lifts a fence, nor does FOLLOW make a fenced primary a standby.
        refused = await actuator.execute(command(K.COMMAND_KIND_PROMOTE))
        assert not refused.ok and "UNFENCE it" in refused.error, refused.error
        follow = agent_pb2.FollowArgs(primary_region="eu-west-1", primary_host="127.0.0.1",
                                      primary_port=1)  # fmt: skip
        refused = await actuator.execute(command(K.COMMAND_KIND_FOLLOW, follow=follow))
        assert not refused.ok and "use REJOIN" in refused.error, refused.error
        unfenced = await actuator.execute(command(K.COMMAND_KIND_UNFENCE))
        assert unfenced.ok and not unfenced.observed.fenced, unfenced.error
    await query(cluster, "us-east-1", "CREATE TABLE restarted (n int)")
    status = {r.region: r for r in (await cluster.status()).regions}
    assert status["us-east-1"].role == "primary" and not status["us-east-1"].fenced
    for standby in ("eu-west-1", "ap-southeast-1"):
        await streams_from(cluster, standby, "us-east-1")


async def test_checkpoint_runs_and_rejoin_needs_a_data_directory(cluster: Stack):
    async with actuator_for(cluster, "eu-west-1", with_data=False) as actuator:
        checkpoint = await actuator.execute(command(K.COMMAND_KIND_CHECKPOINT))
        assert checkpoint.ok and checkpoint.observed.role == STANDBY, checkpoint.error
        rejoin = await actuator.execute(command(K.COMMAND_KIND_REJOIN))
        assert not rejoin.ok and rejoin.error.startswith("REJOIN needs pg_data")


async def test_a_stale_epoch_is_refused_without_touching_the_database(cluster: Stack):
    async with actuator_for(cluster, "us-east-1") as actuator:
        assert actuator.accept_epoch(5)
        assert not actuator.accept_epoch(4)
        stale = await actuator.execute(command(K.COMMAND_KIND_FENCE, epoch=4))
        assert not stale.ok and "4" in stale.error and "5" in stale.error
        assert stale.agent_epoch == 5
        assert stale.observed.role == PRIMARY and not stale.observed.fenced
        assert not await in_recovery(cluster, "us-east-1")
        newer = await actuator.execute(command(K.COMMAND_KIND_REPORT_NOW, epoch=6))
        assert newer.ok and newer.agent_epoch == 6 == actuator.highest_epoch


async def test_a_repeated_command_id_is_not_carried_out_again(cluster: Stack):
    async with actuator_for(cluster, "us-east-1") as actuator:
        fence = command(K.COMMAND_KIND_FENCE)
        first = await actuator.execute(fence)
        assert first.ok, first.error
        assert (await actuator.execute(command(K.COMMAND_KIND_UNFENCE))).ok
        repeated = await actuator.execute(fence)
        assert repeated == first  # the remembered answer, fenced as it was then...
        # ...but the database was not fenced again.
        assert not await in_recovery(cluster, "us-east-1")


async def test_a_command_past_its_deadline_is_refused(cluster: Stack):
    async with actuator_for(cluster, "us-east-1") as actuator:
        late = await actuator.execute(command(K.COMMAND_KIND_FENCE, within=-1.0))
        assert not late.ok and "deadline" in late.error
        assert late.observed.role == PRIMARY and not late.observed.fenced
        assert not await in_recovery(cluster, "us-east-1")


async def test_follow_repoints_a_standby(cluster: Stack):
    state = cluster.state()
    eu, us = (cluster.postgres_node(state, r) for r in ("eu-west-1", "us-east-1"))
    before = await query(cluster, "ap-southeast-1", "SHOW primary_conninfo")
    async with actuator_for(cluster, "ap-southeast-1") as actuator:
        # Fencing a standby changes nothing in it but is remembered until it follows anew.
        fenced = await actuator.execute(command(K.COMMAND_KIND_FENCE))
        assert fenced.ok and fenced.observed.role == STANDBY, fenced.error
        assert fenced.observed.fenced and fenced.observed.fence_cause == BY_COMMAND
        assert await query(cluster, "ap-southeast-1", "SHOW default_transaction_read_only") == "off"
        # A cascading standby: ap-southeast-1 streams from the standby eu-west-1.
        follow = agent_pb2.FollowArgs(
            primary_region="eu-west-1", primary_host=eu.host, primary_port=eu.port
        )
        result = await actuator.execute(command(K.COMMAND_KIND_FOLLOW, follow=follow))
        assert result.ok, result.error
        assert result.observed.upstream_region == "eu-west-1" and not result.observed.fenced
        conninfo = dict(
            parse_conninfo(await query(cluster, "ap-southeast-1", "SHOW primary_conninfo"))
        )
        assert (conninfo["host"], conninfo["port"]) == (eu.host, str(eu.port))
        kept = {k: v for k, v in parse_conninfo(before) if k not in ("host", "port")}
        assert kept.items() <= conninfo.items() and kept["application_name"] == "ap-southeast-1"
        assert await query(cluster, "ap-southeast-1", "SHOW primary_slot_name") == ""
        await streams_from(cluster, "ap-southeast-1", "eu-west-1")

        back = agent_pb2.FollowArgs(
            primary_region="us-east-1", primary_host=us.host, primary_port=us.port,
            slot_name=cluster.topology.region("ap-southeast-1").slot_name,
        )  # fmt: skip
        result = await actuator.execute(command(K.COMMAND_KIND_FOLLOW, follow=back))
        assert result.ok, result.error
        slot = await query(cluster, "ap-southeast-1", "SHOW primary_slot_name")
        assert slot == back.slot_name
        await streams_from(cluster, "ap-southeast-1", "us-east-1")


async def test_a_primary_cannot_follow(cluster: Stack):
    eu = cluster.postgres_node(cluster.state(), "eu-west-1")
    async with actuator_for(cluster, "us-east-1") as actuator:
        follow = agent_pb2.FollowArgs(
            primary_region="eu-west-1", primary_host=eu.host, primary_port=eu.port
        )
        result = await actuator.execute(command(K.COMMAND_KIND_FOLLOW, follow=follow))
        assert not result.ok and "use REJOIN" in result.error
        assert result.observed.role == PRIMARY
        assert await query(cluster, "us-east-1", "SHOW primary_conninfo") == ""


async def test_promote_waits_for_wal_and_gives_up_at_the_deadline(cluster: Stack):
    head = await query(cluster, "us-east-1", "SELECT pg_current_wal_lsn() - '0/0'")
    async with actuator_for(cluster, "ap-southeast-1") as actuator:
        beyond = agent_pb2.PromoteArgs(min_replayed_lsn=int(head) + (1 << 30))
        started = time.monotonic()
        result = await actuator.execute(command(K.COMMAND_KIND_PROMOTE, within=1.5, promote=beyond))
        took = time.monotonic() - started
        assert not result.ok and "not promoted" in result.error
        assert 1.2 < took < 4.0
        assert result.observed.role == STANDBY
        assert await query(cluster, "ap-southeast-1", "SELECT pg_is_in_recovery()")


async def test_promote_makes_a_writable_primary_with_slots(cluster: Stack):
    # eu-west-1 carries a fence in its own configuration, as a former primary's might, and
    # synchronous standbys that will never come.
    async with session(cluster, "eu-west-1") as conn:
        await conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        await conn.execute("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (nowhere)'")
        await conn.execute("SELECT pg_reload_conf()")
    async with actuator_for(cluster, "us-east-1") as old, actuator_for(cluster, "eu-west-1") as new:
        fenced = await old.execute(command(K.COMMAND_KIND_FENCE, epoch=2))
        assert fenced.ok and fenced.fence_lsn, fenced.error
        final = fenced.fence_lsn  # as a switchover promotes: once everything is replayed
        slots = [cluster.topology.region(r).slot_name for r in ("us-east-1", "ap-southeast-1")]
        args = agent_pb2.PromoteArgs(
            min_replayed_lsn=int(final), create_slots=slots, synchronous_standby_names=""
        )
        promoted = await new.execute(
            command(K.COMMAND_KIND_PROMOTE, epoch=2, within=20, promote=args)
        )
        assert promoted.ok, promoted.error
        assert promoted.observed.role == PRIMARY and not promoted.observed.fenced
        assert promoted.observed.timeline_id == fenced.observed.timeline_id + 1
        async with session(cluster, "eu-west-1") as conn:
            assert not await conn.fetchval("SELECT pg_is_in_recovery()")
            assert await conn.fetchval("SHOW default_transaction_read_only") == "off"
            assert await conn.fetchval("SHOW synchronous_standby_names") == ""
            await conn.execute(
                "CREATE TABLE promoted (n int); INSERT INTO promoted VALUES (1)", timeout=5
            )
            found = await conn.fetch("SELECT slot_name FROM pg_replication_slots ORDER BY 1")
            assert [r["slot_name"] for r in found] == sorted(slots)

        again = await new.execute(command(K.COMMAND_KIND_PROMOTE, epoch=2, promote=args))
        assert again.ok, again.error
        # The fenced old primary is never promoted back.
        refused = await old.execute(command(K.COMMAND_KIND_PROMOTE, epoch=2))
        assert not refused.ok and "fenced primary" in refused.error
        assert await in_recovery(cluster, "us-east-1")
