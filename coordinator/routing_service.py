"""RoutingService on every replica: Resolve and Watch from the cached table, ReportLatency to
the leader (which folds the samples into the next table).

Bounded per caller (coordinator/callers.py, coordinator/limits.py): Watch streams
(``streams_per_caller``, ``streams_total``), and latency reports, at
``latency_reports_per_second`` each and within the per-caller rules of
coordinator/routing/latency.py. Past a bound: RESOURCE_EXHAUSTED. Who may call at all (with
TLS: a certificate naming a role) is latitude.authz's to say.

Resolve is the hot path, so it takes and returns serialized messages: an answer is a pure
function of the request and the table, and a replica keeps the serialized answers to the
requests it has seen, per table version, bounded in bytes and entries (coordinator/routing/
answers.py: the oldest go first, an oversized request is never kept; all go when the table
changes). A repeated request, the usual case for a client resolving as it goes, costs one dict
lookup: no parse, no decision, no serialization. Round-robin answers differ call by call and
are never kept.
"""

from __future__ import annotations

import ipaddress
import math
import time

import grpc
from google.protobuf.message import DecodeError

from coordinator import metrics, request_checks
from coordinator.callers import Caller, caller_of
from coordinator.limits import LimitExceeded, RateLimits, StreamSlots
from coordinator.request_checks import MAX_SAMPLES
from coordinator.routing.answers import AnswerCache
from coordinator.routing.cache import TableCache
from latitude.channels import open_channel
from latitude.geo import InvalidLocation, network_prefix
from latitude.routing import InvalidRequest
from latitude.routing.locating import TableLocator
from latitude.v1 import routing_pb2, routing_pb2_grpc

__all__ = ["MAX_SAMPLES", "RoutingService", "register"]

_SERVICE = routing_pb2.DESCRIPTOR.services_by_name["RoutingService"].full_name
_ROUND_ROBIN = routing_pb2.STRATEGY_ROUND_ROBIN


