"""What an agent believes of a coordinator: epochs, Welcome values, redirects and upstreams,
each refusal with its exact reason."""

from __future__ import annotations

import pytest
from google.protobuf.duration_pb2 import Duration

from agent.peers import Peer
from agent.trust import (
    MAX_EPOCH,
    MAX_EPOCH_JUMP,
    command_epoch_problem,
    epoch_problem,
    redirect_problem,
    upstream_problem,
    welcome_problem,
)
from coordinator.config import CoordinatorConfig
from latitude.errors import ConfigError
from latitude.v1 import agent_pb2

COORDINATORS = ("10.0.0.1:50051", "10.0.0.2:50051", "[fd00::3]:50051")
PEERS = [Peer("us-east-1", "10.0.1.5:5432"), Peer("ap-southeast-1", "db.ap.example:5432")]


def welcome(epoch=7, **fields) -> agent_pb2.Welcome:
    message = agent_pb2.Welcome(leader_id="coordinator-1", epoch=epoch, ack_every=2)
    message.report_interval.FromMilliseconds(500)
    message.fence_after.FromSeconds(4)
    message.peer_probe_interval.FromSeconds(5)
    for name, value in fields.items():
        if isinstance(value, Duration | agent_pb2.ClusterWord):
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(int(value * 1e9))
    return duration


def test_a_real_leaders_welcome_is_believed():
    assert welcome_problem(welcome(), highest_epoch=5) is None


def test_the_first_welcome_and_an_unset_interval_are_believed():
    assert welcome_problem(welcome(report_interval=Duration()), highest_epoch=0) is None


def test_a_new_leader_after_a_long_term_is_believed():
    # A month's term at 20 etcd writes a second: epochs are create revisions.
    assert epoch_problem(1_000 + 20 * 86_400 * 30, 1_000) is None


def test_a_lower_epoch_is_a_deposed_leader():
    assert epoch_problem(4, 5) == "epoch 4 is lower than epoch 5 already seen (a deposed leader?)"


def test_an_absurd_epoch_is_refused():
    assert epoch_problem(2**63, 5) == (
        f"epoch {2**63} is past 2^53, which no etcd revision reaches"
    )
    assert epoch_problem(MAX_EPOCH + 1, 0) == (
        f"epoch {MAX_EPOCH + 1} is past 2^53, which no etcd revision reaches"
    )


def test_a_first_epoch_is_held_only_to_the_ceiling():
    # An etcd cluster years old, and an agent just started.
    assert epoch_problem(MAX_EPOCH, 0) is None
    assert epoch_problem(50 * 86_400 * 365 * 10, 0) is None


def test_an_epoch_jump_is_bounded():
    assert epoch_problem(5 + MAX_EPOCH_JUMP, 5) is None
    assert epoch_problem(6 + MAX_EPOCH_JUMP, 5) == (
        f"epoch {6 + MAX_EPOCH_JUMP} jumps {1 + MAX_EPOCH_JUMP} past epoch 5 already seen (more "
        "than 2^32 etcd revisions in one leader's term)"
    )


def test_a_welcome_with_an_absurd_epoch_is_refused():
    assert "past 2^53" in welcome_problem(welcome(epoch=2**63), highest_epoch=5)


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"report_interval": seconds(0.001)}, "report_interval 0.001 s is outside 0.01..10 s"),
        ({"report_interval": seconds(3600)}, "report_interval 3600 s is outside 0.01..10 s"),
        ({"report_interval": seconds(-1)}, "report_interval -1 s is outside 0.01..10 s"),
        ({"fence_after": seconds(0.01)}, "fence_after 0.01 s is outside 0.1..120 s"),
        ({"fence_after": seconds(86_400)}, "fence_after 86400 s is outside 0.1..120 s"),
        (
            {"peer_probe_interval": seconds(0.001)},
            "peer_probe_interval 0.001 s is outside 0.1..3600 s",
        ),
        ({"ack_every": 1_000_000}, "ack_every 1000000 is outside 0..4"),
        ({"leader_id": "x" * 129}, "leader_id is longer than 128 characters"),
        (
            {"word": agent_pb2.ClusterWord(write_region="r" * 129)},
            "word.write_region is longer than 128 characters",
        ),
    ],
)
def test_a_welcome_out_of_bounds_is_refused_naming_the_value(fields, problem):
    assert welcome_problem(welcome(**fields), highest_epoch=5) == problem


