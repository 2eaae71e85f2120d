"""Partitions and faults on a stack whose regions and control plane each have a network
namespace, watched by an independent monitor that writes everywhere from the observer.

One stack serves the module: every scenario heals what it broke, waits for the cluster to
converge (one writable primary, the write region on it, everyone else streaming from it)
and leaves it ready for the next, wherever the primary ended up. Every scenario asserts the
monitor's checks — no two databases acknowledging commits within 100 ms, no acknowledged row
lost beyond a failover's recorded bound, convergence — and records its write unavailability.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from latitude.admin_client import call_any, call_leader
from latitude.stack import processes, services
from latitude.stack.harness import log_tails
from latitude.stack.network import Network
from latitude.stack.postgres import tls_ca
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2, common_pb2, routing_pb2
from tests.chaos.monitor import (
    REGIONS,
    Monitor,
    Result,
    database_view,
    failovers_since,
    monitored,
    prepare,
    status,
    wait_converged,
    wait_phase,
)
from tests.integration.connections import failover_record

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


async def eventually(look: Callable[[], Awaitable | object], timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        seen = look()
        if asyncio.iscoroutine(seen):
            seen = await seen
        if seen:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; saw {seen!r}")
        await asyncio.sleep(0.05)


async def ready(stack: Stack, timeout: float = 60.0) -> None:
    """Every region HEALTHY and streaming, the primary unfenced: where a scenario starts.
    A scenario that failed may have left a process down: ``up`` restarts it."""
    seen = []

    async def look():
        status = await stack.status()
        seen.append(status)
        return status.ready

    try:
        await eventually(look, timeout, "the stack to be ready")
    except AssertionError:
        await stack.up()
        try:
            await eventually(look, timeout, "the stack to be ready after up")
        except AssertionError as err:
            raise AssertionError(f"{err}: {_not_ready(seen[-1])}") from None


def _not_ready(status) -> str:
    databases = ", ".join(
        f"{r.region} {r.role}{' fenced' if r.fenced else ''}"
        f"{' streaming' if r.streaming else ''} {r.error}".strip()
        for r in status.regions
    )
    cluster = status.cluster_error
    if status.cluster is not None:
        cluster = "; ".join(
            f"{r.region} {common_pb2.RegionState.Name(r.state)} ({r.state_reason})"
            for r in status.cluster.regions
        )
    return f"databases: {databases}; control plane: {cluster}"


@pytest.fixture
async def settled(netns_stack: Stack) -> Stack:
    """The module's stack healed and ready. A fixture, so that a stack a previous scenario
    left broken is an error of this test's setup, never mistaken for its expected failure."""
    network = netns_stack.network()
    await network.heal_all()
    try:
        await ready(netns_stack)
    except AssertionError:
        _keep_logs(netns_stack, "settling")
        raise
    return netns_stack


def _keep_logs(stack: Stack, name: str) -> None:
    keep = os.environ.get("LATITUDE_CHAOS_LOGS")
    if keep:
        shutil.copytree(stack.dir / "logs", Path(keep) / name, dirs_exist_ok=True)
    print(log_tails(stack))


@dataclass
class Run:
    stack: Stack
    network: Network
    monitor: Monitor
    result: Result
    primary: str
    started: float  # wall clock
    fault_at: float = 0.0  # wall clock; unavailability counts from here

    @property
    def standbys(self) -> list[str]:
        return [r for r in REGIONS if r != self.primary]

    def fault(self) -> None:
        self.fault_at = time.time()

    async def acks_continue(self, region: str, count: int = 5, timeout: float = 5.0) -> None:
        mark = time.time()
        await eventually(
            lambda: self.monitor.acked_on(region, mark) >= count,
            timeout,
            f"commits acknowledged on {region}",
        )

    async def stays_writable(self, seconds: float, region: str | None = None) -> None:
        """For ``seconds``, the primary stays writable to ordinary clients (not fenced, not a
        standby) and commits keep being acknowledged on it."""
        region = region or self.primary
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            view = await database_view(self.stack, region)
            assert view.writable, f"{region} stopped being writable: {view}"
            await asyncio.sleep(0.25)
        await self.acks_continue(region)

    async def no_failover_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            view = await status(self.stack)
            if view is not None:
                assert view.write_region == self.primary, f"the write region moved: {view}"
                assert (
                    not view.HasField("failover")
                    or view.failover.phase
                    in (
                        admin_pb2.FAILOVER_PHASE_COMPLETED,
                        admin_pb2.FAILOVER_PHASE_ABORTED,
                    )
                    or view.failover.started_at.ToNanoseconds() / 1e9 < self.started
                ), f"a failover started: {view.failover}"
            await asyncio.sleep(0.25)

    async def write_region_moves(self, timeout: float = 30.0) -> str:
        async def moved():
            view = await status(self.stack)
            if view is not None and view.write_region not in ("", self.primary):
                return view.write_region
            return None

        return await eventually(moved, timeout, f"the write region to move off {self.primary}")


