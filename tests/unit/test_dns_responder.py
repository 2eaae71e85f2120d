"""The responder on the wire, and its listeners on real loopback sockets: rcodes for bad
packets, truncation then TCP, ECS echoed with its scope, kept answers per table version."""

from __future__ import annotations

import asyncio
import socket

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from coordinator.dns import server as server_module
from coordinator.dns.answer import Zone
from coordinator.dns.responder import Responder
from coordinator.dns.server import DnsServer
from latitude.routing import Resolver
from latitude.v1 import common_pb2
from tests.unit.routing_tables import AP, EU, US, make_table
from tests.unit.test_dns_answer import region

ZONE = Zone(dns.name.from_text("latitude.test."), ttl=5)


class Tables:
    """What the responder reads of a replica's TableCache."""

    def __init__(self, *statuses, version: int = 7) -> None:
        self.resolver: Resolver | None = None
        self.serve(*statuses, version=version)

    def serve(self, *statuses, version: int) -> None:
        statuses = statuses or (region(US), region(EU), region(AP))
        self.resolver = Resolver(make_table(statuses, version=version))


def responder(tables: Tables | None = None) -> Responder:
    return Responder(ZONE, tables or Tables())


def query(name: str, rdtype: str = "A", *, subnet: str | None = None, **edns) -> bytes:
    options = []
    if subnet is not None:
        address, length = subnet.split("/")
        options.append(dns.edns.ECSOption(address, int(length)))
    if options:
        edns.update(use_edns=0, options=options)
    message = dns.message.make_query(name, rdtype, **edns)
    return message.to_wire()


def ask(found: Responder, wire: bytes, source: str = "127.0.0.1", udp: bool = True):
    reply = found.respond(wire, source, udp=udp)
    return dns.message.from_wire(reply)


def test_a_subnet_is_routed_to_its_nearest_region_with_the_scope_set():
    found = responder()
    for subnet, address in (("81.2.69.0/24", "10.0.2.5"), ("8.8.8.0/24", "10.0.1.5")):
        reply = ask(found, query("read.latitude.test.", subnet=subnet))
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
        assert [r.to_text() for r in reply.answer[0]] == [address]
        (echo,) = reply.options
        assert (echo.address, echo.srclen, echo.scopelen) == (subnet.split("/")[0], 24, 24)
    write = ask(found, query("write.latitude.test.", subnet="81.2.69.0/24"))
    assert [r.to_text() for r in write.answer[0]] == ["10.0.1.5"]
    assert write.options[0].scopelen == 0  # the same answer for every network


def test_without_a_subnet_the_source_address_locates_the_client():
    found = responder()
    reply = ask(found, query("read.latitude.test."), source="81.2.69.160")
    assert [r.to_text() for r in reply.answer[0]] == ["10.0.2.5"]
    assert reply.options == ()


def test_names_outside_the_zone_are_refused_and_unknown_ones_nxdomain():
    found = responder()
    refused = ask(found, query("example.com."))
    assert refused.rcode() == dns.rcode.REFUSED and not refused.flags & dns.flags.AA
    missing = ask(found, query("nothing.latitude.test."))
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.flags & dns.flags.AA
    assert missing.authority[0].rdtype == dns.rdatatype.SOA


