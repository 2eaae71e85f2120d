"""Actuators as an agent builds them, on the stack's servers, and the commands tests send them."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agent.actuator import Actuator
from agent.config import AgentConfig
from agent.postgres_probe import DatabaseTarget, PostgresProbe
from agent.rejoin import LocalServer
from latitude.stack.stack import Stack
from latitude.v1 import agent_pb2
from tests.integration.connections import query


def command(kind: int, *, epoch: int = 1, within: float = 10.0, **args) -> agent_pb2.Command:
    cmd = agent_pb2.Command(command_id=str(uuid.uuid4()), epoch=epoch, kind=kind, **args)
    cmd.deadline.FromNanoseconds(int((time.time() + within) * 1e9))
    return cmd


def target_for(stack: Stack, region: str) -> DatabaseTarget:
    state = stack.state()
    node = stack.postgres_node(state, region)
    return DatabaseTarget(node.host, node.port, state.agent_user, state.agent_password)


def local_server(stack: Stack, region: str) -> LocalServer:
    """The region's server as its agent has it (see latitude.stack.services)."""
    state = stack.state()
    node = stack.postgres_node(state, region)
    return LocalServer.from_config(AgentConfig(
        region=region, db_host=node.host, db_port=node.port, db_user=state.agent_user,
        db_password=state.agent_password, pg_data=node.data_dir, pg_log=node.log,
        replication_passfile=stack.dir / "postgres" / "pgpass",
    ))  # fmt: skip


@asynccontextmanager
async def actuator_for(
    stack: Stack, region: str, *, with_data: bool = True
) -> AsyncIterator[Actuator]:
    target = target_for(stack, region)
    probe = PostgresProbe(target, region=region)
    server = local_server(stack, region) if with_data else None
    actuator = Actuator(target, probe, region=region, server=server)
    try:
        yield actuator
    finally:
        await actuator.close()
        await probe.close()


async def timeline(stack: Stack, region: str) -> int:
    """The timeline a primary writes on."""
    return await query(
        stack, region, "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))"
        "::bit(32)::int"
    )  # fmt: skip


async def in_recovery(stack: Stack, region: str) -> bool:
    return await query(stack, region, "SELECT pg_is_in_recovery()")
