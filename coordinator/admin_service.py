"""AdminService on every replica: the global view is read from etcd, not from memory, so any
coordinator answers the same thing the leader last published.

Every request is checked (coordinator/request_checks.py) before it is used: a bad field is
INVALID_ARGUMENT naming it, never UNKNOWN. Bounded (RESOURCE_EXHAUSTED beyond): each caller
checks consistency at most ``CHECKS_PER_SECOND``, and fresh checks are coalesced (one runs at a
time, callers that ask meanwhile share its report, so the commands queued on agents do not
grow with the callers); at most ``VERIFICATIONS`` Verify calls run at once."""

from __future__ import annotations

import asyncio
import time

import grpc

from coordinator import history, keys, operations, request_checks
from coordinator.callers import caller_of
from coordinator.coalesce import Coalesced
from coordinator.etcd import EtcdError, MemberProbe
from coordinator.events import InvalidRequest
from coordinator.failover.machine import FailoverRefused
from coordinator.incidents.listing import list_incidents
from coordinator.limits import LimitExceeded, RateLimits, StreamSlots
from coordinator.node import CoordinatorNode
from coordinator.verify import record as verify_record
from coordinator.verify.runner import Verifier, VerifyFailed
from coordinator.verify.settings import InvalidVerify, VerifySettings
from coordinator.verify.targets import NoTargets, verify_targets
from latitude.v1 import admin_pb2, admin_pb2_grpc, history_pb2, routing_pb2

