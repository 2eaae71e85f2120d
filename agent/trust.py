"""What the agent believes of what a coordinator tells it: only what its configuration names,
within bounds a real leader never leaves.

Each check answers the problem as a sentence (None: believed), so the link and the actuator
log, or answer, exactly why they refused.

Epochs. A leader's epoch is the etcd create revision of its leader key (coordinator.election),
so the gap between two leaders' epochs is the number of etcd writes made during the earlier
term. The leader writes all the time (health every publish interval, routing measurements,
events, history): at ten writes a second a month's term is 26 million revisions, so a bound
such as "at most +1,000,000" would refuse the real new leader after a term of about a day.
The bound here is ``MAX_EPOCH_JUMP`` = 2^32 revisions past the highest epoch seen (13 years of
one term at ten writes a second; a day even at etcd's ceiling of ~50,000), and no epoch past
``MAX_EPOCH`` = 2^53 (no etcd revision gets there), which is all a first epoch is held to. It
stops the absurd value (2^63, which would make the agent refuse every real leader for good);
it cannot stop a forged epoch within the bound, which only an impostor at a configured
coordinator address could send: TLS (the coordinator's certificate) and the redirect rule
below keep impostors out. A leader sends its own epoch on every message of its stream, so a
Command or ReportAck carrying another epoch than its stream's Welcome is not believed at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.peers import Peer
from latitude.errors import ConfigError
from latitude.leader_bounds import (
    FENCE_AFTER,
    MAX_ACK_EVERY,
    PEER_PROBE_INTERVAL,
    REPORT_INTERVAL,
    outside,
)
from latitude.netaddr import join_host_port, parse_host_port
from latitude.v1 import agent_pb2

MAX_EPOCH = 2**53
MAX_EPOCH_JUMP = 2**32
MAX_NAME = 128


def epoch_problem(epoch: int, highest: int) -> str | None:
    """Why a leader's ``epoch`` is not believed by an agent that has seen ``highest``."""
    if epoch < highest:
        return f"epoch {epoch} is lower than epoch {highest} already seen (a deposed leader?)"
    if epoch > MAX_EPOCH:
        return f"epoch {epoch} is past 2^53, which no etcd revision reaches"
    # The first epoch an agent sees has nothing to jump from: an etcd cluster's revisions
    # keep growing over its years, across every agent restart.
    if highest and epoch - highest > MAX_EPOCH_JUMP:
        return (
            f"epoch {epoch} jumps {epoch - highest} past epoch {highest} already seen (more "
            f"than 2^32 etcd revisions in one leader's term)"
        )
    return None


def welcome_problem(welcome: agent_pb2.Welcome, highest_epoch: int) -> str | None:
    """Why ``welcome`` is refused (the agent keeps its previous leader's values), or None."""
    problem = epoch_problem(welcome.epoch, highest_epoch)
    if problem is not None:
        return problem
    if len(welcome.leader_id) > MAX_NAME:
        return f"leader_id is longer than {MAX_NAME} characters"
    if len(welcome.word.write_region) > MAX_NAME:
        return f"word.write_region is longer than {MAX_NAME} characters"
    durations = (
        ("report_interval", REPORT_INTERVAL),
        ("fence_after", FENCE_AFTER),
        ("peer_probe_interval", PEER_PROBE_INTERVAL),
    )
    for name, bounds in durations:
        nanoseconds = getattr(welcome, name).ToNanoseconds()
        problem = nanoseconds and outside(name, nanoseconds / 1e9, bounds)
        if problem:
            return problem
    if welcome.ack_every > MAX_ACK_EVERY:
        return f"ack_every {welcome.ack_every} is outside 0..{MAX_ACK_EVERY}"
    return None


def command_epoch_problem(command_epoch: int, leader_epoch: int) -> str | None:
    """Why a command on the stream of the leader of ``leader_epoch`` is refused before the
    actuator sees it: its epoch is higher than its own sender's (a lower one is the actuator's
    to refuse, as from a deposed leader)."""
    if command_epoch > leader_epoch:
        return (
            f"the command's epoch {command_epoch} is higher than epoch {leader_epoch} of the "
            f"leader that sent it"
        )
    return None


def _endpoint(address: str) -> tuple[str, int] | None:
    try:
        host, port = parse_host_port(address, "address")
    except ConfigError:
        return None
    return host.lower(), port


def redirect_problem(address: str, coordinators: Iterable[str]) -> str | None:
    """Why a NotLeader redirect to ``address`` is not followed: it is not a configured
    coordinator (the agent then tries the configured ones in turn, the leader among them)."""
    target = _endpoint(address)
    if target is None:
        return f"redirect to {address[:MAX_NAME]!r}: not host:port"
    if target not in {_endpoint(c) for c in coordinators}:
        return f"redirect to {address}: not one of the configured coordinators"
    return None


def upstream_problem(follow: agent_pb2.FollowArgs, peers: Iterable[Peer]) -> str | None:
    """Why the database may not stream from ``follow``'s server: only another configured
    region's PostgreSQL (the agent's ``peers``) may be its upstream, as that region."""
    if not follow.primary_host or not 0 < follow.primary_port < 65536:
        return None  # the actuator names the missing argument
    # The coordinator splits its "host:port" endpoint, so an IPv6 host may keep its brackets.
    target = (follow.primary_host.strip("[]").lower(), follow.primary_port)
    shown = join_host_port(follow.primary_host[:MAX_NAME], follow.primary_port)
    for peer in peers:
        if _endpoint(peer.address) == target:
            if follow.primary_region and follow.primary_region != peer.region:
                return (
                    f"upstream {shown} is {peer.region}'s database in this agent's peers, "
                    f"not {follow.primary_region[:MAX_NAME]}'s"
                )
            return None
    return f"upstream {shown} is not a configured region's database (the agent's peers)"
