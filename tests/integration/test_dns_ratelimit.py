"""Response-rate limiting on the real stack: a flood of UDP queries from one network to one
coordinator gets most of its answers withheld and some sent truncated, while TCP from that
network and UDP from another network are answered in full.

The flood comes from its own /24 on the loopback interface (127.0.3.1: Linux answers for all
of 127/8), not from 127.0.0.1, so that the debt it leaves (``dns_rate_limit_window``) touches
no other test of the session's stack. The limit is the default one (20 responses/s per
network and answer, every second limited response truncated)."""

from __future__ import annotations

import asyncio
import socket
import time

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest

from latitude.stack.stack import DNS_ZONE
from tests.integration.connections import eventually
from tests.integration.test_dns import cluster, servers  # noqa: F401 - cluster: a fixture
from tests.integration.test_metrics import scrape

pytestmark = pytest.mark.stack

FLOODER, NEIGHBOUR, ELSEWHERE = "127.0.3.1", "127.0.3.2", "127.0.4.1"
QUERIES = 400
NAME = f"write.{DNS_ZONE}"


def flood(server: tuple[str, int], source: str) -> tuple[list[dns.message.Message], float]:
    """Send ``QUERIES`` queries for ``NAME`` from ``source`` as fast as one socket can, then
    collect what comes back until a second passes with nothing (the replies and how long the
    sending took)."""
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((source, 0))
        started = time.monotonic()
        for n in range(QUERIES):
            query = dns.message.make_query(NAME, "A", id=n)
            sock.sendto(query.to_wire(), server)
        sending = time.monotonic() - started
        sock.settimeout(1.0)
        while True:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                break
            replies.append(dns.message.from_wire(data))
    return replies, sending


async def test_a_flood_from_one_network_is_withheld_and_slipped_but_tcp_and_others_answer(
    cluster,  # noqa: F811 - the fixture imported above
):
    server = servers(cluster)[0]
    metrics = cluster.http_address(cluster.state(), cluster.topology.coordinators[0])
    before = await scrape(metrics)
    query = dns.message.make_query(NAME, "A")
    # The server answers (its first table may still be coming): from elsewhere, over TCP.

    async def answered():
        reply = await dns.asyncquery.tcp(query, server[0], port=server[1], timeout=10)
        return reply.answer

    await eventually(answered, 60, f"the coordinator's DNS to answer {NAME} over TCP")
    replies, sending = await asyncio.to_thread(flood, server, FLOODER)
    full = [r for r in replies if not r.flags & dns.flags.TC]
    truncated = [r for r in replies if r.flags & dns.flags.TC]
    # One second of tokens, and what the sending time earned: the rest is limited.
    assert len(full) <= 20 + 20 * sending + 5, (len(full), sending)
    assert len(truncated) >= QUERIES // 4, (len(truncated), len(full))
    withheld = QUERIES - len(replies)
    assert withheld >= QUERIES // 4, (withheld, len(truncated), len(full))
    for reply in truncated:
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer == []
        assert reply.question == query.question
    assert all(r.answer for r in full)
    host, port = server
    # TCP is never limited, even from the flooding network.
    reply = await dns.asyncquery.tcp(query, host, port=port, source=FLOODER, timeout=10)
    assert reply.answer and not reply.flags & dns.flags.TC, reply.to_text()
    # Another host of the flooder's /24 is the same client: still limited.
    answers = await asyncio.to_thread(neighbour_replies, server)
    assert len(answers) <= 4 and not any(r.answer for r in answers), answers
    # Another /24 has its own account.
    reply = await dns.asyncquery.udp(query, host, port=port, source=ELSEWHERE, timeout=10)
    assert reply.answer and not reply.flags & dns.flags.TC, reply.to_text()
    after = await scrape(metrics)
    dropped = "latitude_dns_dropped_packets_total"
    for reason in ("rate_limited", "rate_limit_slipped"):
        grown = after.value(dropped, reason=reason) - before.value(dropped, reason=reason)
        assert grown >= QUERIES // 4, (reason, grown)


def neighbour_replies(server: tuple[str, int]) -> list[dns.message.Message]:
    """Four queries from another host of the flooder's /24: what came back (the flood's debt
    is counted for the network, so nothing whole does)."""
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((NEIGHBOUR, 0))
        sock.settimeout(1.0)
        for n in range(4):
            sock.sendto(dns.message.make_query(NAME, "A", id=n).to_wire(), server)
        while True:
            try:
                replies.append(dns.message.from_wire(sock.recv(4096)))
            except TimeoutError:
                return replies
