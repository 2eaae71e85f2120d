"""The DNS answer to one question, from the routing table this replica serves: pure, so that
its unit tests need no socket and every replica answers alike.

Names under the zone (``latitude.test.`` in the local stack):

- ``write``: A/AAAA of the write region's PostgreSQL endpoint, wherever the client is. While
  there is no write region (a failover is under way) the name has no address: NOERROR with an
  empty answer and the SOA, whose negative TTL is the short TTL, so resolvers ask again within
  seconds (SERVFAIL would send them to the other coordinators, which know no better, and some
  cache it longer). Its TXT says why.
- ``read``: A/AAAA of the PostgreSQL endpoints of the regions a read from this client goes to,
  in the order and by the decision Resolve makes for the client's location under the cluster's
  strategy (latitude.routing.Resolver, the same code); only regions with a share of the
  traffic (weight > 0), so several records when the strategy spreads load.
- ``<service>``: the same decision, each region's endpoint named ``<service>`` (regions
  without one are left out; when no region with a share has one, the first fallback in the
  decision's order that has it); NXDOMAIN when no region has such an endpoint.
- ``<service>.<region>``: that region's ``<service>`` endpoint, whatever its health (the
  targets SRV records name).
- ``_<proto>._tcp.<name>`` for each of the above (e.g. ``_postgresql._tcp.write``): SRV, one
  per region, with the port; all at one priority, SRV weights in proportion to the decision's
  weights (x1000), the best region first; addresses in the additional section.
- TXT at each name: the decision's reason, the table version, the strategy applied, the write
  region, one string per target (region, weight, state, endpoints, distance and estimated
  latency) and where the estimates came from.
- The apex: SOA and NS (``ns.<zone>``, whose A/AAAA are this server's own address when it
  listens on a specific one).

Anything else in the zone: NXDOMAIN; outside it, and zone transfers: REFUSED (not
authoritative, no recursion, no copy of a zone made per question);
before the first table: SERVFAIL. Endpoints given as host names rather than addresses are
left out of A/AAAA answers (a CNAME cannot stand beside the other records of a multi-region
answer) and named directly as SRV targets.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.rrset

from latitude.enums import short_name
from latitude.errors import ConfigError
from latitude.netaddr import parse_host_port
from latitude.routing import Resolver
from latitude.routing.resolve import ClientLocation
from latitude.v1 import common_pb2, routing_pb2

IN = dns.rdataclass.IN
A, AAAA, SRV, TXT = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SRV, dns.rdatatype.TXT
SOA, NS, ANY = dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.ANY
# Zone transfers: the zone is made from the table on each question, there is nothing to copy.
TRANSFERS = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
POSTGRES_KIND = common_pb2.ENDPOINT_KIND_POSTGRES
POSTGRES_SERVICE = "postgres"
# Names the zone reserves: a service of one of these names is not served.
WRITE, READ, NAMESERVER = "write", "read", "ns"
# The apex records change only with the configuration: cached longer than the answers.
APEX_TTL = 300
# What one TXT string may hold (RFC 1035: a length byte).
TXT_STRING_MAX = 255
# Answers kept per table in a caller's memo (a few per name and type and region order).
MEMO_ENTRIES = 4096
_LOCATED = (routing_pb2.STRATEGY_GEOGRAPHIC, routing_pb2.STRATEGY_LATENCY)


@dataclass(frozen=True, slots=True)
class Zone:
    """What the server is authoritative for."""

    origin: dns.name.Name
    # TTL of every answer that comes from the routing table, and the SOA's negative TTL.
    ttl: int = 5
    # ns.<zone>'s addresses: this server's own, when it listens on a specific one.
    nameservers: tuple[str, ...] = ()


@dataclass(slots=True)
class Answer:
    rcode: int = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    # The answer depends on where the client is (the ECS scope is then the client's network).
    located: bool = False
    # Kept in the caller's memo and returned to every client routed alike (not to be changed).
    shared: bool = False


def answer(
    zone: Zone,
    name: dns.name.Name,
    rdtype: int,
    resolver: Resolver | None,
    client: ClientLocation | None,
    memo: dict | None = None,
) -> Answer:
    """The answer to (``name``, ``rdtype``, class IN) for a client at ``client`` from the
    table ``resolver`` was built from (None: no table yet).

    ``memo``: the caller's dict for this one table, where answers that follow from a decision
    are kept by what they show of it (the regions chosen, their weights and endpoints), so
    that a client in a network never seen, routed like one seen before, gets the same Answer
    object (records not built again, and the caller may keep its rendering by identity). A
    TXT answer shows the whole decision and is never kept. Returned answers are shared: not
    to be changed."""
    if not name.is_subdomain(zone.origin) or rdtype in TRANSFERS:
        return Answer(rcode=dns.rcode.REFUSED)
    if resolver is None:
        return Answer(rcode=dns.rcode.SERVFAIL)
    labels = [label.decode("ascii", "replace").lower() for label in name.relativize(zone.origin)]
    if name == zone.origin:
        labels = []
    table = resolver.table
    if not labels:
        return _apex(zone, rdtype, table)
    if labels == [NAMESERVER]:
        return _addresses_at(zone, name, rdtype, table, zone.nameservers)
    srv = len(labels) >= 3 and labels[0].startswith("_") and labels[1] in ("_tcp", "_udp")
    host = labels[2:] if srv else labels
    if len(host) == 2:
        service, region = host
        route = next((r for r in table.regions if r.region == region), None)
        endpoint = _endpoint(route, service) if route is not None else None
        if endpoint is None:
            return _nxdomain(zone, table)
        if srv:
            return _srv(zone, name, rdtype, table, [(route.region, 1.0, endpoint)], service)
        found = [_host(endpoint)] if rdtype in (A, AAAA, ANY) else []
        return _addresses_at(zone, name, rdtype, table, [h for h in found if h])
    if len(host) != 1:
        return _nxdomain(zone, table)
    (label,) = host
    if label == NAMESERVER:
        return _nxdomain(zone, table)
    service = POSTGRES_SERVICE if label in (WRITE, READ) else label
    if label not in (WRITE, READ) and not any(_endpoint(r, service) for r in table.regions):
        return _nxdomain(zone, table)
    intent = routing_pb2.INTENT_WRITE if label == WRITE else routing_pb2.INTENT_READ
    decision = resolver.resolve(client=client, intent=intent)
    located = intent != routing_pb2.INTENT_WRITE and decision.strategy in _LOCATED
    having = [(t.region, t.weight, e) for t in decision.targets if (e := _endpoint(t, service))]
    # The regions with a share of the traffic; when none of those has the service, the first
    # fallback (in the decision's order) that has it.
    chosen = [c for c in having if c[1] > 0] or having[:1]
    key = None
    if memo is not None and rdtype != TXT:
        # Addresses show the regions and their order; SRV records their weights too.
        shown = tuple((region, weight if srv else 0, e.address) for region, weight, e in chosen)
        key = (name, rdtype, srv, service, located, shown)
        kept = memo.get(key)
        if kept is not None:
            return kept
    if srv:
        result = _srv(zone, name, rdtype, table, chosen, service)
    elif rdtype == TXT:
        result = Answer(answer=[_txt(zone, name, decision)])
    else:
        hosts = [_host(endpoint) for _, _, endpoint in chosen]
        result = _addresses_at(zone, name, rdtype, table, [h for h in hosts if h])
    result.located = located
    if key is not None:
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        memo[key] = result
        result.shared = True
    return result


def _apex(zone: Zone, rdtype: int, table: routing_pb2.RoutingTable) -> Answer:
    found = Answer()
    if rdtype in (SOA, ANY):
        found.answer.append(_soa(zone, table))
    if rdtype in (NS, ANY):
        ns = dns.rrset.from_text(zone.origin, APEX_TTL, IN, NS, _ns_name(zone).to_text())
        found.answer.append(ns)
    if not found.answer:
        found.authority.append(_soa(zone, table))
    return found


def _addresses_at(zone, name, rdtype, table, hosts) -> Answer:
    """A/AAAA records of ``hosts`` (addresses as text) at ``name``; NODATA for other types."""
    found = Answer()
    for kind, version in ((A, 4), (AAAA, 6)):
        if rdtype not in (kind, ANY):
            continue
        ips = [h for h in hosts if ipaddress.ip_address(h).version == version]
        if ips:
            found.answer.append(dns.rrset.from_text_list(name, zone.ttl, IN, kind, _unique(ips)))
    if not found.answer:
        found.authority.append(_soa(zone, table))
    return found


def _srv(zone, name, rdtype, table, chosen, service: str) -> Answer:
    if rdtype not in (SRV, ANY):
        return Answer(authority=[_soa(zone, table)])
    found = Answer()
    records, glue = [], {}
    for region, weight, endpoint in chosen:
        split = _split(endpoint)
        if split is None:
            continue
        host, port = split
        if _is_ip(host):
            target = dns.name.from_text(f"{service}.{region}", zone.origin)
            glue.setdefault(target, host)
        else:
            target = dns.name.from_text(host)
        records.append(f"10 {max(1, round(weight * 1000))} {port} {target.to_text()}")
    if not records:
        return Answer(authority=[_soa(zone, table)])
    found.answer.append(dns.rrset.from_text_list(name, zone.ttl, IN, SRV, records))
    for target, host in glue.items():
        kind = A if ipaddress.ip_address(host).version == 4 else AAAA
        found.additional.append(dns.rrset.from_text(target, zone.ttl, IN, kind, host))
    return found


def _txt(zone: Zone, name: dns.name.Name, decision: routing_pb2.RoutingDecision):
    strategy = short_name(routing_pb2.Strategy, decision.strategy, lower=True)
    strings = [
        f"reason={decision.reason}",
        f"table_version={decision.table_version}",
        f"strategy={strategy}",
        f"write_region={decision.write_region}",
    ]
    for target in decision.targets:
        state = short_name(common_pb2.RegionState, target.state, lower=True)
        where = ",".join(f"{e.name}={e.address}" for e in target.endpoints)
        text = f"target={target.region} weight={target.weight:.3f} state={state} {where}"
        if target.HasField("distance_km"):
            text += f" distance_km={target.distance_km:.0f}"
        if target.HasField("estimated_latency_seconds"):
            text += f" latency_ms={target.estimated_latency_seconds * 1000:.1f}"
        strings.append(text)
    if decision.latency_basis:
        strings.append(f"latency_basis={decision.latency_basis}")
    rdata = dns.rdtypes.ANY.TXT.TXT(IN, TXT, [s.encode("utf-8")[:TXT_STRING_MAX] for s in strings])
    rrset = dns.rrset.RRset(name, IN, TXT)
    rrset.add(rdata, zone.ttl)
    return rrset


def _nxdomain(zone: Zone, table: routing_pb2.RoutingTable) -> Answer:
    return Answer(rcode=dns.rcode.NXDOMAIN, authority=[_soa(zone, table)])


def _soa(zone: Zone, table: routing_pb2.RoutingTable) -> dns.rrset.RRset:
    """The zone's SOA: its serial the table version (mod 2**32), its negative TTL the short
    TTL (a name that has no address during a failover is asked again soon)."""
    rdata = dns.rdtypes.ANY.SOA.SOA(
        IN,
        SOA,
        _ns_name(zone),
        dns.name.from_text("hostmaster", zone.origin),
        table.version % (1 << 32),
        APEX_TTL,
        APEX_TTL,
        7 * 86400,
        zone.ttl,
    )
    rrset = dns.rrset.RRset(zone.origin, IN, SOA)
    rrset.add(rdata, zone.ttl)
    return rrset


def _ns_name(zone: Zone) -> dns.name.Name:
    return dns.name.from_text(NAMESERVER, zone.origin)


def _endpoint(holder, service: str) -> common_pb2.Endpoint | None:
    """A region's (RegionRoute or Target) endpoint for ``service``: the PostgreSQL one for
    ``postgres``, else the one of that name."""
    for endpoint in holder.endpoints:
        if endpoint.name == service:
            return endpoint
        if service == POSTGRES_SERVICE and endpoint.kind == POSTGRES_KIND:
            return endpoint
    return None


def _split(endpoint: common_pb2.Endpoint) -> tuple[str, int] | None:
    """The endpoint's (host, port); None when its address is no host:port (an HTTP URL)."""
    try:
        return parse_host_port(endpoint.address, "endpoint", any_port=True)
    except ConfigError:
        return None


def _host(endpoint: common_pb2.Endpoint) -> str | None:
    """The endpoint's IP address (text); None when it is a host name or unreadable."""
    split = _split(endpoint)
    return split[0] if split is not None and _is_ip(split[0]) else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
