"""What AdminService's event history, maintenance and consistency calls do; the service
module turns their errors into status codes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc

from coordinator import consistency, events, keys, maintenance
from coordinator.commands import CommandFailed
from coordinator.consistency import Reading
from latitude.channels import open_channel
from latitude.enums import short_name
from latitude.errors import LatitudeError
from latitude.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, common_pb2

_FRESH_TIMEOUT = 3.0


class Refused(LatitudeError):
    """The change cannot be made now (FAILED_PRECONDITION); the message says why."""


class Unavailable(LatitudeError):
    """etcd did not take the change (UNAVAILABLE)."""


async def list_events(node, request: admin_pb2.ListEventsRequest) -> admin_pb2.ListEventsResponse:
    """InvalidRequest naming the field; EtcdError when the history cannot be read."""
    wanted, limit = events.EventFilter.from_request(request, node.config.regions)
    found = await events.list_events(node.store, wanted, limit)
    return admin_pb2.ListEventsResponse(events=found)


async def set_maintenance(
    node,
    request: admin_pb2.SetMaintenanceRequest,
    drain: Callable[[str], Awaitable[admin_pb2.FailoverStatus]],
) -> admin_pb2.SetMaintenanceResponse:
    """As leader: flag the region (or clear it), after ``drain``-ing the primary out of it
    when asked to; Refused or Unavailable."""
    registry, orchestrator = node.registry, node.orchestrator
    region = request.region
    response = admin_pb2.SetMaintenanceResponse()
    running = orchestrator.current
    if request.enabled and running is not None and running.to_region == region:
        raise Refused(f"failover {running.failover_id} is promoting {region}: wait for it")
    if request.enabled and region == orchestrator.write_region:
        if not request.drain:
            raise Refused(
                f"{region} holds the primary: with drain, its primary is first switched over "
                "to the best other region"
            )
        candidates = orchestrator.candidates()
        if not any(c.eligible for c in candidates):
            why = "; ".join(f"{c.region}: {c.why_not}" for c in candidates) or "no other region"
            raise Refused(f"{region} holds the primary and no other region can take it ({why})")
        reason = f"draining {region} for maintenance" + (
            f": {request.reason}" if request.reason else ""
        )
        response.switchover.CopyFrom(await drain(reason))
    monitor = registry.regions[region].monitor
    changed = monitor.maintenance != request.enabled
    if not await maintenance.apply(node, registry, region, request.enabled, request.reason):
        raise Unavailable("the maintenance flag could not be written to etcd")
    if changed:
        switchover = response.switchover.failover_id
        node.events.record(
            admin_pb2.EVENT_KIND_MAINTENANCE_CHANGED,
            admin_pb2.SEVERITY_WARNING if request.enabled else admin_pb2.SEVERITY_INFO,
            region=region,
            failover_id=switchover,
            message=f"{region} {'in' if request.enabled else 'out of'} maintenance"
            + (f": {request.reason}" if request.reason else "")
            + (f" (drained by switchover {switchover})" if switchover else ""),
            attributes={
                "enabled": request.enabled,
                "reason": request.reason,
                "drain": bool(switchover),
            },
        )
    response.region.CopyFrom(registry.status(region))
    return response


async def check_consistency(
    node, request: admin_pb2.CheckConsistencyRequest, budget: float
) -> admin_pb2.ConsistencyReport:
    """Any replica: the leader judges from what its agents report (asking them afresh when
    ``fresh``); another replica forwards a fresh check to the leader, and otherwise judges from
    what the leader last published. EtcdError when etcd cannot be read."""
    if node.is_leader:
        return await _as_leader(node, request.fresh, budget)
    note = ""
    if request.fresh:
        try:
            return await _forward(node, request, budget)
        except LatitudeError as err:
            note = f"last published reading: the leader could not be asked for a fresh one: {err}"
    store = node.store
    published, write_region = await asyncio.gather(
        store.read_prefix(keys.REGIONS), store.read(keys.WRITE_REGION)
    )
    statuses = [admin_pb2.RegionStatus.FromString(published[n]) for n in sorted(published)]
    return consistency.assess(
        [_reading(s) for s in statuses],
        (write_region or b"").decode(),
        now=time.time(),
        note=note,
    )


async def _as_leader(node, fresh: bool, budget: float) -> admin_pb2.ConsistencyReport:
    registry, orchestrator = node.registry, node.orchestrator
    write_region = orchestrator.write_region if orchestrator else ""
    readings = [_reading(registry.status(name)) for name in registry.regions]
    if fresh:
        readings = await _fresh(node, [r.region for r in readings], write_region, budget)
    report = consistency.assess(readings, write_region, now=time.time())
    verdicts = {r.region: consistency_name(r.verdict) for r in report.regions}
    conflicting = admin_pb2.CONSISTENCY_VERDICT_CONFLICTING_PRIMARY in {
        r.verdict for r in report.regions
    }
    node.events.record(
        admin_pb2.EVENT_KIND_CONSISTENCY_CHECKED,
        admin_pb2.SEVERITY_INFO
        if report.consistent
        else admin_pb2.SEVERITY_CRITICAL
        if conflicting
        else admin_pb2.SEVERITY_WARNING,
        message=("consistent: " if report.consistent else "NOT consistent: ")
        + ", ".join(f"{n} {v}" for n, v in verdicts.items()),
        attributes={
            "consistent": report.consistent,
            "fresh": fresh,
            "primary_region": report.primary_region,
        }
        | {f"verdict.{n}": v for n, v in verdicts.items()},
    )
    return report


async def _fresh(node, regions: list[str], write_region: str, budget: float) -> list[Reading]:
    """REPORT_NOW to every agent: the primary's first, so that a standby read after it shows
    whether it holds everything the primary had written."""
    timeout = max(0.1, min(budget, _FRESH_TIMEOUT) / 2)
    readings: dict[str, Reading] = {}

    async def ask(name: str) -> None:
        command = agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_REPORT_NOW)
        try:
            result = await node.command(name, command, timeout=timeout, reason="consistency check")
        except CommandFailed as err:
            readings[name] = Reading(name, None, f"no fresh reading: {err}")
            return
        if not result.ok:
            readings[name] = Reading(name, None, f"no fresh reading: {result.error}")
            return
        readings[name] = Reading(name, result.observed)

    if write_region in regions:
        await ask(write_region)
    await asyncio.gather(*(ask(n) for n in regions if n != write_region))
    return [readings[n] for n in regions]


async def _forward(node, request, budget: float) -> admin_pb2.ConsistencyReport:
    leader = node.election.leader
    if leader is None or leader.id == node.id or not leader.address:
        raise LatitudeError("no leader known")
    async with open_channel(leader.address, node.config.tls) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        try:
            return await stub.CheckConsistency(request, timeout=max(0.5, budget))
        except grpc.aio.AioRpcError as err:
            raise LatitudeError(f"{leader.address}: {err.code().name} {err.details()}") from err


def _reading(status: admin_pb2.RegionStatus) -> Reading:
    db = status.database
    if db.role == common_pb2.DATABASE_ROLE_UNSPECIFIED:
        return Reading(status.region, None, "no report yet")
    standby = db.role == common_pb2.DATABASE_ROLE_STANDBY
    return Reading(status.region, db, lag_bytes=status.replay_lag_bytes if standby else None)


def consistency_name(verdict: int) -> str:
    return short_name(admin_pb2.ConsistencyVerdict, verdict)
