"""The DNS answer to one question from a routing table: names, types, rcodes and the ECS
scope, exactly; and the same decision Resolve makes for the same client."""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from coordinator.dns.answer import Zone, answer
from latitude.geo import Located
from latitude.routing import Resolver
from latitude.v1 import common_pb2, routing_pb2
from tests.unit.routing_tables import AP, EU, US, make_table, status

ZONE = Zone(dns.name.from_text("latitude.test."), ttl=5, nameservers=("127.0.0.9",))
ADDRESSES = {US: "10.0.1.5", EU: "10.0.2.5", AP: "2001:db8::5"}
EXPLICIT = routing_pb2.LOCATION_SOURCE_EXPLICIT
LONDON = Located(51.51, -0.13, EXPLICIT, "london", "81.2.69.0/24")
SINGAPORE = Located(1.29, 103.85, EXPLICIT, "singapore", "202.166.126.0/24")
NEW_YORK = Located(40.71, -74.01, EXPLICIT, "new york", "8.8.8.0/24")
UNHEALTHY = common_pb2.REGION_STATE_UNHEALTHY


def region(name: str, state=common_pb2.REGION_STATE_HEALTHY, **fields):
    """A region whose database listens on an address (not a name), with an API endpoint in
    the US only."""
    result = status(name, state, **fields)
    del result.endpoints[:]
    host = ADDRESSES[name]
    host = f"[{host}]" if ":" in host else host
    result.endpoints.add(
        name="postgres", kind=common_pb2.ENDPOINT_KIND_POSTGRES, address=f"{host}:5432"
    )
    if name == US:
        result.endpoints.add(name="api", kind=common_pb2.ENDPOINT_KIND_HTTP, address="10.0.1.6:80")
    return result


def resolver(*statuses, **overrides) -> Resolver:
    statuses = statuses or (region(US), region(EU), region(AP))
    return Resolver(make_table(statuses, **overrides))


def ask(name: str, rdtype: str, client=LONDON, routing=None):
    routing = resolver() if routing is None else routing
    return answer(ZONE, dns.name.from_text(name), dns.rdatatype.from_text(rdtype), routing, client)


def texts(rrsets) -> list[str]:
    return [line for rrset in rrsets for line in rrset.to_text().splitlines()]


def test_write_is_the_write_regions_database_wherever_the_client_is():
    for client in (LONDON, SINGAPORE, None):
        found = ask("write.latitude.test.", "A", client)
        assert found.rcode == dns.rcode.NOERROR
        assert texts(found.answer) == ["write.latitude.test. 5 IN A 10.0.1.5"]
        assert not found.located  # one answer for every network: ECS scope 0
        assert found.authority == []


def test_write_has_no_address_during_a_failover_and_says_why():
    routing = resolver(write_region="", failover_in_progress=True)
    found = ask("write.latitude.test.", "A", routing=routing)
    assert found.rcode == dns.rcode.NOERROR and found.answer == []
    assert texts(found.authority) == [
        "latitude.test. 5 IN SOA ns.latitude.test. hostmaster.latitude.test. 7 300 300 604800 5"
    ]
    why = texts(ask("write.latitude.test.", "TXT", routing=routing).answer)[0]
    assert '"reason=no writable primary: a failover is in progress, writes must wait"' in why


def test_read_sends_each_continent_to_its_nearest_region():
    assert texts(ask("read.latitude.test.", "A", LONDON).answer) == [
        "read.latitude.test. 5 IN A 10.0.2.5"
    ]
    assert texts(ask("read.latitude.test.", "A", NEW_YORK).answer) == [
        "read.latitude.test. 5 IN A 10.0.1.5"
    ]
    singapore = ask("read.latitude.test.", "AAAA", SINGAPORE)
    assert texts(singapore.answer) == ["read.latitude.test. 5 IN AAAA 2001:db8::5"]
    assert singapore.located  # ECS scope: the client's network
    # Singapore's region has no IPv4 address: no A records (NODATA), not another region's.
    nodata = ask("read.latitude.test.", "A", SINGAPORE)
    assert nodata.rcode == dns.rcode.NOERROR and nodata.answer == []
    assert [r.rdtype for r in nodata.authority] == [dns.rdatatype.SOA]


def test_read_is_the_decision_resolve_makes_for_that_client():
    routing = resolver(region(US), region(EU, capacity_utilization=0.5), region(AP))
    for client in (LONDON, SINGAPORE, NEW_YORK):
        decision = routing.resolve(client=client)
        srv = ask("_postgresql._tcp.read.latitude.test.", "SRV", client, routing)
        regions = [r.target.labels[1].decode() for r in srv.answer[0]]
        assert regions == [t.region for t in decision.targets if t.weight > 0]


def test_several_records_in_weight_order_when_the_strategy_spreads_load():
    routing = resolver(
        region(US, capacity=300),
        region(EU, capacity=100),
        region(AP, capacity=200),
        strategy=routing_pb2.STRATEGY_WEIGHTED,
    )
    found = ask("read.latitude.test.", "A", LONDON, routing)
    assert texts(found.answer) == [
        "read.latitude.test. 5 IN A 10.0.1.5",
        "read.latitude.test. 5 IN A 10.0.2.5",
    ]
    assert not found.located  # weighted routing does not depend on where the client is
    srv = ask("_postgresql._tcp.read.latitude.test.", "SRV", LONDON, routing)
    assert srv.answer[0].ttl == 5
    assert [r.to_text() for r in srv.answer[0]] == [
        "10 500 5432 postgres.us-east-1.latitude.test.",
        "10 333 5432 postgres.ap-southeast-1.latitude.test.",
        "10 167 5432 postgres.eu-west-1.latitude.test.",
    ]
    assert texts(srv.additional) == [
        "postgres.us-east-1.latitude.test. 5 IN A 10.0.1.5",
        "postgres.ap-southeast-1.latitude.test. 5 IN AAAA 2001:db8::5",
        "postgres.eu-west-1.latitude.test. 5 IN A 10.0.2.5",
    ]