@pytest.mark.parametrize(
    ("packet", "rcode"),
    [
        (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05abc", dns.rcode.FORMERR),
        (b"\x12\x34\x01\x00\x00\x02" + b"\x00" * 6, dns.rcode.FORMERR),  # two questions, none
        (b"\x12\x34\x01\x00" + b"\x00" * 8, dns.rcode.FORMERR),  # no question
        (b"\x12\x34\x11\x00" + b"\x00" * 8, dns.rcode.NOTIMP),  # opcode 2 (STATUS)
    ],
)
def test_malformed_packets_with_a_header_get_an_error_with_their_id(packet, rcode):
    reply = responder().respond(packet, "127.0.0.1", udp=True)
    assert reply[:2] == b"\x12\x34"
    parsed = dns.message.from_wire(reply)
    assert parsed.rcode() == rcode and parsed.flags & dns.flags.QR


def test_two_subnets_or_a_bad_subnet_are_formerr():
    two = dns.message.make_query(
        "read.latitude.test.",
        "A",
        use_edns=0,
        options=[dns.edns.ECSOption("81.2.69.0", 24), dns.edns.ECSOption("8.8.8.0", 24)],
    )
    assert ask(responder(), two.to_wire()).rcode() == dns.rcode.FORMERR
    # Family 1, source /24, but four address bytes with a bit set past the prefix.
    bad = dns.edns.GenericOption(dns.edns.OptionType.ECS, b"\x00\x01\x18\x00\x51\x02\x45\x01")
    wire = dns.message.make_query("read.latitude.test.", "A", use_edns=0, options=[bad])
    assert ask(responder(), wire.to_wire()).rcode() == dns.rcode.FORMERR


def test_packets_without_a_header_responses_and_giants_are_dropped():
    found = responder()
    assert found.respond(b"\x12\x34\x01", "127.0.0.1", udp=True) is None
    response = ask(found, query("write.latitude.test."))
    assert found.respond(response.to_wire(), "127.0.0.1", udp=True) is None
    assert found.respond(b"\x00" * 5000, "127.0.0.1", udp=True) is None


def test_newer_edns_versions_get_badvers():
    reply = ask(responder(), query("write.latitude.test.", use_edns=1))
    assert reply.rcode() == dns.rcode.BADVERS


def test_a_large_answer_is_truncated_over_udp_and_whole_over_tcp():
    found = responder()
    wire = query("read.latitude.test.", "TXT")  # no EDNS: 512 bytes at most over UDP
    truncated = ask(found, wire)
    assert truncated.flags & dns.flags.TC and truncated.answer == []
    whole = ask(found, wire, udp=False)
    assert not whole.flags & dns.flags.TC and whole.answer[0].rdtype == dns.rdatatype.TXT
    assert len(found.respond(wire, "127.0.0.1", udp=False)) > 512
    roomy = ask(found, query("read.latitude.test.", "TXT", use_edns=0, payload=4096))
    assert not roomy.flags & dns.flags.TC and roomy.answer


def test_answers_are_kept_per_table_version_and_carry_each_querys_id():
    tables = Tables()
    found = responder(tables)
    first = dns.message.make_query("read.latitude.test.", "A")
    again = dns.message.make_query("read.latitude.test.", "A")
    again.id = (first.id + 1) % 65536
    assert ask(found, first.to_wire(), "81.2.69.160").id == first.id
    assert len(found.answers) == 1
    reply = ask(found, again.to_wire(), "81.2.69.160")
    assert reply.id == again.id and [r.to_text() for r in reply.answer[0]] == ["10.0.2.5"]
    assert len(found.answers) == 1  # a hit
    unhealthy = common_pb2.REGION_STATE_UNHEALTHY
    tables.serve(region(US), region(EU, unhealthy), region(AP), version=8)
    moved = ask(found, again.to_wire(), "81.2.69.160")
    assert [r.to_text() for r in moved.answer[0]] == ["10.0.1.5"]


def test_no_table_yet_is_servfail_and_not_kept():
    tables = Tables()
    tables.resolver = None
    found = responder(tables)
    assert ask(found, query("write.latitude.test.")).rcode() == dns.rcode.SERVFAIL
    assert len(found.answers) == 0


async def test_the_listeners_answer_udp_and_tcp_and_survive_garbage():
    server = DnsServer("127.0.0.1:0", responder())
    await server.start()
    try:
        host, port = server.address.rsplit(":", 1)
        port = int(port)
        request = dns.message.make_query("write.latitude.test.", "A")
        udp = await dns.asyncquery.udp(request, host, port=port, timeout=5)
        assert [r.to_text() for r in udp.answer[0]] == ["10.0.1.5"]
        txt = dns.message.make_query("read.latitude.test.", "TXT")
        truncated = await dns.asyncquery.udp(txt, host, port=port, timeout=5)
        assert truncated.flags & dns.flags.TC
        whole = await dns.asyncquery.tcp(txt, host, port=port, timeout=5)
        assert whole.answer and not whole.flags & dns.flags.TC
        # Garbage over UDP and a TCP client that sends half a message and leaves.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for junk in (b"", b"\x00", b"\xff" * 40, b"\x12\x34\x81\x80" + b"\xff" * 30):
                sock.sendto(junk, (host, port))
        _, writer = await asyncio.open_connection(host, port)
        writer.write(b"\x00\x40\x12\x34")
        await writer.drain()
        writer.close()
        again = await dns.asyncquery.udp(request, host, port=port, timeout=5)
        assert [r.to_text() for r in again.answer[0]] == ["10.0.1.5"]
    finally:
        await server.stop()


async def test_tcp_clients_past_the_bound_are_closed_at_once(monkeypatch):
    monkeypatch.setattr(server_module, "TCP_CLIENTS", 1)
    monkeypatch.setattr(server_module, "TCP_IDLE_SECONDS", 60.0)
    server = DnsServer("127.0.0.1:0", responder())
    await server.start()
    try:
        host, port = server.address.rsplit(":", 1)
        request = dns.message.make_query("write.latitude.test.", "A")
        # One client answered once, then idle: its slot is certainly taken.
        first_reader, first = await asyncio.open_connection(host, int(port))
        wire = request.to_wire()
        first.write(len(wire).to_bytes(2, "big") + wire)
        await first.drain()
        length = int.from_bytes(await first_reader.readexactly(2), "big")
        assert dns.message.from_wire(await first_reader.readexactly(length)).answer
        with pytest.raises((EOFError, ConnectionError)):
            await dns.asyncquery.tcp(request, host, port=int(port), timeout=10)
        first.close()

        async def answered() -> bool:
            try:
                await dns.asyncquery.tcp(request, host, port=int(port), timeout=10)
            except (EOFError, ConnectionError):
                return False  # the first connection's slot not yet released
            return True

        for _ in range(100):
            if await answered():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the slot was never released")
    finally:
        await server.stop()


async def test_idle_tcp_clients_are_closed(monkeypatch):
    monkeypatch.setattr(server_module, "TCP_IDLE_SECONDS", 0.2)
    server = DnsServer("127.0.0.1:0", responder())
    await server.start()
    try:
        host, port = server.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"\x00")
        await writer.drain()
        async with asyncio.timeout(10):
            assert await reader.read() == b""
        writer.close()
    finally:
        await server.stop()
