"""PostgreSQL over TLS where the stack has certificates: each server has one from the stack's CA
for its address, WAL streams over TLS only (the server verified, sslmode=verify-full), and an
agent with db_ssl_ca rejoins a former primary over TLS: its check of the new primary, pg_rewind
and the replication it sets up."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
from contextlib import asynccontextmanager

import asyncpg
import pytest

from agent.actuator import Actuator
from agent.config import AgentConfig
from agent.conninfo import parse_conninfo
from agent.postgres_probe import DatabaseTarget, PostgresProbe
from agent.rejoin import LocalServer, verified_tls
from latitude import pki
from latitude.errors import StackError
from latitude.stack import processes
from latitude.stack.config import StackConfig
from latitude.stack.harness import traversable_tempdir
from latitude.stack.postgres import tls_ca
from latitude.stack.stack import Stack
from latitude.v1 import agent_pb2
from tests.integration.connections import eventually, query, session
from tests.integration.test_rejoin import adopt_postmasters, command, rejoin, streams_to

pytestmark = pytest.mark.stack

K = agent_pb2.CommandKind
US, EU, AP = "us-east-1", "eu-west-1", "ap-southeast-1"


class _StackWithCA(Stack):
    """A stack given a CA in <stack>/tls as soon as it is made, as `latitude up --tls` does."""

    def _load_or_create(self):
        state, created = super()._load_or_create()
        if created:
            pki.create_ca(self.dir / "tls")
        return state, created


@pytest.fixture(scope="module")
def cluster():
    parent = traversable_tempdir("latitude-pgtls-")
    stack = _StackWithCA(StackConfig(dir=parent / "stack", control_plane=False))
    try:
        asyncio.run(stack.up())
        yield stack
    finally:
        if (stack.dir / "state.json").exists():
            adopt_postmasters(stack)
            asyncio.run(stack.down())
        shutil.rmtree(parent, ignore_errors=True)


async def _ssl_replication(stack: Stack, primary: str) -> dict[str, bool]:
    rows = await session_rows(
        stack, primary,
        "SELECT r.application_name, s.ssl FROM pg_stat_replication r "
        "JOIN pg_stat_ssl s USING (pid) WHERE r.state = 'streaming'",
    )  # fmt: skip
    return {r["application_name"]: r["ssl"] for r in rows}


async def session_rows(stack: Stack, region: str, sql: str) -> list:
    async with session(stack, region) as conn:
        return await conn.fetch(sql)


async def test_standbys_stream_over_tls_and_verify_the_primary(cluster: Stack):
    state = cluster.state()
    ca = tls_ca(cluster.postgres_node(state, US))
    assert ca is not None
    assert await _ssl_replication(cluster, US) == {EU: True, AP: True}
    for region in (EU, AP):
        conninfo = dict(parse_conninfo(await query(cluster, region, "SHOW primary_conninfo")))
        assert conninfo["sslmode"] == "verify-full"
        assert conninfo["sslrootcert"] == str(ca)


async def test_a_plaintext_replication_connection_is_refused(cluster: Stack):
    state = cluster.state()
    primary = cluster.postgres_node(state, US)
    psql = cluster.config.pg_programs()["postgres"].with_name("psql")
    passfile = cluster.dir / "postgres" / "pgpass"
    base = f"host={primary.host} port={primary.port} user=replicator passfile={passfile} "

    async def identify(mode: str) -> str:
        return await processes.run(
            [str(psql), base + f"replication=true {mode}", "-Atc", "IDENTIFY_SYSTEM"],
            what=f"a replication connection with {mode}", user=cluster.config.db_user,
        )  # fmt: skip

    assert (await identify(f"sslmode=verify-full sslrootcert={tls_ca(primary)}")).strip()
    with pytest.raises(StackError, match="no encryption"):
        await identify("sslmode=disable")


async def test_verify_full_refuses_a_server_by_another_name(cluster: Stack):
    state = cluster.state()
    node = cluster.postgres_node(state, US)
    context = verified_tls(tls_ca(node))
    connect = dict(
        port=node.port, user=state.agent_user, password=state.agent_password,
        database="postgres", timeout=3.0,
    )  # fmt: skip
    conn = await asyncpg.connect(host=node.host, ssl=context, **connect)
    await conn.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncpg.connect(host="localhost", ssl=context, **connect)  # not in its certificate


@asynccontextmanager
async def _tls_actuator(stack: Stack, region: str):
    """The region's actuator as an agent with db_ssl_ca has it, as the agents' role."""
    state = stack.state()
    node = stack.postgres_node(state, region)
    config = AgentConfig(
        region=region, db_host=node.host, db_port=node.port, db_user=state.agent_user,
        db_password=state.agent_password, pg_data=node.data_dir, pg_log=node.log,
        replication_passfile=stack.dir / "postgres" / "pgpass", db_ssl_ca=tls_ca(node),
    )  # fmt: skip
    target = DatabaseTarget(node.host, node.port, state.agent_user, state.agent_password)
    probe = PostgresProbe(target, region=region)
    actuator = Actuator(target, probe, region=region, server=LocalServer.from_config(config))
    try:
        yield actuator
    finally:
        await actuator.close()
        await probe.close()


async def test_a_former_primary_is_rewound_and_rejoins_over_tls(
    cluster: Stack, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="latitude.agent")
    async with session(cluster, US) as conn:
        await conn.execute("CREATE TABLE tls_probe (n int PRIMARY KEY)")
        await conn.execute("INSERT INTO tls_probe VALUES (1)")
    async with _tls_actuator(cluster, US) as old, _tls_actuator(cluster, EU) as new:
        slots = [cluster.topology.region(r).slot_name for r in (US, AP)]
        final = await query(cluster, US, "SELECT pg_current_wal_lsn() - '0/0'")
        args = agent_pb2.PromoteArgs(min_replayed_lsn=int(final), create_slots=slots)
        promoted = await new.execute(command(K.COMMAND_KIND_PROMOTE, within=20, promote=args))
        assert promoted.ok, promoted.error
        async with session(cluster, US) as conn:  # diverges: there is WAL to rewind
            await conn.execute("INSERT INTO tls_probe VALUES (3)")
        result = await old.execute(rejoin(cluster, US, EU))
        assert result.ok, result.error
    assert "rewound with pg_rewind (diverged at" in caplog.text
    await streams_to(cluster, EU, US)
    assert (await _ssl_replication(cluster, EU)).get(US) is True
    conninfo = dict(parse_conninfo(await query(cluster, US, "SHOW primary_conninfo")))
    assert conninfo["sslmode"] == "verify-full"
    await eventually(
        lambda: query(cluster, US, "SELECT array_agg(n ORDER BY n) = '{1}' FROM tls_probe"),
        15, "us-east-1 to hold eu-west-1's rows only",
    )  # fmt: skip
