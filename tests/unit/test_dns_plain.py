"""The responder's plain-query path (no dnspython message either way) against its general
path: the same bytes for every kind of question, client and transport; what it leaves to the
general path; and the answers it shares between networks routed alike."""

from __future__ import annotations

import itertools

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import pytest

from coordinator.dns import answer as answer_module
from coordinator.dns import wire
from coordinator.dns.responder import Responder
from latitude.routing import Resolver
from latitude.v1 import routing_pb2
from tests.unit.routing_tables import AP, EU, US, make_table
from tests.unit.test_dns_answer import region
from tests.unit.test_dns_responder import ZONE

NAMES = [
    "read.latitude.test.",
    "ReAd.LATITUDE.test.",
    "write.latitude.test.",
    "api.latitude.test.",
    "api.us-east-1.latitude.test.",
    "_postgresql._tcp.read.latitude.test.",
    "_postgresql._tcp.write.latitude.test.",
    "latitude.test.",
    "ns.latitude.test.",
    "nothing.latitude.test.",
    "example.com.",
]
TYPES = ["A", "AAAA", "SRV", "TXT", "SOA", "NS", "ANY", "MX", "AXFR"]
SUBNETS = [None, "81.2.69.0/24", "8.8.0.0/16", "202.166.126.128/25", "2001:db8::/48", "0.0.0.0/0"]


class Tables:
    def __init__(self, resolver: Resolver | None) -> None:
        self.resolver = resolver


def tables(strategy=None) -> Tables:
    statuses = (region(US, capacity=300), region(EU, capacity=100), region(AP, capacity=200))
    overrides = {} if strategy is None else {"strategy": strategy}
    return Tables(Resolver(make_table(statuses, version=3, **overrides)))


def general(found: Responder, monkeypatch) -> Responder:
    monkeypatch.setattr(wire, "read_query", lambda data: None)
    return found


def packet(name: str, rdtype: str, subnet: str | None, edns: int | None, rd: bool, payload=1232):
    options = []
    if subnet is not None:
        address, length = subnet.split("/")
        options.append(dns.edns.ECSOption(address, int(length)))
    message = dns.message.make_query(
        name, rdtype, use_edns=edns, options=options or None, payload=payload
    )
    if not rd:
        message.flags &= ~dns.flags.RD
    return message.to_wire()


@pytest.mark.parametrize("strategy", [None, routing_pb2.STRATEGY_WEIGHTED])
def test_the_plain_path_answers_byte_for_byte_as_the_general_one(monkeypatch, strategy):
    routing = tables(strategy)
    plain = Responder(ZONE, routing)
    packets = [
        packet(name, rdtype, subnet, 0 if subnet else edns, rd)
        for name, rdtype, subnet, edns, rd in itertools.product(
            NAMES, TYPES, SUBNETS, (None, 0), (True, False)
        )
        if not (subnet and edns is None)
    ]
    packets.append(packet("read.latitude.test.", "TXT", None, 0, True, payload=512))
    sources = ["81.2.69.160", "8.8.8.8", "2001:db8:5::1"]
    expected = {}
    for data, source, udp in itertools.product(packets, sources, (True, False)):
        assert wire.read_query(data) is not None
        expected[data, source, udp] = plain.respond(data, source, udp=udp)
    monkeypatch.setattr(wire, "read_query", lambda data: None)
    reference = Responder(ZONE, routing)
    for (data, source, udp), got in expected.items():
        assert got == reference.respond(data, source, udp=udp), (
            dns.message.from_wire(data).question,
            source,
            udp,
        )


def test_before_the_first_table_it_is_servfail_there_too(monkeypatch):
    data = packet("read.latitude.test.", "A", "81.2.69.0/24", 0, True)
    got = Responder(ZONE, Tables(None)).respond(data, "127.0.0.1", udp=True)
    monkeypatch.setattr(wire, "read_query", lambda data: None)
    assert got == Responder(ZONE, Tables(None)).respond(data, "127.0.0.1", udp=True)


def ecs(data: bytes) -> dns.edns.GenericOption:
    return dns.edns.GenericOption(dns.edns.OptionType.ECS, data)


@pytest.mark.parametrize(
    "data",
    [
        packet("read.latitude.test.", "A", None, 1, True),  # EDNS version 1
        packet("read.latitude.test.", "A", None, None, True)[:-1],  # cut short
        packet("read.latitude.test.", "A", None, None, True) + b"\x00",  # trailing junk
        dns.message.make_query("read.latitude.test.", "A", "CH").to_wire(),  # class CHAOS
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # pointer
        dns.message.make_query(
            "read.latitude.test.", "A", use_edns=0, options=[dns.edns.NSIDOption(b"")]
        ).to_wire(),  # another option
        dns.message.make_query(
            "read.latitude.test.", "A", use_edns=0, options=[ecs(b"\x00\x03\x18\x00\x01\x02\x03")]
        ).to_wire(),  # family 3
        dns.message.make_query(
            "read.latitude.test.", "A", use_edns=0, options=[ecs(b"\x00\x01\x21\x00\x01\x02\x03")]
        ).to_wire(),  # /33 in IPv4
        dns.message.make_query(
            "read.latitude.test.", "A", use_edns=0, options=[ecs(b"\x00\x01\x18\x00\x51\x02")]
        ).to_wire(),  # two bytes for a /24
        dns.message.make_query(
            "read.latitude.test.", "A", use_edns=0, options=[ecs(b"\x00\x01\x17\x00\x51\x02\x45")]
        ).to_wire(),  # a bit set past a /23
    ],
)
def test_anything_unusual_is_left_to_the_general_path(data):
    assert wire.read_query(data) is None


def test_networks_routed_alike_share_one_answer(monkeypatch):
    built = []
    real = answer_module._addresses_at
    monkeypatch.setattr(
        answer_module, "_addresses_at", lambda *args: built.append(args[1]) or real(*args)
    )
    found = Responder(ZONE, tables())
    for network in ("81.2.69.0", "81.2.70.0", "81.2.71.0", "8.8.8.0", "8.8.9.0"):
        data = packet("read.latitude.test.", "A", f"{network}/24", 0, True)
        reply = dns.message.from_wire(found.respond(data, "127.0.0.1", udp=True))
        assert reply.options[0].address == network and reply.options[0].scopelen == 24
    # Two decisions (London's networks to eu-west-1, New York's to us-east-1): two built.
    assert built == [dns.name.from_text("read.latitude.test.")] * 2


@pytest.mark.parametrize("plain", [True, False])
def test_records_keep_the_decisions_order(monkeypatch, plain):
    if not plain:
        monkeypatch.setattr(wire, "read_query", lambda data: None)
    routing = tables(routing_pb2.STRATEGY_WEIGHTED)
    data = packet("read.latitude.test.", "A", None, None, True)
    for _ in range(20):  # a fresh responder each time: nothing kept
        reply = dns.message.from_wire(Responder(ZONE, routing).respond(data, "8.8.8.8", udp=True))
        assert [r.to_text() for r in reply.answer[0]] == ["10.0.1.5", "10.0.2.5"]


def test_answers_made_for_one_query_are_not_kept():
    found = Responder(ZONE, tables())
    for n in range(50):
        data = packet(f"nothing-{n}.latitude.test.", "A", f"10.{n}.0.0/24", 0, True)
        assert dns.message.from_wire(found.respond(data, "127.0.0.1", udp=True)).rcode() == 3
    data = packet("read.latitude.test.", "TXT", "10.0.0.0/24", 0, True)
    found.respond(data, "127.0.0.1", udp=False)
    assert found._bodies == {}
