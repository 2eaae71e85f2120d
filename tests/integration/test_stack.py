"""The running stack does what the topology promises: replication, roles, settings, users."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from latitude.stack.postgres import connect
from latitude.stack.stack import Stack

pytestmark = pytest.mark.stack


async def _query(stack: Stack, region: str, sql: str, *args):
    state = stack.state()
    conn = await connect(stack.postgres_node(state, region), state.superuser_password)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def test_status_shows_one_primary_and_streaming_standbys(stack: Stack):
    status = await stack.status()
    assert status.ready
    roles = {r.region: r.role for r in status.regions}
    assert roles == {"us-east-1": "primary", "eu-west-1": "standby", "ap-southeast-1": "standby"}
    assert all(r.streaming for r in status.regions if r.role == "standby")
    assert [m.healthy for m in status.etcd] == [True, True, True]
    assert sum(m.is_leader for m in status.etcd) == 1


async def test_a_write_on_the_primary_reaches_every_standby(stack: Stack):
    marker = uuid.uuid4().hex
    await _query(stack, "us-east-1", "CREATE TABLE IF NOT EXISTS replication_probe (v text)")
    await _query(stack, "us-east-1", "INSERT INTO replication_probe VALUES ($1)", marker)
    for region in ("eu-west-1", "ap-southeast-1"):
        deadline = time.monotonic() + 10
        while True:
            try:
                found = await _query(
                    stack, region, "SELECT count(*) FROM replication_probe WHERE v = $1", marker
                )
            except asyncpg.UndefinedTableError:
                found = 0
            if found == 1:
                break
            assert time.monotonic() < deadline, f"{region} never replayed the write"
            await asyncio.sleep(0.05)


async def test_standbys_refuse_writes(stack: Stack):
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await _query(stack, "eu-west-1", "CREATE TABLE should_fail (v int)")


async def test_each_standby_streams_through_its_own_slot(stack: Stack):
    slots = await _query(
        stack,
        "us-east-1",
        "SELECT array_agg(slot_name::text ORDER BY slot_name) FROM pg_replication_slots "
        "WHERE active",
    )
    assert slots == ["latitude_ap_southeast_1", "latitude_eu_west_1"]
    names = await _query(
        stack,
        "us-east-1",
        "SELECT array_agg(application_name::text ORDER BY application_name) "
        "FROM pg_stat_replication WHERE state = 'streaming'",
    )
    assert names == ["ap-southeast-1", "eu-west-1"]


async def test_rewind_prerequisites_are_on(stack: Stack):
    for region in ("us-east-1", "eu-west-1"):
        assert await _query(stack, region, "SHOW wal_log_hints") == "on"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another user")
def test_postgres_runs_as_the_postgres_user_under_root(stack: Stack):
    import pwd

    uid = pwd.getpwnam("postgres").pw_uid
    for name, record in stack.state().processes.items():
        if name.startswith("postgres-"):
            status = Path(f"/proc/{record.pid}/status").read_text()
            real_uid = int(next(x for x in status.splitlines() if x.startswith("Uid:")).split()[1])
            assert real_uid == uid, f"{name} runs as uid {real_uid}"
