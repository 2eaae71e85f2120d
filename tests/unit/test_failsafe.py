"""The failsafe: when a standby's agent confirms a primary, when it stops, and a primary's
rounds against real gRPC servers on ephemeral ports."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from agent.config import AgentConfig
from agent.failsafe import Failsafe, FailsafeServicer, Rounds
from agent.link import CoordinatorLink, Redirect
from agent.main import Agent
from agent.peers import Peer
from latitude.serving import Server
from latitude.v1 import agent_pb2, agent_pb2_grpc, common_pb2

PRIMARY_ADDRESS = "10.0.1.5:5432"
ASK = agent_pb2.ConfirmRequest(
    primary_region="us-east-1", primary_address=PRIMARY_ADDRESS, system_identifier=42
)
STREAMING = common_pb2.DatabaseStatus(
    role=common_pb2.DATABASE_ROLE_STANDBY,
    wal_receiver_streaming=True,
    upstream_address=PRIMARY_ADDRESS,
    system_identifier=42,
)
WORD = agent_pb2.ClusterWord(write_region="us-east-1")
IN_FAILOVER = agent_pb2.ClusterWord(write_region="us-east-1", failover_in_progress=True)


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def standby(clock: Clock, word: agent_pb2.ClusterWord | None = WORD, epoch: int = 3) -> Failsafe:
    failsafe = Failsafe("eu-west-1", clock=clock)
    if word is not None:
        failsafe.word_seen(word, epoch)
    return failsafe


def ask(failsafe: Failsafe, database=STREAMING, *, age: float = 0.2, request=ASK):
    return failsafe.answer(
        request, database=database, observed_at=failsafe._clock() - age, fresh_for=1.5
    )


def stop(epoch: int = 3, command_id: str = "stop-1") -> agent_pb2.Command:
    return agent_pb2.Command(
        command_id=command_id,
        epoch=epoch,
        kind=agent_pb2.COMMAND_KIND_STOP_CONFIRMING,
        stop_confirming=agent_pb2.StopConfirmingArgs(primary_region="us-east-1", failover_id="f1"),
    )


def test_a_streaming_standby_with_the_leaders_word_confirms_and_remembers_when():
    clock = Clock()
    failsafe = standby(clock)
    reply = ask(failsafe)
    assert (reply.region, reply.confirmed, reply.reason) == ("eu-west-1", True, "")
    assert failsafe.last_confirmed == {"us-east-1": 100.0}


def with_(**changes) -> common_pb2.DatabaseStatus:
    database = common_pb2.DatabaseStatus()
    database.CopyFrom(STREAMING)
    for name, value in changes.items():
        setattr(database, name, value)
    return database


@pytest.mark.parametrize(
    ("database", "age", "reason"),
    [
        (with_(role=common_pb2.DATABASE_ROLE_PRIMARY), 0.2, "PRIMARY, not a standby"),
        (with_(role=common_pb2.DATABASE_ROLE_DOWN), 0.2, "DOWN, not a standby"),
        (with_(wal_receiver_streaming=False), 0.2, "not streaming"),
        (with_(upstream_address="10.0.2.9:5432"), 0.2, "streams from 10.0.2.9:5432, not"),
        (STREAMING, 1.6, "1.6 s old"),
        (with_(system_identifier=7), 0.2, "system identifier 7"),
    ],
)
def test_a_standby_that_does_not_evidently_follow_the_primary_refuses(database, age, reason):
    failsafe = standby(Clock())
    reply = ask(failsafe, database, age=age)
    assert not reply.confirmed
    assert reason in reply.reason
    assert failsafe.last_confirmed == {}


def test_an_unknown_system_identifier_is_not_compared():
    assert ask(standby(Clock()), with_(system_identifier=0)).confirmed


@pytest.mark.parametrize(
    ("word", "reason"),
    [
        (None, "no word from a leader"),
        (agent_pb2.ClusterWord(write_region="eu-west-1"), "names eu-west-1 as the write region"),
        (agent_pb2.ClusterWord(), "names no region"),
        (IN_FAILOVER, "failover is under way"),
    ],
)
def test_without_a_leaders_word_for_the_primary_nothing_is_confirmed(word, reason):
    reply = ask(standby(Clock(), word))
    assert not reply.confirmed
    assert reason in reply.reason


def test_only_the_newest_leaders_word_counts():
    failsafe = standby(Clock(), WORD, epoch=5)
    failsafe.word_seen(agent_pb2.ClusterWord(write_region="eu-west-1"), 4)  # a deposed leader
    assert ask(failsafe).confirmed
    failsafe.word_seen(agent_pb2.ClusterWord(write_region="eu-west-1"), 6)
    assert not ask(failsafe).confirmed


def test_stop_confirming_stops_at_once_and_answers_when_it_last_confirmed():
    clock = Clock()
    failsafe = standby(clock)
    assert ask(failsafe).confirmed
    clock.now = 101.5
    result = failsafe.stop_confirming(stop(), accepted=True, agent_epoch=3, observed=STREAMING)
    assert result.ok and result.command_id == "stop-1" and result.agent_epoch == 3
    assert result.last_confirmed_seconds_ago == pytest.approx(1.5)
    assert result.observed == STREAMING
    reply = ask(failsafe)
    assert not reply.confirmed
    assert "stop confirming us-east-1" in reply.reason


def test_a_stop_for_a_primary_never_confirmed_leaves_the_time_unset():
    result = standby(Clock()).stop_confirming(
        stop(), accepted=True, agent_epoch=3, observed=STREAMING
    )
    assert result.ok
    assert not result.HasField("last_confirmed_seconds_ago")


def test_a_deposed_leaders_stop_is_refused():
    failsafe = standby(Clock())
    result = failsafe.stop_confirming(stop(2), accepted=False, agent_epoch=3, observed=STREAMING)
    assert not result.ok
    assert "epoch 2 is lower than epoch 3" in result.error
    assert ask(failsafe).confirmed


def test_a_repeated_stop_does_not_act_again_and_still_answers_the_truth():
    clock = Clock()
    failsafe = standby(clock)
    ask(failsafe)
    first = failsafe.stop_confirming(stop(), accepted=True, agent_epoch=3, observed=STREAMING)
    failsafe.word_seen(WORD, 3)  # the failover aborted: confirming again
    clock.now = 102.0
    assert ask(failsafe).confirmed
    clock.now = 102.5
    again = failsafe.stop_confirming(stop(), accepted=True, agent_epoch=3, observed=STREAMING)
    assert again.ok and first.ok
    assert again.last_confirmed_seconds_ago == pytest.approx(0.5)  # never less than the truth
    assert ask(failsafe).confirmed  # the remembered command did not stop it again


def test_a_stop_holds_until_a_later_word_of_its_epoch_says_no_failover():
    failsafe = standby(Clock(), epoch=3)
    failsafe.stop_confirming(stop(4), accepted=True, agent_epoch=4, observed=STREAMING)
    failsafe.word_seen(WORD, 3)  # an older leader's word: ignored
    assert not ask(failsafe).confirmed
    failsafe.word_seen(IN_FAILOVER, 4)
    assert not ask(failsafe).confirmed
    failsafe.word_seen(WORD, 4)
    assert ask(failsafe).confirmed


def test_the_link_records_only_the_newest_leaders_word():
    seen = []
    link = CoordinatorLink(
        ("127.0.0.1:1",),
        lambda epoch: agent_pb2.Hello(),
        on_word=lambda word, epoch: seen.append((word.write_region, epoch)),
    )

    def greeted(epoch: int, **fields) -> None:
        welcome = agent_pb2.Welcome(epoch=epoch, **fields)
        with contextlib.suppress(Redirect):
            link._greeted(agent_pb2.CoordinatorMessage(welcome=welcome), "127.0.0.1:1")

    greeted(3)
    link._acked(agent_pb2.ReportAck(sequence=1, epoch=3, word=WORD))
    greeted(2, word=agent_pb2.ClusterWord())  # a deposed leader's: refused
    link._acked(agent_pb2.ReportAck(sequence=2, epoch=2, word=agent_pb2.ClusterWord()))
    greeted(4, word=WORD)
    link._acked(agent_pb2.ReportAck(sequence=3, epoch=4))  # no word: the empty word
    assert seen == [("", 3), ("us-east-1", 3), ("us-east-1", 4), ("", 4)]
    assert link.word_epoch == 4 and link.word.write_region == ""


class FakeContext:
    """A call's context; ``uri`` is the caller certificate's latitude URI (none: plaintext)."""

    def __init__(self, uri: str = "") -> None:
        self._uri = uri

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"peer_uri": [self._uri.encode()]} if self._uri else {}

    async def abort(self, code, details):
        raise AssertionError(f"{code.name}: {details}")


async def test_the_servicer_answers_from_the_latest_observation():
    clock = Clock()
    failsafe = standby(clock)
    servicer = FailsafeServicer(failsafe, lambda: (STREAMING, 99.8), lambda: 1.5)
    reply = await servicer.Confirm(ASK, FakeContext())
    assert reply.confirmed
    with pytest.raises(AssertionError, match="INVALID_ARGUMENT: primary_address: required"):
        await servicer.Confirm(agent_pb2.ConfirmRequest(primary_region="us-east-1"), FakeContext())


async def test_an_agent_may_collect_confirmations_of_its_own_region_only():
    failsafe = standby(Clock())
    servicer = FailsafeServicer(failsafe, lambda: (STREAMING, 99.8), lambda: 1.5)
    own = FakeContext("latitude://region/us-east-1")
    assert (await servicer.Confirm(ASK, own)).confirmed
    assert (await servicer.Confirm(ASK, FakeContext("latitude://role/coordinator"))).confirmed
    with pytest.raises(
        AssertionError,
        match="PERMISSION_DENIED: the agent of eu-west-1 may ask for confirmations of its own "
        "region only, not of us-east-1",
    ):
        await servicer.Confirm(ASK, FakeContext("latitude://region/eu-west-1"))


async def serve(failsafe: Failsafe, database=STREAMING) -> Server:
    server = Server("127.0.0.1:0")
    servicer = FailsafeServicer(failsafe, lambda: (database, failsafe._clock()), lambda: 1.5)
    server.add(agent_pb2_grpc.add_FailsafeServiceServicer_to_server, servicer, "FailsafeService")
    await server.start()
    return server


async def test_a_round_is_confirmed_only_when_every_peer_confirms():
    clock = Clock()
    eu = standby(clock)
    ap = Failsafe("ap-southeast-1", clock=clock)
    ap.word_seen(WORD, 3)
    servers = [await serve(eu), await serve(ap, with_(wal_receiver_streaming=False))]
    rounds = Rounds([Peer("eu-west-1", f"127.0.0.1:{servers[0].port}"),
                     Peer("ap-southeast-1", f"127.0.0.1:{servers[1].port}")])  # fmt: skip
    try:
        confirmed, problem = await rounds.ask(ASK, timeout=2.0)
        assert confirmed == ("eu-west-1",)
        assert problem == "ap-southeast-1: this region's standby is not streaming"
        await servers[1].stop(0)
        confirmed, problem = await rounds.ask(ASK, timeout=0.5)
        assert confirmed == ("eu-west-1",)
        assert problem.startswith("ap-southeast-1: no answer from 127.0.0.1:")
    finally:
        await rounds.close()
        for server in servers:
            await server.stop(0)


async def test_a_peer_answering_for_another_region_does_not_count():
    clock = Clock()
    server = await serve(standby(clock))
    rounds = Rounds([Peer("ap-southeast-1", f"127.0.0.1:{server.port}")])
    try:
        confirmed, problem = await rounds.ask(ASK, timeout=2.0)
        assert confirmed == ()
        assert "answered as eu-west-1" in problem
    finally:
        await rounds.close()
        await server.stop(0)


async def test_the_agent_stops_confirming_before_it_answers_and_never_asks_the_actuator():
    agent = Agent(AgentConfig(region="eu-west-1", coordinators=("127.0.0.1:1",)), [])
    agent.failsafe.word_seen(WORD, 3)
    agent._observed(STREAMING, time.monotonic())
    servicer = FailsafeServicer(agent.failsafe, agent.observation, lambda: 1.5)
    assert (await servicer.Confirm(ASK, FakeContext())).confirmed

    async def no_actuator(command):
        raise AssertionError("STOP_CONFIRMING reached the actuator")

    agent.actuator.execute = no_actuator
    answered = asyncio.Event()
    agent.link.send_result = lambda result: (agent.link._results.append(result), answered.set())
    loop = asyncio.create_task(agent._command_loop())
    try:
        agent._commands.put_nowait(stop(epoch=3))
        await asyncio.wait_for(answered.wait(), 2.0)
        refused = await servicer.Confirm(ASK, FakeContext())
        agent._commands.put_nowait(stop(epoch=2, command_id="stop-old"))
        answered.clear()
        await asyncio.wait_for(answered.wait(), 2.0)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await agent.actuator.close()
        await agent.probe.close()
    first, deposed = agent.link._results
    assert first.ok and first.HasField("last_confirmed_seconds_ago")
    assert first.agent_epoch == 3
    assert not refused.confirmed and "stop confirming us-east-1" in refused.reason
    assert not deposed.ok and "deposed leader" in deposed.error
