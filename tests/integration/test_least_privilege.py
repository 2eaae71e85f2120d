"""The stack's agents hold no more than they need: their own role, not the superuser, and no
password where another process can read it (their environment, their command line)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from latitude.stack import services
from latitude.stack.postgres import AGENT_ROLE, connect
from latitude.stack.stack import Stack
from tests.integration.connections import eventually

pytestmark = pytest.mark.stack

PRIMARY = "us-east-1"


async def _as_agent(stack: Stack, region: str) -> asyncpg.Connection:
    state = stack.state()
    node = stack.postgres_node(state, region)
    return await asyncpg.connect(
        host=node.host, port=node.port, user=state.agent_user, password=state.agent_password,
        database="postgres", timeout=3.0,
    )  # fmt: skip


async def test_every_agent_is_connected_as_its_own_role_not_the_superuser(stack: Stack):
    state = stack.state()
    assert state.agent_user == AGENT_ROLE
    for region in ("us-east-1", "eu-west-1", "ap-southeast-1"):
        conn = await connect(stack.postgres_node(state, region), state.superuser_password)
        try:

            async def agents_seen(conn=conn) -> list:
                rows = await conn.fetch(
                    "SELECT DISTINCT usename::text FROM pg_stat_activity "
                    "WHERE application_name LIKE 'latitude-agent %'"
                )
                return [r[0] for r in rows]

            users = await eventually(agents_seen, 10.0, f"{region}'s agent to connect")
            assert users == [AGENT_ROLE], region
            role = await conn.fetchrow(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
                "WHERE rolname = $1",
                AGENT_ROLE,
            )
            assert not any(role.values())
        finally:
            await conn.close()


async def test_the_agent_role_can_read_but_not_change_the_applications_data(stack: Stack):
    state = stack.state()
    owner = await connect(stack.postgres_node(state, PRIMARY), state.superuser_password)
    agent = await _as_agent(stack, PRIMARY)
    try:
        await owner.execute("CREATE TABLE IF NOT EXISTS least_privilege_probe (v int)")
        await owner.execute("INSERT INTO least_privilege_probe VALUES (1)")
        assert await agent.fetchval("SELECT count(*) FROM least_privilege_probe") >= 1  # verify
        for statement in (
            "INSERT INTO least_privilege_probe VALUES (2)",
            "DELETE FROM least_privilege_probe",
            "DROP TABLE least_privilege_probe",
            "CREATE TABLE public.agent_made (v int)",
            "ALTER SYSTEM SET archive_command = 'cat /etc/shadow'",
            f"SELECT pg_terminate_backend({await owner.fetchval('SELECT pg_backend_pid()')})",
            "CREATE ROLE intruder SUPERUSER",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await agent.execute(statement)
        # ...and what it does need, it may; on a standby too (the grants are replicated).
        await agent.execute("CHECKPOINT")
        assert await agent.fetchval("SELECT pg_reload_conf()")
    finally:
        await owner.execute("DROP TABLE IF EXISTS least_privilege_probe")
        await owner.close()
        await agent.close()
    standby = await _as_agent(stack, "eu-west-1")
    try:
        assert await standby.fetchval("SELECT status FROM pg_stat_wal_receiver") == "streaming"
        assert "host=" in await standby.fetchval("SELECT current_setting('primary_conninfo')")
    finally:
        await standby.close()


def test_no_password_in_an_agents_environment_or_command_line(stack: Stack):
    state = stack.state()
    secrets = [
        s.encode()
        for s in (state.superuser_password, state.replication_password, state.agent_password)
    ]
    password_file = services.agent_password_file(stack.dir)
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert password_file.read_text().strip() == state.agent_password
    for region in ("us-east-1", "eu-west-1", "ap-southeast-1"):
        pid = state.processes[f"agent-{region}"].pid
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        for secret in secrets:
            assert secret not in environ, f"a password in agent-{region}'s environment"
            assert secret not in cmdline, f"a password in agent-{region}'s command line"
        assert b"PASSWORD=" not in environ
        assert f"LATITUDE_AGENT_DB_PASSWORD_FILE={password_file}".encode() in environ
