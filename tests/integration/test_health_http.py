"""The agents' HTTP health endpoints on the real stack, asked over HTTP as a load balancer asks.

On the shared stack: each agent answers for its own database, one /primary at a time, with the
JSON a person debugging a load balancer needs; a standby an operator puts in maintenance leaves
the read checks until it is cleared. On a private stack (it moves and fences the
primary): a switchover turns the old primary's /primary to 503 before its database is fenced,
and the new one's to 200 only after; a primary cut off from every coordinator and standby
drains a margin before it fences itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field

import aiohttp
import grpc
import pytest

from agent.demotion import postmaster_pid
from latitude.admin_client import NoCoordinator, call_leader, cluster_status
from latitude.errors import LatitudeError
from latitude.lsn import parse_lsn
from latitude.stack.harness import running_stack
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2, common_pb2
from tests.integration.connections import TLS, eventually, query, running
from tests.integration.test_failsafe import FENCE_AFTER, failsafe_in_place
from tests.integration.test_operations import maintenance

PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
pytestmark = pytest.mark.stack

HEALTHY = common_pb2.REGION_STATE_HEALTHY
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
_TIMEOUT = aiohttp.ClientTimeout(total=3.0)


def agents(stack: Stack) -> dict[str, str]:
    """Each region's agent HTTP address (host:port)."""
    addresses = stack.http_addresses(stack.state())
    return {region: addresses[f"agent-{region}"] for region in REGIONS}


async def ask(address: str, path: str, method: str = "GET") -> tuple[int, dict]:
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as client:
        async with client.request(method, f"http://{address}{path}") as response:
            body = await response.json() if method != "HEAD" else {}
            return response.status, body


async def settled(stack: Stack) -> admin_pb2.ClusterStatus:
    """The cluster once every region is HEALTHY and exactly the write region's agent says
    yes on /primary."""
    addresses = stack.coordinator_addresses(stack.state())

    async def look():
        view = await cluster_status(addresses, 2.0, tls=TLS)
        if not view.write_region or any(r.state != HEALTHY for r in view.regions):
            return None
        answers = {r: (await ask(a, "/primary"))[0] for r, a in agents(stack).items()}
        yes = [r for r, status in answers.items() if status == 200]
        return view if yes == [view.write_region] else None

    return await eventually(look, 90, "every region HEALTHY and one /primary: the write region's")


async def statuses(stack: Stack, paths: dict[str, tuple[str, ...]]) -> dict[tuple, int]:
    """(region, path) -> status, for each region's ``paths``."""
    seen = {}
    for region, address in agents(stack).items():
        for path in paths[region]:
            seen[region, path] = (await ask(address, path))[0]
    return seen


async def test_each_agent_answers_for_its_own_database(stack: Stack):
    view = await settled(stack)
    primary = view.write_region
    everyone = ("/read-only", "/health", "/liveness", "/readiness")
    replica = ("/replica", "/replica?lag=1GB", "/replica?lag=60s")
    paths = {r: (*everyone, "/primary", *(() if r == primary else replica)) for r in REGIONS}
    expected = {(r, p): 200 for r in REGIONS for p in paths[r]}
    expected.update({(r, "/primary"): 503 for r in REGIONS if r != primary})
    seen: dict[tuple, int] = {}

    async def as_expected() -> bool:
        seen.update(await statuses(stack, paths))
        return seen == expected

    try:
        # A standby's stream may blink under load (streaming is judged on a few intervals).
        await eventually(as_expected, 30, "every agent to answer as its database's role says")
    except AssertionError as err:
        wrong = {k: v for k, v in seen.items() if expected[k] != v}
        raise AssertionError(f"{err}: answered otherwise: {wrong}") from None
    for region, address in agents(stack).items():
        _, body = await ask(address, "/primary")
        assert body["region"] == region and body["write_region"] == primary, body
        if region == primary:
            assert body["role"] == "primary" and not body["fenced"] and body["lag"] is None
            assert body["leader_epoch"] >= view.leader.epoch, (body, view.leader)
            assert body["lease_remaining_seconds"] > 0 and body["lsn"]["current"]
            continue
        assert body["reason"] == "the database is a standby", body
        _, body = await ask(address, "/replica")
        assert body["role"] == "standby" and body["lsn"]["replayed"]
        assert set(body["lag"]) == {"bytes", "seconds"}
    # The LSN an answer gives is the primary's, as PostgreSQL writes it.
    _, body = await ask(agents(stack)[primary], "/primary")
    now = await query(stack, primary, "SELECT pg_current_wal_lsn()::text")
    assert 0 < parse_lsn(body["lsn"]["current"]) <= parse_lsn(now)
    assert (await ask(agents(stack)[primary], "/replica"))[0] == 503


