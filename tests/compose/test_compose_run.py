"""docker-compose.yml, run: a Docker engine of the test's own builds the images, brings the
compose stack up, and the test switches the primary over to another region (the old primary
fenced, then rejoining as a standby of the new one: the hard fence and REJOIN at work inside a
region's container), kills the primary region's container and sees a failover and the routing
change; then everything goes, the engine included.

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

import dns.asyncquery
import dns.exception
import dns.message
import pytest

from latitude.admin_client import NoCoordinator, call_leader, cluster_status
from latitude.route_view import resolve
from latitude.stack import compose, docker_images
from latitude.stack.ports import allocate
from latitude.stack.topology import DEFAULT_TOPOLOGY, DNS_ZONE
from latitude.v1 import admin_pb2, common_pb2, routing_pb2
from tests.compose import engine as engines
from tests.integration.connections import eventually

pytestmark = [
    pytest.mark.compose,
    # Measured here: 1.7 to 2.3 min warm, by the machine's load; building the cached base
    # adds 1.5 to 2 min cold.
    pytest.mark.timeout(900),
    pytest.mark.skipif(bool(engines.missing()), reason=engines.missing() or "runs"),
]

ROOT = Path(__file__).resolve().parents[2]
T = DEFAULT_TOPOLOGY
HEALTHY = common_pb2.REGION_STATE_HEALTHY
# A client in Virginia: us-east-1 is its nearest region while it is healthy.
VIRGINIA = common_pb2.Location(latitude=38.95, longitude=-77.45)


@dataclass
class ComposeStack:
    engine: engines.Engine
    project: str
    env: dict[str, str]
    coordinators: list[str]
    dns_ports: list[int]  # each coordinator's DNS responder, published on 127.0.0.1

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


def _free_subnet_prefix() -> str:
    """A /24 for the compose network that no route of this machine covers yet (another
    engine's network, a test's namespaces), starting from one this process's id picks, so that
    two runs on one machine do not meet."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True)
    used = routes.stdout
    for offset in range(200):
        prefix = f"172.29.{(os.getpid() + offset) % 200 + 20}"
        if f"{prefix}." not in used:
            return prefix
    raise AssertionError(f"no free 172.29.x.0/24 for the compose network:\n{used}")


@pytest.fixture(scope="module")
def engine() -> Iterator[engines.Engine]:
    before = engines.links()
    with engines.running_engine() as started:
        root = started.root
        yield started
    left = engines.leftovers(before, root)
    assert not left, "the Docker engine left things behind:\n" + "\n".join(left)


