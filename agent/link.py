"""The agent's link to the coordinator leader.

Connect to any configured coordinator; follow NotLeader to the leader (only when it is a
configured coordinator too); send Hello, then the newest report whenever the probe loop offers
one. A Welcome outside the bounds of agent.trust is refused: the agent keeps the values of the
leader before and tries another coordinator. A ReportAck or Command carrying another epoch than
its stream's Welcome is not believed. The probe loop never waits on the network:
``offer`` only replaces the report waiting to be sent. A stream whose reports stop being
acknowledged is abandoned (a frozen or partitioned leader keeps its TCP connection open), and
reconnection backs off exponentially with jitter, capped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from agent.trust import command_epoch_problem, redirect_problem, welcome_problem
from latitude.channels import open_channel
from latitude.pki import CertFiles
from latitude.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 1000),
    ("grpc.keepalive_timeout_ms", 1000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.05
    cap: float = 1.0

    def delays(self):
        delay = self.initial
        while True:
            # "Equal jitter": at least half the delay, so retries never stampede at zero.
            yield delay / 2 + random.random() * delay / 2
            delay = min(delay * 2, self.cap)


class Redirect(Exception):
    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.address = address


class CoordinatorLink:
    def __init__(
        self,
        addresses: tuple[str, ...],
        hello: Callable[[int], agent_pb2.Hello],
        *,
        on_command: Callable[[agent_pb2.Command], None] = lambda command: None,
        on_word: Callable[[agent_pb2.ClusterWord, int], None] = lambda word, epoch: None,
        ack_timeout: float = 1.5,
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.monotonic,
        tls: CertFiles | None = None,
    ) -> None:
        self._addresses = addresses
        self._tls = tls  # the agent's certificate: the region it names is the one it speaks for
        self._hello = hello
        self._on_command = on_command
        self._on_word = on_word
        self._ack_timeout = ack_timeout
        self._backoff = backoff
        self._clock = clock
        self._pending: agent_pb2.Report | None = None
        # Command results are never dropped: they wait here until a stream takes them.
        self._results: deque[agent_pb2.CommandResult] = deque()
        self._wake = asyncio.Event()
        self._sent_at: dict[int, float] = {}
        self.highest_epoch = 0
        self.leader_id = ""
        self.connected_to = ""
        # When the newest acknowledged report was sent (our monotonic clock); the self-fence
        # deadline runs from here.
        self.last_ack_sent_at: float | None = None
        self.welcome: agent_pb2.Welcome | None = None
        # The newest leader's word on the cluster (Welcome, then every ReportAck) and its
        # epoch; None until a leader gave one. A message without a word counts as the empty
        # word (no write region): a leader that says nothing must not leave an older leader's
        # word standing.
        self.word: agent_pb2.ClusterWord | None = None
        self.word_epoch = 0
        self.connected = asyncio.Event()
        self._welcomed = False
        # The epoch of the leader at the other end of the current stream (its Welcome's).
        self._stream_epoch = 0

    def send_result(self, result: agent_pb2.CommandResult) -> None:
        """Queue a command's result for the leader, ahead of the next report."""
        self._results.append(result)
        self._wake.set()

    def offer(self, report: agent_pb2.Report) -> None:
        """Make ``report`` the next one sent, replacing any not yet sent. Never blocks."""
        self._pending = report
        self._wake.set()

    async def run(self) -> None:
        delays = self._backoff.delays()
        index = 0
        target: str | None = None
        while True:
            address = target or self._addresses[index % len(self._addresses)]
            if target is None:
                index += 1
            target = None
            self._welcomed = False
            try:
                await self._session(address)
            except Redirect as redirect:
                target = redirect.address or None
                problem = target and redirect_problem(target, self._addresses)
                if problem:
                    log.warning("%s from %s: trying the configured ones", problem, address)
                    target = None
                elif target:
                    continue  # straight to the leader, no back-off
            except grpc.aio.AioRpcError as err:
                log.info("stream to %s ended: %s %s", address, err.code().name, err.details())
                if err.code() in (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.ALREADY_EXISTS,
                ):
                    log.error("coordinator refused this agent: %s", err.details())
            except TimeoutError:
                log.info("coordinator %s stopped acknowledging reports", address)
            finally:
                self.connected.clear()
                self.connected_to = ""
            if self._welcomed:
                delays = self._backoff.delays()  # a working session resets the back-off
            await asyncio.sleep(next(delays))

    async def _session(self, address: str) -> None:
        async with open_channel(address, self._tls, options=_CHANNEL_OPTIONS) as channel:
            call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
            try:
                hello = self._hello(self.highest_epoch)
                await call.write(agent_pb2.AgentMessage(hello=hello))
                async with asyncio.timeout(self._ack_timeout * 2):
                    first = await call.read()
                self._greeted(first, address)
                writer = asyncio.create_task(self._write(call))
                try:
                    await self._read(call)
                finally:
                    writer.cancel()
                    await asyncio.gather(writer, return_exceptions=True)
            finally:
                call.cancel()

    def _greeted(self, first, address: str) -> None:
        if first is grpc.aio.EOF:
            raise Redirect("")
        kind = first.WhichOneof("body")
        if kind == "not_leader":
            raise Redirect(first.not_leader.leader_address)
        if kind != "welcome":
            log.warning("ignoring %s from %s: a stream begins with a welcome", kind, address)
            raise Redirect("")
        problem = welcome_problem(first.welcome, self.highest_epoch)
        if problem is not None:
            what = "keeping the values of the leader before and trying another coordinator"
            log.error("refusing the welcome of %s: %s; %s", address, problem, what)
            raise Redirect("")
        self.welcome = first.welcome
        self._stream_epoch = first.welcome.epoch
        self.highest_epoch = first.welcome.epoch
        self._word(first.welcome.word, first.welcome.epoch)
        self.leader_id = first.welcome.leader_id
        self.connected_to = address
        self._welcomed = True
        self.connected.set()
        log.info("reporting to leader %s at %s (epoch %d)", self.leader_id, address,
                 self.highest_epoch)  # fmt: skip

    async def _write(self, call) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._results:
                await call.write(agent_pb2.AgentMessage(command_result=self._results[0]))
                self._results.popleft()
            report, self._pending = self._pending, None
            if report is None:
                continue
            self._sent_at[report.sequence] = self._clock()
            await call.write(agent_pb2.AgentMessage(report=report))

    async def _read(self, call) -> None:
        while True:
            # Reports go out every interval; no answer for this long means a dead leader.
            async with asyncio.timeout(self._silence_limit()):
                message = await call.read()
            if message is grpc.aio.EOF:
                raise Redirect("")
            kind = message.WhichOneof("body")
            if kind == "report_ack":
                self._acked(message.report_ack)
            elif kind == "command":
                self._command(message.command)
            elif kind == "not_leader":
                raise Redirect(message.not_leader.leader_address)

    def _silence_limit(self) -> float:
        welcome = self.welcome
        if welcome is None:
            return self._ack_timeout
        interval = welcome.report_interval.ToNanoseconds() / 1e9
        return max(self._ack_timeout, 3 * max(welcome.ack_every, 1) * interval)

    def _command(self, command: agent_pb2.Command) -> None:
        problem = command_epoch_problem(command.epoch, self._stream_epoch)
        if problem is None:
            self._on_command(command)
            return
        log.error("refusing command %s: %s", command.command_id[:128], problem)
        self.send_result(
            agent_pb2.CommandResult(
                command_id=command.command_id,
                error=f"refused: {problem}",
                agent_epoch=self.highest_epoch,
            )
        )

    def _acked(self, ack: agent_pb2.ReportAck) -> None:
        if ack.epoch != self._stream_epoch:
            # A leader acknowledges with its own epoch: a lower one is not its own (it would
            # let a deposed leader keep a primary unfenced), a higher one not believed.
            return
        self.highest_epoch = ack.epoch
        sent = self._sent_at.pop(ack.sequence, None)
        for sequence in [s for s in self._sent_at if s < ack.sequence]:
            del self._sent_at[sequence]
        if sent is not None:
            self.last_ack_sent_at = sent
        self._word(ack.word, ack.epoch)

    def _word(self, word: agent_pb2.ClusterWord, epoch: int) -> None:
        if self.word is not None and epoch < self.word_epoch:
            return
        self.word, self.word_epoch = word, epoch
        self._on_word(word, epoch)