def test_the_bounds_themselves_are_within():
    message = welcome(report_interval=seconds(0.01), fence_after=seconds(120), ack_every=4)
    message.peer_probe_interval.FromSeconds(3600)
    assert welcome_problem(message, highest_epoch=5) is None


def test_a_command_epoch_above_its_own_leaders_is_refused():
    assert command_epoch_problem(7, 7) is None
    assert command_epoch_problem(6, 7) is None  # the actuator refuses it as a deposed leader's
    assert command_epoch_problem(2**63, 7) == (
        f"the command's epoch {2**63} is higher than epoch 7 of the leader that sent it"
    )


@pytest.mark.parametrize("address", ["10.0.0.2:50051", "[FD00::3]:50051", "[fd00::3]:50051"])
def test_a_redirect_to_a_configured_coordinator_is_followed(address):
    assert redirect_problem(address, COORDINATORS) is None


@pytest.mark.parametrize(
    "address, problem",
    [
        ("10.6.6.6:50051", "redirect to 10.6.6.6:50051: not one of the configured coordinators"),
        ("10.0.0.2:50052", "redirect to 10.0.0.2:50052: not one of the configured coordinators"),
        ("evil", "redirect to 'evil': not host:port"),
    ],
)
def test_a_redirect_elsewhere_is_not_followed(address, problem):
    assert redirect_problem(address, COORDINATORS) == problem


def follow(host, port=5432, region="us-east-1") -> agent_pb2.FollowArgs:
    return agent_pb2.FollowArgs(primary_region=region, primary_host=host, primary_port=port)


def test_an_upstream_among_the_peers_is_followed():
    assert upstream_problem(follow("10.0.1.5"), PEERS) is None
    assert upstream_problem(follow("DB.ap.example", region="ap-southeast-1"), PEERS) is None


def test_an_ipv6_upstream_in_brackets_matches_its_peer():
    peers = [Peer("us-east-1", "[fd00::5]:5432")]
    assert upstream_problem(follow("[fd00::5]"), peers) is None
    assert upstream_problem(follow("fd00::5"), peers) is None


def test_an_upstream_that_is_no_peer_is_refused():
    assert upstream_problem(follow("10.6.6.6"), PEERS) == (
        "upstream 10.6.6.6:5432 is not a configured region's database (the agent's peers)"
    )
    assert upstream_problem(follow("10.0.1.5", port=5433), PEERS) == (
        "upstream 10.0.1.5:5433 is not a configured region's database (the agent's peers)"
    )


def test_an_upstream_under_another_regions_name_is_refused():
    assert upstream_problem(follow("10.0.1.5", region="ap-southeast-1"), PEERS) == (
        "upstream 10.0.1.5:5432 is us-east-1's database in this agent's peers, not ap-southeast-1's"
    )


def test_without_peers_no_upstream_is_believed():
    assert "not a configured region's database" in upstream_problem(follow("10.0.1.5"), [])


@pytest.mark.parametrize(
    "settings, problem",
    [
        ({"fence_after": 300.0}, "fence_after 300 s is outside 0.1..120 s"),
        ({"report_interval": 0.001, "suspect_after": 1.5}, "report_interval 0.001 s is outside"),
    ],
)
def test_a_coordinator_is_never_configured_beyond_what_agents_believe(settings, problem):
    with pytest.raises(ConfigError, match=problem):
        CoordinatorConfig(**settings).validate()
    CoordinatorConfig(fence_after=120.0, report_interval=0.01).validate()