@asynccontextmanager
async def scenario(stack: Stack, name: str, *, converge_within: float = 90.0) -> AsyncIterator[Run]:
    """Run a scenario under the monitor; afterwards heal everything, wait for convergence,
    check the monitor's findings and record the figures."""
    network = stack.network()
    assert network is not None, "the chaos stack has no network of its own"
    await network.heal_all()
    await ready(stack, timeout=10)
    primary = (await status(stack)).write_region
    await prepare(stack, primary)
    monitor = Monitor(stack, f"{name}-{time.time_ns()}")
    result = Result(name)
    started = time.time()
    run = Run(stack, network, monitor, result, primary, started, started)
    try:
        async with monitored(monitor):
            await run.acks_continue(primary, 10, timeout=10)
            try:
                yield run
            finally:
                await network.heal_all()
            final, took = await wait_converged(stack, converge_within)
            result.converge_s = round(took, 2)
            await run.acks_continue(final, 5, timeout=10)
    except BaseException as err:
        # Figures of a failed scenario are worth having too (bench/chaos.py prints them).
        result.write_unavailability_s = round(monitor.unavailability(run.fault_at), 3)
        result.two_writable_overlaps = len(monitor.overlaps())
        result.acknowledged = len(monitor.acks)
        result.notes.append(f"failed: {type(err).__name__}: {err}"[:400])
        result.record()
        _keep_logs(stack, name)
        raise
    record = await failover_record(stack)
    records = [
        record
        for record in [record]
        if record is not None and record.started_at.ToNanoseconds() / 1e9 >= started
    ]
    lost, excused = await monitor.lost(final, records, synchronous=False)
    overlaps = monitor.overlaps()
    result.write_unavailability_s = round(monitor.unavailability(run.fault_at), 3)
    result.two_writable_overlaps = len(overlaps)
    result.acknowledged = len(monitor.acks)
    result.acknowledged_lost = len(lost)
    result.lost_within_bound = len(excused)
    result.failovers_started = len(await failovers_since(stack, started))
    result.record()
    print(result)
    assert not overlaps, (
        f"{len(overlaps)} times two databases took commits at once (one between two of "
        f"another); first: {overlaps[0]}"
    )
    assert not lost, f"{len(lost)} acknowledged commits lost; first: {lost[:5]}"
    # Each failover: nothing acknowledged by the old primary after the new one's first commit.
    for record in records:
        old = [a.at for a in monitor.acks if a.region == record.from_region]
        new = [a.at for a in monitor.acks if a.region == record.to_region and a.at > started]
        if old and new and record.phase == admin_pb2.FAILOVER_PHASE_COMPLETED:
            later = [t for t in old if t > min(new)]
            assert not later, (
                f"{record.from_region} acknowledged {len(later)} commits after "
                f"{record.to_region} had taken its first"
            )


# -- (1) the primary region cut from the control plane only ---------------------------------


