"""The failsafe: a primary stays writable without a leader while every standby vouches for it.

No promotion can happen without a leader, and no leader without etcd. So when acknowledgements
stop (an etcd outage, a leader killed or frozen), fencing the primary would take writes down
for nothing, as long as nothing else can become the primary. Every report interval the agent
of a database that is not a plain standby asks every other region's agent (``Confirm``): does
your standby stream from me, and does the newest word you have from a leader name me as the
write region, with no failover under way? A round that every peer confirmed moves the fence
lease (agent.lease) to when the round was sent.

A standby's agent confirms from what it last observed (never waiting on its database), only
with a leader's word behind it, and stops at once when a leader says a failover began
(``ClusterWord.failover_in_progress``, or ``STOP_CONFIRMING``, which answers when it last
confirmed so that the leader waits for the old primary's deadline). A stop holds until a later
word, from a leader of at least the stop's epoch, says no failover is under way. An agent that
never had a word from a leader (one just restarted) confirms nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from agent.peers import Peer
from latitude.channels import open_channel
from latitude.identity import peer_identity
from latitude.pki import CertFiles
from latitude.v1 import agent_pb2, agent_pb2_grpc, common_pb2

log = logging.getLogger("latitude.agent.failsafe")

# An observation older than this many report intervals is too old to vouch for a primary: the
# probe loop refreshes it every interval, a slow probe may take about one more.
FRESH_INTERVALS = 3
_REMEMBERED = 256  # STOP_CONFIRMING results kept for repeated command_ids
_ROLE = common_pb2.DatabaseRole
# A peer agent that restarts must be asked again within a round or two, not after gRPC's
# default reconnect back-off (up to two minutes).
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


@dataclass(frozen=True, slots=True)
class Word:
    """A leader's word on the cluster, and the epoch of the leader that gave it."""

    write_region: str
    failover_in_progress: bool
    epoch: int
    # This agent's region is in maintenance: agent.health stops offering its standby for
    # reads. Confirming is unchanged (a standby in maintenance still follows the primary).
    maintenance: bool = False


def refusal(
    request: agent_pb2.ConfirmRequest, *, region: str, database: common_pb2.DatabaseStatus,
    observed_age: float, fresh_for: float, word: Word | None, stopped_epoch: int | None,
) -> str:  # fmt: skip
    """Why this agent must not confirm ``request``; "" when it may."""
    asking = request.primary_region
    if asking == region:
        return f"{region} cannot vouch for itself"
    if word is None:
        return "no word from a leader yet (this agent just started?)"
    if word.write_region != asking:
        named = word.write_region or "no region"
        return f"the newest leader word (epoch {word.epoch}) names {named} as the write region"
    if word.failover_in_progress:
        return f"the newest leader word (epoch {word.epoch}) says a failover is under way"
    if stopped_epoch is not None:
        return f"a leader (epoch {stopped_epoch}) said to stop confirming {asking}"
    if database.role != _ROLE.DATABASE_ROLE_STANDBY:
        return f"this region's database is {_ROLE.Name(database.role)[14:]}, not a standby"
    if not database.wal_receiver_streaming:
        return "this region's standby is not streaming"
    if database.upstream_address != request.primary_address:
        return (f"this region's standby streams from {database.upstream_address or 'nowhere'}, "
                f"not {request.primary_address}")  # fmt: skip
    if observed_age > fresh_for:
        return f"the newest observation of this region's database is {observed_age:.1f} s old"
    ours, theirs = database.system_identifier, request.system_identifier
    if ours and theirs and ours != theirs:
        return f"system identifier {ours} is not the asking primary's {theirs}"
    return ""