def register(servicer: RoutingService, server: grpc.aio.Server) -> None:
    """As the generated add_RoutingServiceServicer_to_server, but Resolve sees bytes."""
    handlers = {
        "Resolve": grpc.unary_unary_rpc_method_handler(servicer.resolve_serialized),
        "Watch": grpc.unary_stream_rpc_method_handler(
            servicer.Watch,
            request_deserializer=routing_pb2.WatchRequest.FromString,
            response_serializer=routing_pb2.RoutingTable.SerializeToString,
        ),
        "ReportLatency": grpc.unary_unary_rpc_method_handler(
            servicer.ReportLatency,
            request_deserializer=routing_pb2.LatencyReport.FromString,
            response_serializer=routing_pb2.ReportLatencyResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    server.add_registered_method_handlers(_SERVICE, handlers)


class RoutingService(routing_pb2_grpc.RoutingServiceServicer):
    def __init__(
        self,
        node,
        cache: TableCache,
        *,
        mmdb_path: str = "",
        answers: AnswerCache | None = None,
    ) -> None:
        self._node = node
        self._cache = cache
        self._locator = TableLocator(mmdb_path)
        self._leader_channel: tuple[str, grpc.aio.Channel] | None = None
        self._answers_for: object = None  # the Resolver whose answers these are
        config = node.config
        # Each with its metrics, bound once: a kept answer costs a lookup and an observation.
        self.answers = (
            answers if answers is not None else AnswerCache(max_bytes=config.resolve_answer_bytes)
        )
        self.reports = RateLimits(
            config.latency_reports_per_second,
            config.latency_report_burst,
            what="latency reports",
        )
        self.watches = StreamSlots(config.streams_per_caller, config.streams_total, what="Watch")

    async def resolve_serialized(self, body: bytes, context) -> bytes:
        """Resolve on the wire: a kept answer when this table has answered ``body`` before."""
        started = time.perf_counter()
        resolver = self._cache.resolver
        answers = self.answers
        if resolver is not self._answers_for:
            self._answers_for = resolver
            answers.clear()
        kept = answers.get(body)
        if kept is not None:
            kept[1].done(started)
            return kept[0]
        strategy = 0
        try:
            request = routing_pb2.ResolveRequest.FromString(body)
            table = self._cache.table
            strategy = request.strategy or (table.default_strategy if table is not None else 0)
            answer = await self._answer(request, context)
        except DecodeError as err:
            metrics.resolve_failed(strategy, grpc.StatusCode.INVALID_ARGUMENT, started)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"request: not a ResolveRequest ({err})"
            )
        except BaseException as err:
            metrics.resolve_failed(strategy, context.code(), started, err)
            raise
        done = metrics.resolved(strategy)
        done.done(started)
        if strategy != _ROUND_ROBIN and self._cache.resolver is resolver:
            answers.keep(body, (answer, done), len(answer))
        return answer

    async def _answer(self, request: routing_pb2.ResolveRequest, context) -> bytes:
        """The serialized RoutingDecision for ``request``, from the cached table."""
        resolver, table = self._cache.resolver, self._cache.table
        if resolver is None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "no routing table yet: the leader has not published one (is a leader elected?)",
            )
        try:
            where = request.location if request.HasField("location") else None
            located = self._locator.locate(
                table,
                request.client_ip or None,
                (where.latitude, where.longitude) if where is not None else None,
            )
            return resolver.resolve_serialized(
                client=located,
                strategy=request.strategy,
                intent=request.intent,
                max_replica_lag_seconds=(
                    request.max_replica_lag_seconds
                    if request.HasField("max_replica_lag_seconds")
                    else None
                ),
                max_targets=request.max_targets,
            )
        except (InvalidLocation, InvalidRequest) as err:
            message = str(err)
            if not message.startswith(err.field):
                message = f"{err.field}: {message}"
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request_checks.details(message))

    async def Watch(self, request, context):
        caller = caller_of(context)
        try:
            self.watches.acquire(caller.key)
        except LimitExceeded as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        try:
            # Headers at once: a client that already has the newest table learns the stream is
            # up (and its table current) without waiting for the next version.
            await context.send_initial_metadata(())
            known = request.known_version
            with metrics.WATCH_STREAMS.track_inprogress():
                while True:
                    table = await self._cache.newer_than(known)
                    yield table
                    known = table.version
        finally:
            self.watches.release(caller.key)

    async def ReportLatency(self, request, context):
        caller = await self._reporter(context)
        await self._validate_report(request, context)
        publisher = self._node.publisher
        if publisher is None:
            return await self._forward(request, context, caller)
        prefix = (
            str(ipaddress.ip_network(request.network_prefix, strict=False))
            if request.network_prefix
            else network_prefix(request.client_ip)
        )
        regions = set(self._node.config.regions)
        now = time.time()
        accepted = 0
        for sample in request.samples:
            if sample.region not in regions:
                continue  # documented: samples for unknown regions are dropped
            measured = (
                sample.measured_at.ToNanoseconds() / 1e9 if sample.HasField("measured_at") else now
            )
            accepted += publisher.latencies.add(
                prefix, sample.region, sample.latency_seconds, measured, now, caller=caller.key
            )
        return routing_pb2.ReportLatencyResponse(accepted_samples=accepted)

    async def _reporter(self, context) -> Caller:
        """The caller, if it may report latencies now: within its rate (RESOURCE_EXHAUSTED
        past it). Who may report at all is latitude.authz's to say, before the call gets
        here (with TLS, any role; never a stranger)."""
        caller = caller_of(context)
        try:
            self.reports.check(caller.key, time.monotonic())
        except LimitExceeded as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"ReportLatency: {err}")
        return caller

    async def _validate_report(self, request, context) -> None:
        def invalid(field: str, why: str):
            return context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {why}")

        try:
            request_checks.latency_report(request)
        except request_checks.InvalidRequest as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        if request.network_prefix:
            try:
                ipaddress.ip_network(request.network_prefix, strict=False)
            except ValueError:
                await invalid("network_prefix", f"{request.network_prefix!r} is not a CIDR prefix")
        elif not request.client_ip:
            await invalid("client_ip", "required when network_prefix is empty")
        else:
            try:
                network_prefix(request.client_ip)
            except (ValueError, InvalidLocation):
                await invalid("client_ip", f"{request.client_ip!r} is not an IP address")
        now = time.time()
        for i, sample in enumerate(request.samples):
            seconds = sample.latency_seconds
            if not math.isfinite(seconds) or not 0 <= seconds <= 60:
                await invalid(f"samples[{i}].latency_seconds", f"{seconds} is not within 0..60 s")
            if sample.HasField("measured_at"):
                age = now - sample.measured_at.ToNanoseconds() / 1e9
                if age < -60:
                    await invalid(f"samples[{i}].measured_at", "is in the future")

    async def _forward(self, request, context, caller: Caller):
        """A follower passes the samples to the leader, which owns them, naming the caller it
        passes them for (believed from a coordinator's certificate only)."""
        leader = self._node.election.leader
        if leader is None or leader.id == self._node.id:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no leader to record latencies")
        if self._leader_channel is None or self._leader_channel[0] != leader.address:
            if self._leader_channel is not None:
                await self._leader_channel[1].close()
            channel = open_channel(leader.address, self._node.config.tls)
            self._leader_channel = (leader.address, channel)
        stub = routing_pb2_grpc.RoutingServiceStub(self._leader_channel[1])
        try:
            return await stub.ReportLatency(request, timeout=2.0, metadata=caller.forwarded_for)
        except grpc.aio.AioRpcError as err:
            await context.abort(err.code(), f"leader {leader.id}: {err.details()}")

    async def close(self) -> None:
        if self._leader_channel is not None:
            await self._leader_channel[1].close()
        self._locator.close()