LEADER_METADATA = "latitude-leader-address"
# Verify calls running at once on one coordinator.
VERIFICATIONS = 2
# Consistency checks per caller: each is recorded in the event history, which keeps only the
# newest 10,000, so a caller checking without pause would push out what the leader did.
CHECKS_PER_SECOND = 1.0
CHECK_BURST = 10
_STRATEGIES = [s for s in routing_pb2.Strategy.values() if s != routing_pb2.STRATEGY_UNSPECIFIED]


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, node: CoordinatorNode, members: MemberProbe) -> None:
        self._node = node
        self._members = members
        self._background: set[asyncio.Task] = set()
        self._fresh_checks: Coalesced[admin_pb2.ConsistencyReport] = Coalesced()
        # Each verification reads every table on every agent: a few at a time.
        self.verifications = StreamSlots(VERIFICATIONS, VERIFICATIONS, what="Verify")
        self.checks = RateLimits(CHECKS_PER_SECOND, CHECK_BURST, what="consistency checks")

    async def GetStatus(self, request, context):
        store = self._node.store
        try:
            (leader, _), published, members, write_region, failover = await asyncio.gather(
                store.leader(),
                store.read_prefix(keys.REGIONS),
                self._members.statuses(),
                store.read(keys.WRITE_REGION),
                store.read(keys.FAILOVER),
            )
        except EtcdError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"etcd unreachable: {err}")
        now = time.time()
        status = admin_pb2.ClusterStatus(responder_id=self._node.id)
        status.generated_at.FromNanoseconds(int(now * 1e9))
        if leader is not None:
            status.leader.leader_id = leader.id
            status.leader.address = leader.address
            status.leader.epoch = leader.epoch
            status.leader.elected_at.FromNanoseconds(int(leader.elected_at * 1e9))
        for name in sorted(published):
            region = admin_pb2.RegionStatus.FromString(published[name])
            if region.HasField("last_report_at"):
                age = now - region.last_report_at.ToNanoseconds() / 1e9
                region.last_report_age_seconds = max(0.0, age)
            status.regions.append(region)
        status.write_region = (write_region or b"").decode()
        table = self._node.routing.table
        if table is not None:
            status.strategy = table.default_strategy
            status.table_version = table.version
            weights = {r.region: r.weight for r in table.regions}
            for region in status.regions:
                region.weight = weights.get(region.region, 0.0)
        if failover:
            record = admin_pb2.FailoverStatus.FromString(failover)
            if not record.HasField("finished_at"):
                status.failover.CopyFrom(record)
        for member in members:
            status.etcd_members.append(
                admin_pb2.EtcdMember(
                    name=member.endpoint,
                    id=member.member_id,
                    client_urls=[member.client_url],
                    healthy=member.healthy,
                    is_leader=member.is_leader,
                    error=member.error,
                )
            )
        return status

    async def SetStrategy(self, request, context):
        if request.strategy not in _STRATEGIES:
            known = ", ".join(routing_pb2.Strategy.Name(s) for s in _STRATEGIES)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"strategy: {request.strategy} is not a strategy (one of: {known})",
            )
        await self._leading(context, "")
        publisher = self._node.publisher
        try:
            previous, version = await publisher.set_strategy(request.strategy)
        except RuntimeError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        return admin_pb2.SetStrategyResponse(previous=previous, table_version=version)

    async def Switchover(self, request, context):
        await _checked(context, request_checks.target, request)
        orchestrator = await self._leading(context, request.target_region)
        reason = f"switchover to {request.target_region or 'the best standby'} requested"
        record = await self._start(
            context,
            orchestrator,
            request.wait,
            admin_pb2.FAILOVER_KIND_SWITCHOVER,
            reason,
            target=request.target_region,
            forced=request.force,
        )
        return admin_pb2.SwitchoverResponse(failover=record)

    async def Failover(self, request, context):
        await _checked(context, request_checks.target, request)
        orchestrator = await self._leading(context, request.target_region)
        failed, why = orchestrator.primary_failed()
        if not failed and not request.force:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the primary's region is not failed ({why}): use Switchover, or force",
            )
        reason = request.reason or f"failover requested by an operator ({why})"
        record = await self._start(
            context,
            orchestrator,
            request.wait,
            admin_pb2.FAILOVER_KIND_MANUAL,
            reason,
            target=request.target_region,
            forced=request.force,
        )
        return admin_pb2.FailoverResponse(failover=record)

    async def _leading(self, context, target: str):
        node = self._node
        if target and target not in node.config.regions:
            known = ", ".join(node.config.regions)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"target_region: unknown region {target!r} (known: {known})",
            )
        orchestrator = node.orchestrator
        if not node.is_leader or orchestrator is None:
            leader = node.election.leader
            if leader is not None and leader.id != node.id:
                context.set_trailing_metadata(((LEADER_METADATA, leader.address),))
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not the leader")
        return orchestrator

    async def ListEvents(self, request, context):
        await _checked(context, request_checks.list_events, request)
        try:
            return await operations.list_events(self._node, request)
        except InvalidRequest as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except EtcdError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"etcd unreachable: {err}")

    async def SetMaintenance(self, request, context):
        await _checked(context, request_checks.set_maintenance, request)
        regions = self._node.config.regions
        if request.region not in regions:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"region: unknown region {request.region!r} (known: {', '.join(regions)})",
            )
        orchestrator = await self._leading(context, "")

        async def drain(reason: str) -> admin_pb2.FailoverStatus:
            """The switchover, carried out to its end: the flag follows only a completed one,
            so a region is never in maintenance while it still holds the primary."""
            task = self._background_task(
                orchestrator.start(admin_pb2.FAILOVER_KIND_SWITCHOVER, reason)
            )
            try:
                record = await asyncio.shield(task)
            except FailoverRefused as err:
                raise operations.Refused(str(err)) from err
            if record.phase != admin_pb2.FAILOVER_PHASE_COMPLETED:
                raise operations.Refused(
                    f"switchover {record.failover_id} did not complete "
                    f"({record.error or 'aborted'}); {request.region} is not in maintenance"
                )
            return record

        # Carried out on its own: a caller that goes away must not leave a region drained of
        # its primary but not flagged.
        task = self._background_task(operations.set_maintenance(self._node, request, drain))
        try:
            return await asyncio.shield(task)
        except operations.Refused as err:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        except operations.Unavailable as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))

    async def CheckConsistency(self, request, context):
        try:
            self.checks.check(caller_of(context).key, time.monotonic())
        except LimitExceeded as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"CheckConsistency: {err}")
        budget = context.time_remaining()
        budget = 10.0 if budget is None else max(0.1, budget - 0.2)
        try:
            if request.fresh:
                return await self._fresh_checks.run(
                    lambda: operations.check_consistency(self._node, request, budget)
                )
            return await operations.check_consistency(self._node, request, budget)
        except EtcdError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"etcd unreachable: {err}")

    async def GetHistory(self, request, context):
        await _checked(context, request_checks.get_history, request.region)
        try:
            since, limit = history.request_bounds(request.since_seconds, request.max_samples)
        except ValueError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        try:
            samples, step = await self._node.history.read(request.region, since, limit)
        except history.UnknownRegion as err:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(err))
        except EtcdError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"etcd unreachable: {err}")
        return history_pb2.GetHistoryResponse(
            region=request.region, samples=samples, resolution_seconds=step
        )

    async def Verify(self, request, context):
        await _checked(context, request_checks.verify, request)
        try:
            settings = VerifySettings.from_request(request)
        except InvalidVerify as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        store = self._node.store
        try:
            published, write_region = await asyncio.gather(
                store.read_prefix(keys.REGIONS), store.read(keys.WRITE_REGION)
            )
            primary, agents = verify_targets(published, (write_region or b"").decode())
        except EtcdError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"etcd unreachable: {err}")
        except NoTargets as err:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        updates: asyncio.Queue[admin_pb2.VerifyProgress] = asyncio.Queue()
        verifier = Verifier(
            primary, agents, settings, progress=updates.put_nowait, tls=self._node.config.tls
        )
        caller = caller_of(context).key
        try:
            self.verifications.acquire(caller)
        except LimitExceeded as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        # Ends with the call: a caller that goes away cancels the check.
        task = asyncio.create_task(verifier.run())
        try:
            while not task.done() or not updates.empty():
                waiting = asyncio.create_task(updates.get())
                await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if not waiting.done():
                    waiting.cancel()
                    continue
                yield admin_pb2.VerifyUpdate(progress=waiting.result())
            report = task.result()
        except VerifyFailed as err:
            await context.abort(err.code, str(err))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.verifications.release(caller)
        verify_record.record(self._node.events, report)
        yield admin_pb2.VerifyUpdate(report=report)

    def _background_task(self, coroutine) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _start(self, context, orchestrator, wait: bool, kind: int, reason: str, **how):
        # The failover runs on its own: a caller that goes away must not cancel it mid-way.
        task = self._background_task(orchestrator.start(kind, reason, **how))
        try:
            if wait:
                return await asyncio.shield(task)
            await asyncio.wait({task}, timeout=0.05)  # let it record its start
            return task.result() if task.done() else orchestrator.current
        except FailoverRefused as err:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))

    async def ListIncidents(self, request, context):
        try:
            return await list_incidents(self._node.store, request)
        except InvalidRequest as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except EtcdError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"etcd unreachable: {err}")


async def _checked(context, check, request) -> None:
    try:
        check(request)
    except request_checks.InvalidRequest as err:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request_checks.details(str(err)))
