"""The coordinator's DNS front end: an authoritative responder for one zone, answering from
the routing table every replica holds, so that clients that only speak DNS are routed by the
same decisions as those that call Resolve.

``answer`` decides (pure: question, table, client location -> records and rcode), ``ecs``
says where the client is and for which network the answer holds, ``responder`` parses,
renders and keeps answers, ``wire`` reads and writes plain queries and answers as bytes,
``ratelimit`` decides which UDP responses go out (pure), ``server`` listens on UDP and TCP.
"""

from __future__ import annotations

import ipaddress

import dns.name

from coordinator.dns.answer import Zone
from coordinator.dns.ratelimit import RateLimit
from coordinator.dns.responder import Responder
from coordinator.dns.server import DnsServer
from latitude.netaddr import parse_host_port

__all__ = ["DnsServer", "Responder", "Zone", "dns_server"]


def dns_server(config, tables) -> DnsServer | None:
    """The listener ``config`` (a CoordinatorConfig) asks for, answering from ``tables`` (the
    replica's TableCache); None when ``dns_address`` is empty."""
    if not config.dns_address:
        return None
    host, _ = parse_host_port(config.dns_address, "dns_address", any_port=True)
    # ns.<zone> is this server when it listens on one address (not a wildcard).
    own = () if ipaddress.ip_address(host).is_unspecified else (host,)
    zone = Zone(dns.name.from_text(config.dns_zone), ttl=config.dns_ttl, nameservers=own)
    limit = RateLimit(
        responses_per_second=config.dns_rate_limit,
        window=config.dns_rate_limit_window,
        slip=config.dns_rate_limit_slip,
    )
    responder = Responder(zone, tables, mmdb_path=config.geoip_city_database, rate_limit=limit)
    return DnsServer(config.dns_address, responder)