@pytest.fixture(scope="module")
def stack(engine: engines.Engine) -> Iterator[ComposeStack]:
    docker_images.build(engine.docker)
    # Free ports for what the compose file publishes, and a free subnet: nothing meets
    # another stack on this machine.
    names = [
        compose.port_variable(c, what) for c in T.coordinators for what in ("grpc", "http", "dns")
    ]
    ports = allocate("127.0.0.1", names)
    variables = {name: str(port) for name, port in ports.items()}
    running = ComposeStack(
        engine,
        project=f"latitudetest{os.getpid()}",
        env=engine.env(**variables, LATITUDE_SUBNET_PREFIX=_free_subnet_prefix()),
        coordinators=[
            f"127.0.0.1:{ports[compose.port_variable(c, 'grpc')]}" for c in T.coordinators
        ],
        dns_ports=[ports[compose.port_variable(c, "dns")] for c in T.coordinators],
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


async def _routing(stack: ComposeStack, intent: int) -> routing_pb2.RoutingDecision:
    request = routing_pb2.ResolveRequest(location=VIRGINIA, intent=intent)
    return await resolve(stack.coordinators, request, timeout=3)


async def _write_region_of(stack: ComposeStack) -> str:
    return (await _routing(stack, routing_pb2.INTENT_WRITE)).write_region


async def _read_regions(stack: ComposeStack) -> list[str]:
    return [t.region for t in (await _routing(stack, routing_pb2.INTENT_READ)).targets]


def _psql(stack: ComposeStack, region: str, sql: str) -> str:
    """What psql prints for ``sql`` on the region's database, asked inside its container (the
    superuser over the Unix socket, as the postgres OS user: peer authentication)."""
    done = stack.engine.run(
        "exec",
        "--user=postgres",
        stack.container(compose.postgres_service(region)),
        "psql",
        "--username=postgres",
        "--dbname=postgres",
        "--no-psqlrc",
        "--tuples-only",
        "--no-align",
        "--quiet",
        f"--command={sql}",
        timeout=30,
    )
    return done.stdout.strip() if done.returncode == 0 else f"error: {done.stderr.strip()}"


WRITE = "CREATE TABLE IF NOT EXISTS compose_writes (n int); INSERT INTO compose_writes VALUES (1)"


async def test_compose_stack_switches_over_fences_and_fails_over(stack: ComposeStack) -> None:
    started = time.monotonic()
    try:
        await eventually(
            lambda: _healthy_under(stack, T.primary.name),
            300,
            "three regions HEALTHY with the initial primary",
        )
    except AssertionError:
        print(stack.logs())
        raise
    assert await _write_region_of(stack) == T.primary.name
    assert (await _read_regions(stack))[0] == T.primary.name
    assert _psql(stack, T.primary.name, "SELECT pg_is_in_recovery()") == "f"
    healthy_after = time.monotonic() - started
    # The agent runs beside the database and holds no password of the superuser's.
    for region in T.regions:
        assert "POSTGRES_PASSWORD" not in _agent_environment(stack, region.name)

    # A switchover: the old primary is fenced, the target promoted, and the old primary
    # rejoins as a standby streaming from the new one, all inside the regions' containers.
    old, target = T.primary.name, T.standbys[0].name
    switched_after = await _switch_over(stack, old, target)

    # The primary's container cut from the compose network: its agent hears no coordinator
    # and no standby, and fences its database while the others fail over; back on the
    # network, it rejoins as a standby.
    primary, cut_after = await _cut_off(stack, target)

    # kill -9 the primary region's container: its database, keeper and agent at once.
    killed = stack.compose("kill", compose.postgres_service(primary), timeout=60)
    assert killed.returncode == 0, killed.stderr
    killed_at = time.monotonic()
    status = await _failed_over(stack, primary, "the killed primary")
    failed_over_after = time.monotonic() - killed_at
    new_primary = status.write_region
    # The routing table says so to clients, and the promoted database takes writes.
    assert await eventually(
        lambda: _write_region_of_is(stack, new_primary), 30, f"Resolve to name {new_primary}"
    )
    assert _psql(stack, new_primary, "SELECT pg_is_in_recovery()") == "f"
    assert _psql(stack, new_primary, WRITE) == "", "the promoted database refuses a write"
    # Every coordinator's DNS names the new primary's database to clients that only speak DNS.
    want = [f"{compose.postgres_service(new_primary)}."]
    for port in stack.dns_ports:

        async def names_it(port=port):
            return await _write_srv_targets(port) == want

        await eventually(names_it, 30, f"DNS on port {port} to say {want}")

    async def reads_elsewhere():
        try:
            reads = await _read_regions(stack)
        except NoCoordinator:
            return None
        return reads if reads and primary not in reads else None

    await eventually(reads_elsewhere, 30, f"reads routed away from the dead {primary}")
    standby = next(r.name for r in T.regions if r.name not in (primary, new_primary))
    await _restarts_without_its_agent(stack, standby)
    _stops_in_order(stack, standby)
    print(
        f"compose: healthy {healthy_after:.0f} s after up; switchover to {target} with "
        f"{old} streaming again in {switched_after:.1f} s; {target} cut off, fenced and "
        f"{primary} promoted and {target} streaming again in {cut_after:.1f} s; failover to "
        f"{new_primary} {failed_over_after:.1f} s after the kill"
    )


async def _switch_over(stack: ComposeStack, old: str, target: str) -> float:
    """Switch the primary from ``old`` to ``target`` through AdminService and see ``old``
    rejoin as ``target``'s standby: its server restarted by its agent inside its container,
    which itself never restarts. The seconds it all took."""
    started = time.monotonic()
    old_container = stack.container(compose.postgres_service(old))
    container_started = _inspect(stack, old_container, "{{.State.StartedAt}}")
    postmaster_started = _psql(stack, old, "SELECT pg_postmaster_start_time()")
    request = admin_pb2.SwitchoverRequest(target_region=target, wait=True)
    try:
        reply = await call_leader(stack.coordinators, "Switchover", request, 120)
    except Exception:
        print(stack.logs(60))
        raise
    record = reply.failover
    assert record.phase == admin_pb2.FAILOVER_PHASE_COMPLETED, record.error
    assert (record.from_region, record.to_region) == (old, target)
    assert record.data_loss_bound_bytes == 0
    assert _psql(stack, target, "SELECT pg_is_in_recovery()") == "f"
    assert _psql(stack, target, WRITE) == "", "the new primary refuses a write"
    await _streams_from(stack, old, target)
    assert _psql(stack, old, WRITE).startswith("error:"), "the old primary takes writes"
    assert _psql(stack, old, "SELECT pg_postmaster_start_time()") != postmaster_started
    assert _inspect(stack, old_container, "{{.State.StartedAt}}") == container_started
    await eventually(lambda: _healthy_under(stack, target), 120, f"all HEALTHY under {target}")
    return time.monotonic() - started


async def _cut_off(stack: ComposeStack, primary: str) -> tuple[str, float]:
    """Disconnect ``primary``'s container from the compose network until another region is
    promoted; ``primary``'s database must refuse writes by then (self-fenced: never two
    writable primaries). Then reconnect it and see it rejoin the new primary as a standby.
    The new primary, and the seconds it all took."""
    started = time.monotonic()
    service = compose.postgres_service(primary)
    container, network = stack.container(service), f"{stack.project}_latitude"
    cut = stack.engine.run("network", "disconnect", network, container, timeout=60)
    assert cut.returncode == 0, cut.stderr
    status = await _failed_over(stack, primary, "the cut-off primary")
    # At once, with no polling: the promotion waited for the old primary's fence deadline.
    refused = _psql(stack, primary, WRITE)
    assert refused.startswith("error:"), f"the cut-off {primary} still took a write"
    rejoined = stack.engine.run(
        "network", "connect", f"--alias={service}", network, container, timeout=60
    )
    assert rejoined.returncode == 0, rejoined.stderr
    await _streams_from(stack, primary, status.write_region)
    return status.write_region, time.monotonic() - started


async def _failed_over(stack: ComposeStack, away_from: str, what: str):
    """The cluster's status once a failover has moved the write region off ``away_from``."""

    async def failed_over():
        status = await _status(stack)
        if status is None or status.write_region in ("", away_from):
            return None
        return None if status.HasField("failover") else status

    try:
        status = await eventually(failed_over, 180, f"a failover away from {what}")
    except AssertionError:
        print(stack.logs())
        raise
    assert status.write_region in {r.name for r in T.regions} - {away_from}
    return status


async def _streams_from(stack: ComposeStack, standby: str, primary: str) -> None:
    """``standby``'s server comes to stream WAL from ``primary``'s, in recovery."""
    want = compose.postgres_service(primary)
    query = "SELECT sender_host FROM pg_stat_wal_receiver WHERE status = 'streaming'"

    async def streaming():
        return _psql(stack, standby, query) == want

    try:
        await eventually(streaming, 120, f"{standby} to stream from {primary} as a standby")
    except AssertionError:
        print(stack.logs(60))
        raise
    assert _psql(stack, standby, "SELECT pg_is_in_recovery()") == "t"


async def _healthy_under(stack: ComposeStack, region: str):
    status = await _status(stack)
    if status is None or status.write_region != region or status.HasField("failover"):
        return None
    healthy = {r.region for r in status.regions if r.state == HEALTHY}
    return status if healthy == {r.name for r in T.regions} else None


def _inspect(stack: ComposeStack, container: str, template: str) -> str:
    done = stack.engine.run("inspect", f"--format={template}", container, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _stops_in_order(stack: ComposeStack, region: str) -> None:
    """``docker stop`` of a region's container: its PID 1 stops the agent, then the keeper,
    then PostgreSQL with a fast shutdown (agent.demotion.stop_postmaster says "clean": the
    server wrote its shutdown checkpoint), and the container exits 0."""
    container = stack.container(compose.postgres_service(region))
    stopped = stack.engine.run("stop", "--time=60", container, timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert _inspect(stack, container, "{{.State.ExitCode}}") == "0"
    logs = stack.engine.run("logs", "--tail=200", container, timeout=60)
    said = logs.stdout + logs.stderr
    marks = [
        "stopping agent",
        "stopping keeper",
        "stopping postgres",
        "stopped postgres: clean",
    ]
    found = [said.rfind(mark) for mark in marks]
    assert -1 not in found and found == sorted(found), f"stopped out of order:\n{said[-3000:]}"


async def _restarts_without_its_agent(stack: ComposeStack, region: str) -> None:
    """kill -9 of the agent alone: the region's PID 1 ends the container non-zero, the restart
    policy starts it again, and the region comes back HEALTHY (its database a standby still)."""
    container = stack.container(compose.postgres_service(region))
    _in_agent(stack, region, "os.kill(pid, signal.SIGKILL)")

    async def back():
        if _inspect(stack, container, "{{.RestartCount}}") == "0":
            return None
        status = await _status(stack)
        states = {r.region: r.state for r in status.regions} if status else {}
        return states.get(region) == HEALTHY

    await eventually(back, 120, f"{region} restarted without its agent and HEALTHY again")
    assert _psql(stack, region, "SELECT pg_is_in_recovery()") == "t"


def _agent_environment(stack: ComposeStack, region: str) -> str:
    """The agent's environment in its region's container, as /proc has it."""
    said = _in_agent(
        stack, region, "print((proc / 'environ').read_bytes().replace(b'\\0', b'\\n').decode())"
    )
    assert "LATITUDE_AGENT_REGION" in said, said
    return said


def _in_agent(stack: ComposeStack, region: str, statement: str) -> str:
    """Run ``statement`` in the region's container with ``proc`` (its /proc entry) and ``pid``
    naming its agent; what it printed. As the agent's own uid: root in a container without
    CAP_SYS_PTRACE may not read another user's /proc/<pid>/environ."""
    script = "\n".join(
        (
            "import os, pathlib, signal",
            "for proc in pathlib.Path('/proc').glob('[0-9]*'):",
            "    if b'-m\\0agent.main\\0' in (proc / 'cmdline').read_bytes():",
            "        pid = int(proc.name)",
            "        print('agent', pid)",
            f"        {statement}",
        )
    )
    container = stack.container(compose.postgres_service(region))
    done = stack.engine.run("exec", "--user=postgres", container, "python", "-c", script)
    assert done.returncode == 0 and "agent " in done.stdout, done.stderr
    return done.stdout


async def _write_srv_targets(port: int) -> list[str] | None:
    """The SRV targets a coordinator's DNS gives for the write region's PostgreSQL (its
    endpoints are the compose services' names, so SRV, not A, carries them)."""
    query = dns.message.make_query(f"_postgresql._tcp.write.{DNS_ZONE}", "SRV")
    try:
        answer = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=3)
    except (dns.exception.Timeout, OSError):
        return None
    return [r.target.to_text() for rrset in answer.answer for r in rrset]


async def _write_region_of_is(stack: ComposeStack, region: str) -> bool:
    try:
        return await _write_region_of(stack) == region
    except NoCoordinator:
        return False