async def test_primary_cut_from_the_control_plane_keeps_writing_and_does_not_fail_over(
    settled: Stack,
):
    async with scenario(settled, "primary-cut-from-control") as run:
        run.fault()
        await run.network.cut(run.primary, "control")

        states: list[str] = []

        async def sample_state():
            while True:
                view = await status(run.stack)
                if view is not None:
                    region = next(r for r in view.regions if r.region == run.primary)
                    name = common_pb2.RegionState.Name(region.state).removeprefix("REGION_STATE_")
                    states.append(f"{name} ({region.state_reason})")
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample_state())
        try:
            # Well past detection (3 s) and fence_after (4 s): still the primary, writable.
            await asyncio.gather(run.stays_writable(10), run.no_failover_for(10))
        finally:
            sampler.cancel()
        request = admin_pb2.ListEventsRequest(
            kinds=[admin_pb2.EVENT_KIND_ALERT], region=run.primary
        )
        request.since.FromNanoseconds(int(run.started * 1e9))
        addresses = run.stack.coordinator_addresses(run.stack.state())
        events = (await call_any(addresses, "ListEvents", request, 5.0)).events
        assert events, f"no alert for {run.primary} cut from the control plane"
        assert any(s.startswith("DEGRADED") for s in states[-10:]), (
            f"{run.primary} cut from the control plane but followed by its standbys should be "
            f"DEGRADED; it was {states[-1] if states else '?'}"
        )
    assert run.result.failovers_started == 0
    assert run.result.write_unavailability_s < 1.0


# -- (2) the primary region cut from everything but the observer -----------------------------


async def test_primary_isolated_fails_over_once_and_never_two_writable(settled: Stack):
    async with scenario(settled, "primary-isolated") as run:
        run.fault()
        await run.network.isolate(run.primary)
        new = await run.write_region_moves(30)
        await run.acks_continue(new, 10, timeout=15)
    assert run.result.failovers_started == 1


# -- (3) a standby region cut, then healed ---------------------------------------------------


async def test_standby_isolated_then_healed_catches_up_without_failover(settled: Stack):
    async with scenario(settled, "standby-isolated") as run:
        standby = run.standbys[0]
        run.fault()
        await run.network.isolate(standby)
        await asyncio.gather(run.stays_writable(8), run.no_failover_for(8))
        cut_seq = max(a.seq for a in run.monitor.acks)
    # Converged: it streams again; and it has caught up with what was written meanwhile.
    state = settled.state()
    from latitude.stack.postgres import connect

    conn = await connect(settled.postgres_node(state, standby), state.superuser_password)
    try:
        seen = await eventually(
            lambda: conn.fetchval(
                "SELECT count(*) FROM chaos_probe WHERE run = $1 AND seq >= $2",
                run.monitor.run_id, cut_seq,
            ),
            15, f"{standby} to replay what was written while it was cut off",
        )  # fmt: skip
        assert seen >= 1
    finally:
        await conn.close()
    assert run.result.failovers_started == 0
    assert run.result.write_unavailability_s < 1.0


# -- (4) etcd: quorum lost for 30 s; one member lost ----------------------------------------


async def _routing_answers(stack: Stack) -> None:
    """Every coordinator still answers Resolve (from the last table it has)."""
    from latitude import route_view

    for address in stack.coordinator_addresses(stack.state()):
        request = routing_pb2.ResolveRequest(intent=routing_pb2.INTENT_WRITE)
        request.location.latitude, request.location.longitude = 50.0, 0.0
        decision = await route_view.resolve([address], request, 2.0)
        assert decision.write_region, f"{address} answered no write region: {decision}"


async def test_etcd_quorum_lost_for_30_s_changes_nothing(settled: Stack):
    async with scenario(settled, "etcd-quorum-lost-30s") as run:
        run.fault()
        for member in ("etcd-2", "etcd-3"):
            await run.stack.kill(member)
        for _ in range(6):
            await asyncio.gather(run.stays_writable(5), _routing_answers(run.stack))
        await run.stack.up()
    assert run.result.failovers_started == 0
    assert run.result.write_unavailability_s < 1.0


async def test_one_etcd_member_lost_changes_nothing(settled: Stack):
    async with scenario(settled, "etcd-one-member-lost") as run:
        run.fault()
        await run.stack.kill("etcd-1")
        await asyncio.gather(run.stays_writable(8), run.no_failover_for(8))
        await run.stack.up()
    assert run.result.failovers_started == 0
    assert run.result.write_unavailability_s < 1.0


# -- (5) the leader coordinator killed, and frozen ------------------------------------------


async def _leader(stack: Stack) -> str:
    async def look():
        view = await status(stack)
        return view.leader.leader_id if view is not None else ""

    return await eventually(look, 15, "a leader")