async def test_the_listener_speaks_http_as_load_balancers_expect(stack: Stack):
    view = await settled(stack)
    address = agents(stack)[view.write_region]
    assert (await ask(address, "/primary", "HEAD")) == (200, {})
    status, body = await ask(address, "/primary", "OPTIONS")
    assert status == 200 and body["region"] == view.write_region
    status, body = await ask(address, "/primary", "POST")
    assert (status, body["error"]) == (405, "POST is not allowed here")
    status, body = await ask(address, "/master")
    assert status == 404 and body["error"].startswith("no such path '/master'")
    status, body = await ask(address, "/replica?lag=lots")
    assert (status, body["error"]) == (
        400,
        "lag='lots': expected a size such as 16MB, 1GB or 1048576 (bytes), or a duration such "
        "as 10s or 500ms",
    )


async def test_a_standby_in_maintenance_leaves_the_read_checks_until_cleared(stack: Stack):
    """AdminService.SetMaintenance reaches the region's agent with the leader's next word:
    /replica and /read-only answer 503 saying why, while the process stays healthy, alive and
    ready (maintenance is no reason to restart it or pull it from every Service); cleared, the
    next word brings 200 back."""
    view = await settled(stack)
    region = next(r for r in REGIONS if r != view.write_region)
    address = agents(stack)[region]

    async def replica_says(status: int) -> dict | None:
        code, body = await ask(address, "/replica")
        return body if code == status else None

    try:
        await maintenance(stack, region, True, reason="kernel upgrade")
        body = await eventually(lambda: replica_says(503), 30, f"{region}'s /replica to say 503")
        assert body["reason"].startswith("region in maintenance (the leader, epoch "), body
        assert body["maintenance"] is True and body["role"] == "standby", body
        status, body = await ask(address, "/read-only")
        assert status == 503 and "nor a replica (region in maintenance" in body["reason"], body
        for path in ("/health", "/liveness", "/readiness"):
            status, body = await ask(address, path)
            assert status == 200 and body["maintenance"] is True, (path, body)
        # The word is each region's own: the other standby still serves reads.
        other = next(r for r in REGIONS if r not in (region, view.write_region))
        status, body = await ask(agents(stack)[other], "/replica")
        assert body["maintenance"] is False, body
    finally:
        await maintenance(stack, region, False)
    body = await eventually(lambda: replica_says(200), 30, f"{region}'s /replica 200 again")
    assert body["maintenance"] is False, body
    await settled(stack)


@dataclass
class Sample:
    sent: float  # monotonic, when the request left
    received: float
    status: int
    body: dict


@dataclass
class Watch:
    """Every agent's /primary, asked over and over, as a load balancer's checks do (only
    more often): each region's samples, in order."""

    addresses: dict[str, str]
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as client:
            while True:
                await asyncio.gather(*(self._ask(client, r) for r in self.addresses))
                await asyncio.sleep(0.02)

    async def _ask(self, client: aiohttp.ClientSession, region: str) -> None:
        sent = time.monotonic()
        try:
            async with client.get(f"http://{self.addresses[region]}/primary") as response:
                status, body = response.status, await response.json()
        except (aiohttp.ClientError, TimeoutError) as err:
            status, body = 0, {"error": repr(err)}
        self.samples.setdefault(region, []).append(Sample(sent, time.monotonic(), status, body))

    def yes(self, region: str) -> list[Sample]:
        return [s for s in self.samples.get(region, []) if s.status == 200]

    def first(self, region: str, matching) -> Sample | None:
        return next((s for s in self.samples.get(region, []) if matching(s)), None)


@pytest.fixture(scope="module")
def private_stack():
    with running_stack() as stack:
        yield stack