def test_an_unhealthy_region_loses_its_clients_to_the_next_nearest():
    routing = resolver(region(US), region(EU, UNHEALTHY), region(AP))
    assert texts(ask("read.latitude.test.", "A", LONDON, routing).answer) == [
        "read.latitude.test. 5 IN A 10.0.1.5"
    ]


def test_txt_carries_the_reason_the_version_and_every_target():
    found = ask("read.latitude.test.", "TXT", LONDON)
    assert found.rcode == dns.rcode.NOERROR and found.located
    (rdata,) = found.answer[0]
    strings = [s.decode() for s in rdata.strings]
    assert strings[:4] == [
        "reason=nearest healthy region to 51.51,-0.13 (london): eu-west-1, 11.9 ms est.",
        "table_version=7",
        "strategy=geographic",
        "write_region=us-east-1",
    ]
    assert strings[4:] == [
        "target=eu-west-1 weight=1.000 state=healthy postgres=10.0.2.5:5432"
        " distance_km=463 latency_ms=11.9",
        "target=us-east-1 weight=0.000 state=healthy postgres=10.0.1.5:5432,api=10.0.1.6:80"
        " distance_km=5917 latency_ms=93.8",
        "target=ap-southeast-1 weight=0.000 state=healthy postgres=[2001:db8::5]:5432"
        " distance_km=10848 latency_ms=167.7",
        "latency_basis=distance only",
    ]


def test_a_service_is_its_endpoint_in_the_regions_the_decision_picks():
    # Only the US has "api": a London client, all of whose reads go to Ireland, gets it
    # there, the nearest fallback with one.
    assert texts(ask("api.latitude.test.", "A", LONDON).answer) == [
        "api.latitude.test. 5 IN A 10.0.1.6"
    ]
    per_region = ask("postgres.eu-west-1.latitude.test.", "A")
    assert texts(per_region.answer) == ["postgres.eu-west-1.latitude.test. 5 IN A 10.0.2.5"]
    assert texts(ask("_api._tcp.api.us-east-1.latitude.test.", "SRV").answer) == [
        "_api._tcp.api.us-east-1.latitude.test. 5 IN SRV 10 1000 80 api.us-east-1.latitude.test."
    ]


def test_srv_for_writes_names_the_port():
    (srv,) = ask("_postgresql._tcp.write.latitude.test.", "SRV").answer
    assert srv.name.to_text() == "_postgresql._tcp.write.latitude.test."
    assert [r.to_text() for r in srv] == ["10 1000 5432 postgres.us-east-1.latitude.test."]


def test_endpoints_named_by_host_name_are_srv_targets_not_addresses():
    routing = resolver(status(US), status(EU), status(AP))  # "<region>.db.internal:5432"
    found = ask("read.latitude.test.", "A", LONDON, routing)
    assert found.answer == [] and found.rcode == dns.rcode.NOERROR
    assert texts(ask("_postgresql._tcp.read.latitude.test.", "SRV", LONDON, routing).answer) == [
        "_postgresql._tcp.read.latitude.test. 5 IN SRV 10 1000 5432 eu-west-1.db.internal."
    ]


@pytest.mark.parametrize(
    "name",
    [
        "nothing.latitude.test.",
        "api.eu-west-1.latitude.test.",  # no such endpoint there
        "postgres.mars-1.latitude.test.",
        "a.b.c.latitude.test.",
        "ns.write.latitude.test.",
    ],
)
def test_unknown_names_in_the_zone_are_nxdomain_with_the_soa(name):
    found = ask(name, "A")
    assert found.rcode == dns.rcode.NXDOMAIN and found.answer == []
    assert [r.rdtype for r in found.authority] == [dns.rdatatype.SOA]
    assert not found.located


def test_names_outside_the_zone_and_zone_transfers_are_refused():
    for name, rdtype in [
        ("example.com.", "A"),
        ("test.", "A"),
        ("latitude.test.example.", "A"),
        ("latitude.test.", "AXFR"),
        ("latitude.test.", "IXFR"),
    ]:
        found = ask(name, rdtype)
        assert found.rcode == dns.rcode.REFUSED
        assert found.answer == found.authority == []


def test_the_apex_has_soa_and_ns_and_ns_has_our_address():
    soa = ask("latitude.test.", "SOA")
    assert texts(soa.answer) == [
        "latitude.test. 5 IN SOA ns.latitude.test. hostmaster.latitude.test. 7 300 300 604800 5"
    ]
    assert texts(ask("latitude.test.", "NS").answer) == [
        "latitude.test. 300 IN NS ns.latitude.test."
    ]
    assert texts(ask("ns.latitude.test.", "A").answer) == ["ns.latitude.test. 5 IN A 127.0.0.9"]
    nodata = ask("latitude.test.", "A")
    assert nodata.rcode == dns.rcode.NOERROR and nodata.answer == []
    assert [r.rdtype for r in nodata.authority] == [dns.rdatatype.SOA]


def test_names_are_case_insensitive():
    assert texts(ask("WRITE.Latitude.TEST.", "A").answer) == [
        "WRITE.Latitude.TEST. 5 IN A 10.0.1.5"
    ]


def test_no_table_yet_is_servfail():
    found = answer(ZONE, dns.name.from_text("write.latitude.test."), dns.rdatatype.A, None, None)
    assert found.rcode == dns.rcode.SERVFAIL and found.answer == []
