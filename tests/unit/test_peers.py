"""RTT to peer regions against real local sockets (one listening, one closed port), the
setting that names the peers, and reports that carry both agent measurements."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration

from agent import config as agent_config
from agent.main import Agent
from agent.peers import DEFAULT_INTERVAL, Peer, PeerProber, parse_peers
from latitude.errors import ConfigError
from latitude.v1 import agent_pb2

HOST = "127.0.0.1"


@pytest.fixture
def open_port() -> Iterator[int]:
    """A port with a listener that never accepts: the kernel completes the handshake anyway."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A port whose listener's accept queue is full: Linux drops further SYNs, so a connect
    hangs as it would to a region behind a partition."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(2)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                try:
                    filler.connect((HOST, port))
                except BlockingIOError:
                    pass
            yield port
        finally:
            for filler in fillers:
                filler.close()


def test_parse_peers_reads_region_equals_address():
    peers = parse_peers([" eu-west-1 = db.eu:5432", "ap-southeast-1=[::1]:5433"], "us-east-1")
    assert peers == [Peer("eu-west-1", "db.eu:5432"), Peer("ap-southeast-1", "[::1]:5433")]


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        (["db.eu:5432"], "expected region=host:port, got 'db.eu:5432'"),
        (["=db.eu:5432"], "expected region=host:port"),
        (["eu-west-1=db.eu"], "peers: eu-west-1: expected host:port"),
        (["eu-west-1=http://db.eu:5432"], "peers: eu-west-1: expected host:port"),
        (["us-east-1=db.us:5432"], "us-east-1 is this agent's own region"),
        (["eu-west-1=a:1", "eu-west-1=b:1"], "eu-west-1 is given more than once"),
    ],
)
def test_parse_peers_names_what_is_wrong(items, problem):
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[")):
        parse_peers(items, "us-east-1")


def test_the_setting_is_a_comma_separated_list():
    config, _ = agent_config.load(
        None, {"region": "us-east-1", "coordinators": "c:1", "peers": "eu-west-1=a:1, ap-x=b:2"}
    )
    assert config.peers == ("eu-west-1=a:1", "ap-x=b:2")
    with pytest.raises(ConfigError, match="peers: us-east-1 is this agent's own region"):
        agent_config.load(
            None, {"region": "us-east-1", "coordinators": "c:1", "peers": "us-east-1=a:1"}
        )


async def test_an_open_port_is_reachable_with_its_rtt_and_a_closed_one_is_not(
    open_port, closed_port
):
    prober = PeerProber(
        [Peer("eu-west-1", f"{HOST}:{open_port}"), Peer("ap-southeast-1", f"{HOST}:{closed_port}")]
    )
    assert prober.latest() == []  # not measured yet is not unreachable
    round_ = await prober.probe()
    assert [p.region for p in round_] == ["eu-west-1", "ap-southeast-1"]
    reachable, refused = round_
    assert reachable.reachable and 0 < reachable.rtt_seconds < 1
    assert (refused.reachable, refused.rtt_seconds) == (False, 0.0)
    assert prober.latest() == round_


async def test_a_peer_that_does_not_answer_times_out_and_peers_wait_together(stalled_port):
    peers = [Peer(f"r{i}", f"{HOST}:{stalled_port}") for i in range(3)]
    prober = PeerProber(peers, timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    round_ = await prober.probe()
    # One timeout for the round, not one per peer.
    assert 0.3 <= loop.time() - started < 0.6
    assert [(p.reachable, p.rtt_seconds) for p in round_] == [(False, 0.0)] * 3


async def test_peers_are_probed_each_interval(open_port, closed_port):
    peers = [Peer(f"r{i}", f"{HOST}:{open_port}") for i in range(5)]
    prober = PeerProber([*peers, Peer("gone", f"{HOST}:{closed_port}")], interval=lambda: 0.01)
    rounds = 0
    three_rounds = asyncio.Event()
    probe = prober.probe

    async def counted() -> list[agent_pb2.PeerRtt]:
        nonlocal rounds
        rounds += 1
        if rounds == 3:
            three_rounds.set()
        return await probe()

    prober.probe = counted
    task = asyncio.create_task(prober.run())
    try:
        async with asyncio.timeout(5):
            await three_rounds.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    latest = prober.latest()
    assert [p.reachable for p in latest] == [True] * 5 + [False]


async def test_without_peers_nothing_runs():
    prober = PeerProber([])
    async with asyncio.timeout(1):
        await prober.run()
    assert prober.latest() == []


async def test_reports_carry_utilization_and_peers(tmp_path: Path, open_port, closed_port):
    source = tmp_path / "utilization"
    source.write_text("0.75\n")
    config, _ = agent_config.load(
        None,
        {
            "region": "us-east-1",
            "coordinators": f"{HOST}:{closed_port}",
            "utilization_source": str(source),
            "peers": f"eu-west-1={HOST}:{open_port},ap-southeast-1={HOST}:{closed_port}",
        },
    )
    agent = Agent(config, [])
    try:
        assert agent.peer_probe_interval == DEFAULT_INTERVAL
        welcome = agent_pb2.Welcome(peer_probe_interval=Duration(seconds=2))
        agent.link.welcome = welcome
        assert agent.peer_probe_interval == 2.0

        empty = agent.report()
        assert (empty.capacity_utilization, list(empty.peers)) == (0.0, [])
        await agent.utilization.read_once()
        await agent.peers.probe()
        report = agent.report()
        assert report.capacity_utilization == 0.75
        assert [(p.region, p.reachable) for p in report.peers] == [
            ("eu-west-1", True),
            ("ap-southeast-1", False),
        ]
    finally:
        await agent.checks.close()
        await agent.probe.close()