@pytest.mark.timeout(300)
async def test_a_leader_change_or_an_etcd_outage_leaves_the_primary_saying_yes(
    private_stack: Stack,
):
    """No promotion can happen without a leader, so neither takes writes down (the failsafe
    keeps the fence lease moving): a load balancer must not be told otherwise either."""
    stack = private_stack
    view = await settled(stack)
    primary = view.write_region
    addresses = stack.coordinator_addresses(stack.state())
    watch = Watch({primary: agents(stack)[primary]})
    async with running(watch.run()):
        await eventually(lambda: watch.yes(primary), 10, f"{primary} to answer 200")
        await failsafe_in_place(stack)
        await stack.kill(view.leader.leader_id)

        async def new_leader():
            status = await cluster_status(addresses, 1.0, tls=TLS)
            return status.leader.epoch > view.leader.epoch and status.write_region == primary

        await eventually(new_leader, 30, "a new leader")
        await failsafe_in_place(stack)
        try:
            await stack.kill("etcd-2")
            await stack.kill("etcd-3")
            outage = time.monotonic()
            await eventually(
                lambda: watch.samples[primary][-1].sent > outage + 3 * FENCE_AFTER,
                60,
                "three fence leases' time without etcd",
            )
        finally:
            await stack.up()  # etcd and the coordinator back; waits for every region HEALTHY
    said = watch.samples[primary]
    no = [s for s in said if s.status != 200]
    assert not no, f"{len(no)} of {len(said)} answers said no, the first: {no[0].body}"


async def as_leader(stack: Stack, method: str, request):
    """The leader's answer to an AdminService call that moves the primary; None when no leader
    took it up, so the caller asks again."""
    addresses = stack.coordinator_addresses(stack.state())
    try:
        return await call_leader(addresses, method, request, 60, tls=TLS)
    except NoCoordinator:  # a leader stepping down under load: nothing was done
        return None
    except LatitudeError as err:
        # A leader elected a moment ago (a test before took etcd's quorum away) refuses while
        # it has not read the write region or heard every agent yet: a precondition, checked
        # before anything is done.
        cause = err.__cause__
        if isinstance(cause, grpc.aio.AioRpcError) and cause.code() == PRECONDITION:
            return None
        raise


@pytest.mark.timeout(300)
async def test_a_switchover_drains_the_old_primary_before_fencing_it(private_stack: Stack):
    stack = private_stack
    view = await settled(stack)
    old, new = view.write_region, next(r for r in REGIONS if r != view.write_region)
    watch = Watch(agents(stack))
    async with running(watch.run()):
        await eventually(lambda: watch.yes(old), 10, f"{old} to answer 200 on /primary")
        request = admin_pb2.SwitchoverRequest(target_region=new, wait=True)
        reply = await eventually(
            lambda: as_leader(stack, "Switchover", request), 60, "a leader to switch over"
        )
        assert reply.failover.phase == admin_pb2.FAILOVER_PHASE_COMPLETED, reply.failover.error
        await eventually(lambda: watch.yes(new), 30, f"{new} to answer 200 on /primary")
    fenced = watch.first(old, lambda s: s.body.get("fenced"))
    assert fenced is not None, "the old primary was never seen fenced"
    # Before its database was fenced, the old primary already said no, and why: the FENCE
    # it received (marked before it is carried out), or the leader's word that a switchover
    # is under way, whichever reached it first.
    drained = watch.first(old, lambda s: s.status == 503)
    assert drained is not None and drained.sent < fenced.sent
    assert not drained.body["fenced"] and drained.body["role"] == "primary", drained.body
    assert drained.body["reason"].startswith(
        ("draining: FENCE ", f"the leader (epoch {view.leader.epoch}) says a failover")
    ), drained.body
    marked = watch.first(old, lambda s: (s.body.get("draining") or "").startswith("FENCE "))
    assert marked is not None, "the FENCE never marked the drain"
    # No moment when both said yes: the old one's last 200 came before the new one's first
    # was asked for; and the third region never said yes.
    assert watch.yes(old)[-1].received < watch.yes(new)[0].sent
    assert not any(watch.yes(r) for r in REGIONS if r not in (old, new))
    assert not any(s.status == 200 for s in watch.samples[old] if s.sent > drained.sent)


@pytest.mark.timeout(300)
async def test_a_primary_cut_off_drains_before_it_fences_itself(private_stack: Stack):
    """Every coordinator and every standby's agent frozen: no acknowledgement, no failsafe
    confirmation. /primary turns 503 a margin before the fence lease runs out, while the
    database still takes writes; then the agent (or its keeper) fences it."""
    stack = private_stack
    view = await settled(stack)
    primary = view.write_region
    state = stack.state()
    frozen = [*stack.topology.coordinators, *(f"agent-{r}" for r in REGIONS if r != primary)]
    watch = Watch({primary: agents(stack)[primary]})
    async with running(watch.run()):
        await eventually(lambda: watch.yes(primary), 10, f"{primary} to answer 200")
        stopped = []
        try:
            for name in frozen:
                os.kill(state.processes[name].pid, signal.SIGSTOP)
                stopped.append(name)
            await eventually(
                lambda: watch.first(primary, lambda s: s.body.get("fenced")),
                30,
                f"{primary} to fence itself",
            )
        finally:
            for name in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state.processes[name].pid, signal.SIGCONT)
    fenced = watch.first(primary, lambda s: s.body.get("fenced"))
    drained = watch.first(primary, lambda s: s.status == 503)
    assert drained is not None and drained.sent < fenced.sent
    assert drained.body["reason"].startswith("the fence lease runs out in "), drained.body
    assert not drained.body["fenced"] and drained.body["role"] == "primary"
    assert drained.body["lease_remaining_seconds"] > 0
    assert not any(s.status == 200 for s in watch.samples[primary] if s.sent > drained.sent)
    # The control plane back, the cluster settles with one primary saying yes again.
    await settled(stack)