class Failsafe:
    """A standby's side: the leader's newest word, the stops in force, and when each primary
    was last confirmed (monotonic)."""

    def __init__(self, region: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.region = region
        self._clock = clock
        self.word: Word | None = None
        self._stops: dict[str, int] = {}  # primary region -> epoch of the STOP_CONFIRMING
        self.last_confirmed: dict[str, float] = {}
        self._results: OrderedDict[str, agent_pb2.CommandResult] = OrderedDict()

    def word_seen(self, word: agent_pb2.ClusterWord, epoch: int) -> None:
        """A leader of ``epoch`` gave ``word`` (the link passes only the newest leaders')."""
        if self.word is not None and epoch < self.word.epoch:
            return
        self.word = Word(word.write_region, word.failover_in_progress, epoch, word.maintenance)
        if not word.failover_in_progress:
            for region, stopped in list(self._stops.items()):
                if epoch >= stopped:
                    del self._stops[region]
                    log.info("confirming %s again: a leader (epoch %d) says no failover is "
                             "under way", region, epoch)  # fmt: skip

    def answer(
        self, request: agent_pb2.ConfirmRequest, *, database: common_pb2.DatabaseStatus,
        observed_at: float, fresh_for: float,
    ) -> agent_pb2.ConfirmReply:  # fmt: skip
        now = self._clock()
        why = refusal(
            request, region=self.region, database=database, observed_age=now - observed_at,
            fresh_for=fresh_for, word=self.word,
            stopped_epoch=self._stops.get(request.primary_region),
        )  # fmt: skip
        if not why:
            self.last_confirmed[request.primary_region] = now
        return agent_pb2.ConfirmReply(region=self.region, confirmed=not why, reason=why)

    def stop_confirming(
        self, command: agent_pb2.Command, *, accepted: bool, agent_epoch: int,
        observed: common_pb2.DatabaseStatus,
    ) -> agent_pb2.CommandResult:  # fmt: skip
        """Carry out STOP_CONFIRMING (``accepted``: its epoch is not a deposed leader's).

        The stop takes effect before the answer leaves. A repeated command_id does nothing
        again; its answer says how long ago the primary was last confirmed as of now, which is
        never less than the truth."""
        primary = command.stop_confirming.primary_region
        result = self._results.get(command.command_id)
        if result is None:
            result = agent_pb2.CommandResult(command_id=command.command_id)
            if not accepted:
                result.error = (
                    f"refused: the command's epoch {command.epoch} is lower than epoch "
                    f"{agent_epoch} already accepted (it comes from a deposed leader)"
                )
            elif not primary:
                result.error = "STOP_CONFIRMING needs stop_confirming.primary_region"
            else:
                self._stops[primary] = max(command.epoch, self._stops.get(primary, 0))
                result.ok = True
                log.warning("stopped confirming %s (failover %s, epoch %d)", primary,
                            command.stop_confirming.failover_id, command.epoch)  # fmt: skip
            if command.command_id:
                self._results[command.command_id] = result
                while len(self._results) > _REMEMBERED:
                    self._results.popitem(last=False)
        answer = agent_pb2.CommandResult()
        answer.CopyFrom(result)
        answer.agent_epoch = agent_epoch
        answer.observed.CopyFrom(observed)
        last = self.last_confirmed.get(primary)
        if answer.ok and last is not None:
            answer.last_confirmed_seconds_ago = max(0.0, self._clock() - last)
        return answer


class FailsafeServicer(agent_pb2_grpc.FailsafeServiceServicer):
    def __init__(
        self,
        failsafe: Failsafe,
        observation: Callable[[], tuple[common_pb2.DatabaseStatus, float]],
        fresh_for: Callable[[], float],
    ) -> None:
        self._failsafe = failsafe
        self._observation = observation  # the newest DatabaseStatus, and its monotonic time
        self._fresh_for = fresh_for

    async def Confirm(self, request: agent_pb2.ConfirmRequest, context) -> agent_pb2.ConfirmReply:
        for field in ("primary_region", "primary_address"):
            if not getattr(request, field):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: required")
        caller = peer_identity(context)
        if (
            caller is not None
            and caller.role == "agent"
            and caller.region != request.primary_region
        ):
            # A confirmation keeps a primary writable through an outage of the control plane,
            # so only that primary's own agent may collect one: another region's agent asking
            # would make this standby vouch for a database it never heard from.
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the {caller} may ask for confirmations of its own region only, "
                f"not of {request.primary_region}",
            )
        database, observed_at = self._observation()
        return self._failsafe.answer(
            request, database=database, observed_at=observed_at, fresh_for=self._fresh_for()
        )


class Rounds:
    """A primary's side: asks every peer agent at once, each round. Channels are made once,
    inside the loop that uses them, and kept."""

    def __init__(self, peers: list[Peer], *, tls: CertFiles | None = None) -> None:
        self._peers = peers
        self._tls = tls
        self._stubs: dict[str, agent_pb2_grpc.FailsafeServiceStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    async def ask(
        self, request: agent_pb2.ConfirmRequest, timeout: float
    ) -> tuple[tuple[str, ...], str]:
        """(the regions that confirmed, why the round was not fully confirmed or "")."""
        asked = [self._ask(peer, request, timeout) for peer in self._peers]
        answers = list(zip(self._peers, await asyncio.gather(*asked), strict=True))
        confirmed = tuple(peer.region for peer, why in answers if not why)
        problems = [f"{peer.region}: {why}" for peer, why in answers if why]
        return confirmed, "; ".join(problems)

    async def _ask(self, peer: Peer, request: agent_pb2.ConfirmRequest, timeout: float) -> str:
        try:
            reply = await self._stub(peer).Confirm(request, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            return f"no answer from {peer.address} ({err.code().name})"
        if reply.region != peer.region:
            return f"{peer.address} answered as {reply.region or 'no region'}"
        return "" if reply.confirmed else reply.reason or "not confirmed"

    def _stub(self, peer: Peer) -> agent_pb2_grpc.FailsafeServiceStub:
        stub = self._stubs.get(peer.region)
        if stub is None:
            channel = open_channel(peer.address, self._tls, options=_CHANNEL_OPTIONS)
            self._channels.append(channel)
            stub = self._stubs[peer.region] = agent_pb2_grpc.FailsafeServiceStub(channel)
        return stub

    async def close(self) -> None:
        channels, self._channels, self._stubs = self._channels, [], {}
        for channel in channels:
            await channel.close()