async def test_leader_killed_three_times_keeps_writes(settled: Stack):
    async with scenario(settled, "leader-killed-x3") as run:
        run.fault()
        for _ in range(3):
            leader = await _leader(run.stack)
            await run.stack.kill(leader)
            await run.stays_writable(6)
            await run.stack.up()
    assert run.result.failovers_started == 0
    assert run.result.write_unavailability_s < 1.0


async def test_leader_frozen_for_10_s_three_times_keeps_writes(settled: Stack):
    async with scenario(settled, "leader-frozen-10s-x3") as run:
        run.fault()
        for _ in range(3):
            leader = await _leader(run.stack)
            await run.stack.kill(leader, signal.SIGSTOP)
            try:
                await run.stays_writable(10)
            finally:
                await run.stack.kill(leader, signal.SIGCONT)
            await eventually(lambda: _leader(run.stack), 10, "a leader after the freeze")
    assert run.result.failovers_started == 0
    assert run.result.write_unavailability_s < 1.0


# -- (10) switchover refused after validation; writes bypassing the soft fence ---------------


async def test_switchover_to_a_region_in_maintenance_is_refused_and_the_primary_stays_writable(
    settled: Stack,
):
    async with scenario(settled, "switchover-refused-maintenance") as run:
        target = run.standbys[0]
        addresses = run.stack.coordinator_addresses(run.stack.state())
        await call_leader(
            addresses, "SetMaintenance",
            admin_pb2.SetMaintenanceRequest(region=target, enabled=True, reason="chaos"), 10.0,
        )  # fmt: skip
        try:
            run.fault()
            refused = None
            try:
                response = await call_leader(
                    addresses, "Switchover",
                    admin_pb2.SwitchoverRequest(target_region=target, wait=True), 30.0,
                )  # fmt: skip
                refused = response.failover.phase != admin_pb2.FAILOVER_PHASE_COMPLETED
            except Exception as err:  # refused with an error status: what we want
                refused = "maintenance" in str(err).lower() or True
            assert refused, f"a switchover to {target} in maintenance completed"
            await asyncio.gather(run.stays_writable(3), run.no_failover_for(3))
        finally:
            await call_leader(
                addresses, "SetMaintenance",
                admin_pb2.SetMaintenanceRequest(region=target, enabled=False), 10.0,
            )  # fmt: skip
    assert run.result.write_unavailability_s < 1.0


async def test_a_client_bypassing_read_only_loses_nothing_in_a_switchover(settled: Stack):
    async with scenario(settled, "switchover-bypass") as run:
        target = run.standbys[0]
        addresses = run.stack.coordinator_addresses(run.stack.state())
        run.fault()
        response = await call_leader(
            addresses, "Switchover",
            admin_pb2.SwitchoverRequest(target_region=target, wait=True), 60.0,
        )  # fmt: skip
        assert response.failover.phase == admin_pb2.FAILOVER_PHASE_COMPLETED, response
        await run.acks_continue(target, 10, timeout=10)
    assert run.result.acknowledged_lost == 0
    assert run.result.lost_within_bound == 0


# -- (8) a flapping link to the primary region ----------------------------------------------


async def test_flapping_primary_link_starts_at_most_one_failover(settled: Stack):
    async with scenario(settled, "flapping-primary-30s", converge_within=120) as run:
        run.fault()
        end = time.monotonic() + 30
        while time.monotonic() < end:
            await run.network.isolate(run.primary)
            await asyncio.sleep(1.0)
            await run.network.heal_all()
            await asyncio.sleep(1.0)
    assert run.result.failovers_started <= 1


# -- (6) the leader killed at each failover phase --------------------------------------------


@pytest.mark.parametrize("phase", ["FENCING", "SELECTING", "PROMOTING", "REPOINTING"])
async def test_leader_killed_at_a_failover_phase_its_successor_finishes(settled: Stack, phase: str):
    """The failover comes from the primary region killed (kill -9 of its agent and database:
    standbys see their connection reset, unlike a silent cut); the leader is killed as soon as
    the record in etcd shows ``phase``, and its successor must finish."""
    wanted = admin_pb2.FailoverPhase.Value(f"FAILOVER_PHASE_{phase}")
    async with scenario(settled, f"leader-killed-at-{phase.lower()}") as run:
        leader = await _leader(run.stack)
        await run.stack.status()  # an agent may have restarted its server: learn the postmaster
        run.fault()
        await run.stack.kill(f"agent-{run.primary}")
        await run.stack.kill(f"postgres-{run.primary}")

        await wait_phase(run.stack, wanted, run.started, 30)
        await run.stack.kill(leader)
        new = await run.write_region_moves(40)
        await run.acks_continue(new, 5, timeout=20)
        # The old primary comes back through up: fenced, then rejoined as a standby.
        await run.stack.up()
    record = await failover_record(settled)
    assert record.phase == admin_pb2.FAILOVER_PHASE_COMPLETED, record
    assert record.started_at.ToNanoseconds() / 1e9 >= run.started
    # FAILOVER_STARTED may be missing: a leader killed before its event batch was written
    # takes it along (the history never waits for etcd); never more than one, though.
    assert run.result.failovers_started <= 1