@pytest.mark.timeout(300)
async def test_maintenance_of_the_primary_region_drains_its_primary_check_first(
    private_stack: Stack,
):
    """The primary's region goes into maintenance only through a drain (a switchover): its
    /primary turns 503 before its database is fenced, as in any switchover, and never says
    yes again; once flagged, the old primary, now a standby, is no replica for reads either."""
    stack = private_stack
    view = await settled(stack)
    old = view.write_region
    watch = Watch(agents(stack))
    request = admin_pb2.SetMaintenanceRequest(region=old, enabled=True, drain=True)
    try:
        async with running(watch.run()):
            await eventually(lambda: watch.yes(old), 10, f"{old} to answer 200 on /primary")
            reply = await eventually(
                lambda: as_leader(stack, "SetMaintenance", request), 60, "a leader to drain it"
            )
            new = reply.switchover.to_region
            assert reply.switchover.phase == admin_pb2.FAILOVER_PHASE_COMPLETED, reply.switchover
            await eventually(lambda: watch.yes(new), 30, f"{new} to answer 200 on /primary")

            async def resting() -> dict | None:
                # Rejoining as a standby restarts its database: DOWN for a moment.
                status, body = await ask(agents(stack)[old], "/replica")
                in_maintenance = body["reason"].startswith("region in maintenance")
                return body if status == 503 and in_maintenance else None

            body = await eventually(resting, 60, f"{old}'s /replica to say it is in maintenance")
            assert body["maintenance"] is True and body["role"] == "standby", body
        fenced = watch.first(old, lambda s: s.body.get("fenced"))
        drained = watch.first(old, lambda s: s.status == 503)
        assert fenced is not None and drained is not None and drained.sent < fenced.sent
        assert not drained.body["fenced"] and drained.body["role"] == "primary", drained.body
        assert not any(s.status == 200 for s in watch.samples[old] if s.sent > drained.sent)
        assert watch.yes(old)[-1].received < watch.yes(new)[0].sent
    finally:
        await maintenance(stack, old, False)
    await settled(stack)


@pytest.mark.timeout(300)
async def test_a_failover_moves_the_yes_to_the_new_primary(private_stack: Stack):
    """kill -9 of the primary's agent and database (the module's last test: the region stays
    dead): its listener goes with it, and a standby's agent says yes once it is promoted and
    named the write region, never beside another."""
    stack = private_stack
    view = await settled(stack)
    old = view.write_region
    addresses = stack.coordinator_addresses(stack.state())
    watch = Watch(agents(stack))
    async with running(watch.run()):
        await eventually(lambda: watch.yes(old), 10, f"{old} to answer 200")
        # The postmaster the agents run now: a switchover restarted it since the stack did.
        data = stack.postgres_node(stack.state(), old).data_dir
        await stack.kill(f"agent-{old}")
        os.kill(postmaster_pid(data), signal.SIGKILL)
        killed = time.monotonic()

        async def promoted():
            status = await cluster_status(addresses, 2.0, tls=TLS)
            new = status.write_region
            return new if new not in ("", old) and watch.yes(new) else None

        new = await eventually(promoted, 60, "a standby promoted and saying yes on /primary")
    assert watch.yes(old)[-1].received <= killed
    yes = [r for r in REGIONS if watch.yes(r)]
    assert sorted(yes) == sorted([old, new]), yes
    body = watch.yes(new)[0].body
    assert body["write_region"] == new and body["role"] == "primary" and not body["fenced"]
    assert body["timeline"] > view_timeline(watch, old)


def view_timeline(watch: Watch, region: str) -> int:
    """The timeline the region's last yes named."""
    return watch.yes(region)[-1].body["timeline"]
