"""Where a DNS client is: the EDNS Client Subnet option (RFC 7871) when a resolver sends one,
else the address the query came from; and the scope the answer then holds for.

Routing decides per network, not per address: a client is located by its /24 (IPv4) or /48
(IPv6), the prefixes latitude keeps client latencies for (``latitude.geo.network_prefix``).
So a client is always located by the first address of its network, truncated to that length
or to the subnet the resolver disclosed when it is shorter, and an answer that depends on the
client's location is valid for that /24 or /48: its scope prefix length. RFC 7871 allows a
scope longer than the source prefix (the resolver asked for a /16: the answer holds for the
/24 it was computed for, and says so). An answer that does not depend on where the client is
(``write``, the apex, NXDOMAIN, a strategy that needs no location) has scope 0: one cached
answer serves every client. A location override narrower than /24 is answered for the /24's
first address.

A query whose subnet says source prefix 0 asks that nothing about the client be used: it is
answered as a query without the option, by the resolver's own address, with scope 0.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import dns.edns

# The prefixes a routing decision is made for (latitude.geo.network_prefix's).
DECISION_PREFIX = {4: 24, 6: 48}


@dataclass(frozen=True, slots=True)
class ClientSubnet:
    """The network a query is answered for."""

    # The first address of the network the client is located by (text).
    address: str
    # Its prefix length: min(what the resolver disclosed, 24 or 48).
    prefix: int
    # The query's ECS option (None: located by the source address).
    option: dns.edns.ECSOption | None

    @property
    def decision_scope(self) -> int:
        """The scope prefix length of an answer that depends on where the client is."""
        if self.option is None or self.option.srclen == 0:
            return 0
        return DECISION_PREFIX[4 if self.option.family == 1 else 6]

    def echo(self, located: bool) -> dns.edns.ECSOption | None:
        """The option to put in the response (RFC 7871 7.2.1: the query's family, source
        prefix and address, with the scope set); None when the query had none."""
        if self.option is None:
            return None
        scope = self.decision_scope if located else 0
        return dns.edns.ECSOption(self.option.address, self.option.srclen, scope)


def client_subnet(options, source: str) -> ClientSubnet:
    """The subnet to answer for: the query's ECS option (``options``, the parsed EDNS
    options), else ``source``, the address the query came from.

    A query with two ECS options is ambiguous: ValueError (the server answers FORMERR).
    dnspython already refused a malformed option (unknown family, a prefix longer than the
    family, non-zero bits past the prefix) when it parsed the query.
    """
    subnets = [o for o in options if o.otype == dns.edns.OptionType.ECS]
    if len(subnets) > 1:
        raise ValueError("more than one EDNS Client Subnet option")
    option = subnets[0] if subnets else None
    if option is not None and not isinstance(option, dns.edns.ECSOption):
        raise ValueError("unreadable EDNS Client Subnet option")
    if option is not None and option.srclen > 0:
        address, length = _network(option.address, option.srclen)
    else:
        address, length = _network(source, 128)
    return ClientSubnet(address, length, option)


def located_by(subnet: bytes | None, source: str) -> tuple[str, int]:
    """What ``client_subnet`` says, from an option's data as sent (``coordinator.dns.wire``
    checked its form): (the network's first address, the answer's scope when it depends on
    where the client is)."""
    if subnet is None or subnet[2] == 0:
        return _network(source, 128)[0], 0
    if subnet[1] == 1:  # IPv4, the common case: no text parsed
        length = min(subnet[2], DECISION_PREFIX[4])
        value = int.from_bytes(subnet[4:] + bytes(8 - len(subnet)), "big")
        value &= (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
        return socket.inet_ntoa(value.to_bytes(4, "big")), DECISION_PREFIX[4]
    padded = subnet[4:] + bytes(20 - len(subnet))
    address, _ = _network(str(ipaddress.ip_address(padded)), subnet[2])
    return address, DECISION_PREFIX[6]


def _network(address: str, length: int) -> tuple[str, int]:
    """The first address of ``address``'s network of ``length`` bits (at most a decision's
    prefix), and that length."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    length = min(length, DECISION_PREFIX[ip.version])
    network = ipaddress.ip_network((ip, length), strict=False)
    return str(network.network_address), length


def key_bytes(subnet: ClientSubnet) -> bytes:
    """The subnet as a short cache key part (the query's own bytes carry the option)."""
    return ipaddress.ip_address(subnet.address).packed + bytes((subnet.prefix,))
