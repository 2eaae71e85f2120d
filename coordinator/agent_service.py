"""AgentService: the leader's end of every agent's stream.

Each stream has one reader (this module's ``_read``) and one writer (the handler itself,
draining the session's outbox), because gRPC allows one write at a time per stream. Errors
found by the reader are carried to the handler, which ends the stream with the status code.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from coordinator import metrics
from coordinator.agent_identity import AccessRefused, check_agent_identity, check_agent_role
from coordinator.callers import caller_of
from coordinator.limits import LimitExceeded, ReportRate, StreamSlots
from coordinator.node import CoordinatorNode
from coordinator.refusals import RefusalEvents
from coordinator.registry import RegionHeld
from coordinator.sessions import AgentSession
from coordinator.validation import InvalidMessage, check_hello, check_report
from latitude.identity import peer_identity, peer_is_tls
from latitude.pki import Identity
from latitude.v1 import admin_pb2, agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 5.0
CONNECT = "/latitude.v1.AgentService/Connect"


class AgentService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, node: CoordinatorNode, refusals: RefusalEvents | None = None) -> None:
        self._node = node
        # Shared with the Authorizer's (coordinator/main.py): one bound on the events that
        # refusals write, however they are refused.
        self._refusals = refusals if refusals is not None else RefusalEvents(node)
        config = node.config
        self.streams = StreamSlots(config.streams_per_caller, config.streams_total, what="agent")
        self._hosts = node.config.hosts
        if not self._hosts.checked:
            log.warning(
                "region_hosts is not set: the endpoints agents report are not checked against "
                "where their regions are (any address an agent names is routed to)"
            )

    async def Connect(self, request_iterator, context: grpc.aio.ServicerContext):
        """Bounded streams per caller (coordinator/limits.py), RESOURCE_EXHAUSTED beyond."""
        caller = caller_of(context).key
        try:
            self.streams.acquire(caller)
        except LimitExceeded as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        try:
            await self._connect(context)
        finally:
            self.streams.release(caller)

    async def _connect(self, context: grpc.aio.ServicerContext):
        node = self._node
        identity = peer_identity(context)
        if identity is None and peer_is_tls(context):
            problem = "a client certificate is required to open an agent stream"
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, identity, problem)
        try:
            # Before anything else, NotLeader included: only agents have business here.
            check_agent_role(identity)
        except AccessRefused as err:
            await self._refuse(context, grpc.StatusCode.PERMISSION_DENIED, identity, str(err))
        if not node.is_leader:
            await context.write(node.not_leader())
            return
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                first = await context.read()
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "no hello within 5 s")
        if first is grpc.aio.EOF:
            return
        if first.WhichOneof("body") != "hello":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"hello: the first message must be a hello, got {first.WhichOneof('body')}",
            )
        hello = first.hello
        try:
            check_agent_identity(identity, hello)
        except AccessRefused as err:
            region = hello.region if hello.region in node.config.regions else ""
            await self._refuse(
                context, grpc.StatusCode.PERMISSION_DENIED, identity, str(err), region
            )
        registry = node.registry
        session = AgentSession(region=hello.region, agent_id=hello.agent_id)
        try:
            check_hello(hello, node.config.regions)
            self._hosts.check_hello(hello)
            if not node.is_leader or registry is None:
                await context.write(node.not_leader())
                return
            if hello.highest_epoch_seen > node.epoch:
                await context.write(node.not_leader())
                return
            previous = registry.regions[hello.region].session
            record = registry.attach(hello, session)
        except InvalidMessage as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except RegionHeld as err:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(err))
        log.info("agent %s connected for %s", hello.agent_id, hello.region)
        node.events.record(
            admin_pb2.EVENT_KIND_AGENT_CONNECTED,
            region=hello.region,
            message=f"agent {hello.agent_id} connected for {hello.region}",
            attributes={"agent_id": hello.agent_id, "agent_version": hello.agent_version},
        )
        if isinstance(previous, AgentSession) and previous is not session:
            # It went silent (registry.attach): ended, so nothing it still carries is taken
            # as the region's.
            previous.close(error=(grpc.StatusCode.ABORTED, "another stream took the region over"))
        node.sessions.add(session)
        welcome = node.welcome()
        welcome.welcome.word.maintenance = record.monitor.maintenance
        session.send(welcome)
        reader = asyncio.create_task(self._read(context, session, record))
        try:
            while (message := await session.outbox.get()) is not None:
                await context.write(message)
            if session.error is not None:
                await context.abort(*session.error)
        finally:
            session.ended.set()  # commands waiting on it fail now, not at their timeout
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            node.sessions.discard(session)
            if registry.regions[hello.region].session is session:
                log.info("agent %s for %s disconnected", hello.agent_id, hello.region)
                node.events.record(
                    admin_pb2.EVENT_KIND_AGENT_DISCONNECTED,
                    admin_pb2.SEVERITY_WARNING,
                    region=hello.region,
                    message=f"agent {hello.agent_id} for {hello.region} disconnected",
                    attributes={"agent_id": hello.agent_id},
                )
            registry.detach(hello.region, session)

    async def _refuse(
        self,
        context: grpc.aio.ServicerContext,
        code: grpc.StatusCode,
        identity: Identity | None,
        problem: str,
        region: str = "",
    ) -> None:
        """End the stream with ``code``, recorded with the caller's identity."""
        caller = identity.uri if identity is not None else "no certificate"
        log.warning("agent stream from %s (%s) refused: %s", context.peer(), caller, problem)
        self._refusals(identity, CONNECT, code, detail=problem, region=region)
        await context.abort(code, problem)

    async def _read(self, context, session: AgentSession, record) -> None:
        node = self._node
        registry = node.registry
        ack_every = node.config.ack_every
        acked_once = False
        rate = ReportRate(node.config.report_interval)
        # A stream silent for the failure threshold is ended by the leader's tick
        # (Sessions.end_silent), timed from here and from each message received.
        session.heard_at = time.monotonic()
        try:
            while True:
                message = await context.read()
                session.heard_at = now = time.monotonic()
                if message is grpc.aio.EOF:
                    session.close()
                    return
                kind = message.WhichOneof("body")
                if record.session is not session:
                    session.close()  # taken over after going silent: nothing more from it
                    return
                if kind == "report":
                    if not rate.admit(now):
                        continue  # a flood: dropped, then ended (LimitExceeded)
                    report = message.report
                    check_report(report, record.sequence)
                    self._hosts.check_report(report)
                    if not node.is_leader:
                        session.close(node.not_leader())
                        return
                    change = registry.report(record, report)
                    metrics.report_received(record.name)
                    node.reported(record.name, report.database)
                    if change is not None:
                        node.region_changed(change)
                    # Acknowledge at once on a new stream: an agent back from a leader change
                    # is closest to its fence deadline.
                    if acked_once and report.sequence % ack_every and change is None:
                        continue
                    acked_once = True
                    record.acked_wall = time.time()
                    record.acked_at = time.monotonic()
                    ack = agent_pb2.ReportAck(
                        sequence=report.sequence, epoch=node.epoch, word=node.word()
                    )
                    # The agent's own region only: its health endpoints stop offering a
                    # standby in maintenance for reads, as routing already does.
                    ack.word.maintenance = record.monitor.maintenance
                    session.send(agent_pb2.CoordinatorMessage(report_ack=ack))
                elif kind == "command_result":
                    node.commands.resolve(message.command_result)
                else:
                    raise InvalidMessage(kind or "body", "only one hello per stream")
        except InvalidMessage as err:
            session.close(error=(grpc.StatusCode.INVALID_ARGUMENT, str(err)))
        except LimitExceeded as err:
            session.close(error=(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)))
        except (grpc.RpcError, asyncio.InvalidStateError):
            session.close()
