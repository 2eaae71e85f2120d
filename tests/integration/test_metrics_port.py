"""A metrics port already in use: the coordinator and the agent stop at once and say which
address they could not serve on, rather than run without metrics."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from latitude.errors import LatitudeError
from latitude.web import WebServer


@pytest.fixture
def taken() -> str:
    """host:port of a socket that listens (another process's, as far as anyone can tell)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield f"127.0.0.1:{holder.getsockname()[1]}"


COORDINATOR = "-m coordinator.main --id c1 --listen 127.0.0.1:0 --etcd 127.0.0.1:9"
AGENT = "-m agent.main --region us-east-1 --agent-id a1 --coordinators 127.0.0.1:9"
PROGRAMS = {"latitude-coordinator": COORDINATOR.split(), "latitude-agent": AGENT.split()}


@pytest.mark.parametrize("program", sorted(PROGRAMS))
async def test_a_program_whose_metrics_port_is_taken_exits_naming_the_address(program, taken):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *PROGRAMS[program],
        "--http-address",
        taken,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 1
    error = stderr.decode()
    assert f"{program}: cannot serve HTTP on {taken}: the port is in use" in error, error
    assert "Traceback" not in error


async def test_the_web_server_says_which_address_is_taken(taken):
    with pytest.raises(LatitudeError, match=f"cannot serve HTTP on {taken}: the port is in use"):
        await WebServer(taken).start()