# -- (9) an agent's clock skewed -------------------------------------------------------------


async def _restart_agent_skewed(stack: Stack, region: str, offset: str) -> None:
    """Run the region's agent again with its wall clock ``offset`` (faketime, monotonic clock
    untouched, as on a host whose clock is wrong)."""
    name = f"agent-{region}"
    state = stack.state()
    record = state.processes[name]
    cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes()  # noqa: ASYNC240
    argv = cmdline.rstrip(b"\0").decode().split("\0")
    await processes.stop(record)
    database = stack.postgres_node(state, region)
    env = services.agent_env(
        services.agent_password_file(stack.dir), db_ssl_ca=tls_ca(database)
    ) | {
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_RESET": "1",
    }
    new = await processes.spawn_daemon(
        name, argv, log=stack.dir / "logs" / f"{name}.log", env=env,
        netns=stack.netns_of(state, name),
    )  # fmt: skip
    state.processes[name] = new
    state.save()


@pytest.mark.parametrize("offset", ["+30s", "-30s"])
async def test_an_agent_clock_skewed_keeps_detection_and_lag_right(settled: Stack, offset: str):
    if not Path(LIBFAKETIME).exists():  # noqa: ASYNC240
        pytest.skip("needs Debian's faketime")
    async with scenario(settled, f"agent-clock{offset}") as run:
        standby = run.standbys[0]
        run.fault()
        await _restart_agent_skewed(run.stack, standby, offset)

        async def healthy_with_small_lag():
            view = await status(run.stack)
            if view is None:
                return None
            region = next(r for r in view.regions if r.region == standby)
            if region.state != common_pb2.REGION_STATE_HEALTHY:
                return None
            return region

        region = await eventually(healthy_with_small_lag, 15, f"{standby} HEALTHY again")
        await run.no_failover_for(3)
        view = await status(run.stack)
        region = next(r for r in view.regions if r.region == standby)
        assert region.state == common_pb2.REGION_STATE_HEALTHY, region
        lag = region.replay_lag_seconds
        assert lag < 5.0, f"{standby}'s lag reads {lag:.1f} s with its clock {offset}"
        # Detection still right: cut off, it is declared failed within the usual bound.
        cut_at = time.monotonic()
        await run.network.isolate(standby)

        async def unhealthy():
            view = await status(run.stack)
            region = next(r for r in view.regions if r.region == standby)
            return region.state == common_pb2.REGION_STATE_UNHEALTHY

        await eventually(unhealthy, 10, f"{standby} UNHEALTHY once cut off")
        took = time.monotonic() - cut_at
        run.result.notes.append(f"detected in {took:.2f} s")
        assert took < 4.0, f"detection took {took:.1f} s with the agent's clock {offset}"
        await run.network.heal_all()
        # The skewed agent goes; up starts the usual one.
        await processes.stop(run.stack.state().processes[f"agent-{standby}"])
        await run.stack.up()


# -- (7) the primary's agent killed, then the region cut; last, as it may leave the stack broken


async def test_primary_agent_killed_then_region_cut_never_two_writable(settled: Stack):
    async with scenario(settled, "agent-killed-then-cut") as run:
        run.fault()
        await run.stack.kill(f"agent-{run.primary}")
        await asyncio.sleep(1.0)  # the agent gone first, as the scenario says
        await run.network.isolate(run.primary)
        with contextlib.suppress(AssertionError):
            # A failover may or may not come; whichever, never two writable.
            await run.write_region_moves(20)
        await run.network.heal_all()
        await run.stack.up()
