"""docker-compose.yml, run: a Docker engine of the test's own builds the images, brings the
compose stack up, and the test kills the primary region's containers and sees a failover and
the routing change; then everything goes, the engine included.

No registry is reachable here, so the images are local stand-ins (latitude.stack.docker_images)
tagged with the names the compose file defaults to. The test talks to the coordinators through
the ports the compose file publishes on 127.0.0.1 (free ones, through its port variables), and
to the databases by ``docker exec``; all other traffic stays on the compose network.

Run it with ``.venv/bin/pytest -m compose tests/compose`` as root (it skips elsewhere).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from latitude.admin_client import NoCoordinator, cluster_status
from latitude.route_view import resolve
from latitude.stack import compose, docker_images
from latitude.stack.ports import allocate
from latitude.stack.topology import DEFAULT_TOPOLOGY
from latitude.v1 import common_pb2, routing_pb2
from tests.compose import engine as engines
from tests.integration.connections import eventually

pytestmark = [
    pytest.mark.compose,
    # Cold (no cached base image): about 2 min to build, 2 to start, 1 to fail over.
    pytest.mark.timeout(900),
    pytest.mark.skipif(bool(engines.missing()), reason=engines.missing() or "runs"),
]

ROOT = Path(__file__).resolve().parents[2]
T = DEFAULT_TOPOLOGY
HEALTHY = common_pb2.REGION_STATE_HEALTHY
# A client in Dublin: eu-west-1 is its nearest region while it is healthy.
DUBLIN = common_pb2.Location(latitude=53.35, longitude=-6.26)


@dataclass
class ComposeStack:
    engine: engines.Engine
    project: str
    env: dict[str, str]
    coordinators: list[str]

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [
                "docker-compose",
                "--project-name",
                self.project,
                "--file",
                str(ROOT / compose.COMPOSE_FILE),
                *args,
            ],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return done

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def logs(self, lines: int = 30) -> str:
        return self.compose("logs", "--no-color", f"--tail={lines}", timeout=60).stdout


@pytest.fixture(scope="module")
def engine() -> Iterator[engines.Engine]:
    before = engines._links()
    with engines.running_engine() as started:
        root = started.root
        yield started
    left = engines.leftovers(before, root)
    assert not left, "the Docker engine left things behind:\n" + "\n".join(left)


@pytest.fixture(scope="module")
def stack(engine: engines.Engine) -> Iterator[ComposeStack]:
    docker_images.build(engine.docker)
    grpc_ports = allocate("127.0.0.1", [f"{c}-grpc" for c in T.coordinators])
    http_ports = allocate("127.0.0.1", [f"{c}-http" for c in T.coordinators])
    ports = {}
    for name in T.coordinators:
        variable = f"LATITUDE_PORT_{name.upper().replace('-', '_')}"
        ports[f"{variable}_GRPC"] = str(grpc_ports[f"{name}-grpc"])
        ports[f"{variable}_HTTP"] = str(http_ports[f"{name}-http"])
    running = ComposeStack(
        engine,
        project=f"latitudetest{os.getpid()}",
        env=engine.env(**ports),
        coordinators=[f"127.0.0.1:{p}" for p in grpc_ports.values()],
    )
    try:
        up = running.compose("up", "--detach", "--no-build", timeout=600)
        assert up.returncode == 0, f"docker-compose up failed:\n{up.stderr}\n{running.logs()}"
        yield running
    except BaseException:
        print(running.logs())
        raise
    finally:
        # Nothing here needs a graceful stop: killed first, the services go at once.
        running.compose("kill", timeout=120)
        down = running.compose("down", "--volumes", "--remove-orphans", "--timeout=5")
        assert down.returncode == 0, f"docker-compose down failed:\n{down.stderr}"


async def _status(stack: ComposeStack):
    try:
        return await cluster_status(stack.coordinators)
    except NoCoordinator:
        return None


async def _write_region_of(stack: ComposeStack) -> str:
    decision = await resolve(
        stack.coordinators,
        routing_pb2.ResolveRequest(location=DUBLIN, intent=routing_pb2.INTENT_WRITE),
        timeout=3,
    )
    return decision.write_region


def _in_recovery(stack: ComposeStack, region: str) -> str:
    """pg_is_in_recovery() of the region's database, asked inside its container."""
    done = stack.engine.run(
        "exec",
        stack.container(compose.postgres_service(region)),
        "psql",
        "--username=postgres",
        "--dbname=postgres",
        "--no-psqlrc",
        "--tuples-only",
        "--no-align",
        "--command=SELECT pg_is_in_recovery()",
        timeout=30,
    )
    return done.stdout.strip() if done.returncode == 0 else f"error: {done.stderr.strip()}"


async def test_compose_stack_fails_over(stack: ComposeStack) -> None:
    started = time.monotonic()

    async def all_healthy():
        status = await _status(stack)
        if status is None or status.write_region != T.primary.name:
            return None
        healthy = {r.region for r in status.regions if r.state == HEALTHY}
        return status if healthy == {r.name for r in T.regions} else None

    try:
        await eventually(all_healthy, 300, "three regions HEALTHY with the initial primary")
    except AssertionError:
        print(stack.logs())
        raise
    assert await _write_region_of(stack) == T.primary.name
    assert _in_recovery(stack, T.primary.name) == "f"
    healthy_after = time.monotonic() - started

    # kill -9 the primary region: its database and its agent.
    primary = T.primary.name
    killed = stack.compose(
        "kill", compose.postgres_service(primary), compose.agent_service(primary), timeout=60
    )
    assert killed.returncode == 0, killed.stderr
    killed_at = time.monotonic()

    async def failed_over():
        status = await _status(stack)
        if status is None or status.write_region in ("", primary) or status.HasField("failover"):
            return None
        return status

    try:
        status = await eventually(failed_over, 180, "a failover away from the killed primary")
    except AssertionError:
        print(stack.logs())
        raise
    new_primary = status.write_region
    assert new_primary in {r.name for r in T.standbys}
    # The routing table says so to clients, and the promoted database takes writes.
    assert await eventually(
        lambda: _write_region_of_is(stack, new_primary), 30, f"Resolve to name {new_primary}"
    )
    assert _in_recovery(stack, new_primary) == "f"
    print(
        f"compose: healthy {healthy_after:.0f} s after up; failover to {new_primary} "
        f"{time.monotonic() - killed_at:.1f} s after the kill"
    )


async def _write_region_of_is(stack: ComposeStack, region: str) -> bool:
    try:
        return await _write_region_of(stack) == region
    except NoCoordinator:
        return False
