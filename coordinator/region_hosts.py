"""Where each region's services may be: the hosts an agent's Hello and Reports may name.

Clients are routed to the endpoints an agent reports, and a standby is told to stream from the
primary's: an agent (or a stranger speaking as one) that names an address elsewhere would steer
every client, or a replication password, to it. The coordinator's ``region_hosts`` setting
lists, per region, the IP networks and host names its addresses may use; a Hello or Report
naming any other host is refused with INVALID_ARGUMENT naming the field. Host names are
compared as written, never resolved (a resolver is one more thing a stranger could answer
for). Without the setting nothing is checked, as before.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from coordinator.validation import InvalidMessage
from latitude.errors import ConfigError
from latitude.netaddr import parse_host_port
from latitude.v1 import agent_pb2, common_pb2

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_ALLOWED_KEPT = 1024


@dataclass(frozen=True, slots=True)
class HostRules:
    """One region's allowed hosts: IP networks (a bare address is a /32 or /128) and names."""

    networks: tuple[Network, ...] = ()
    names: frozenset[str] = frozenset()

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host.lower().rstrip(".") in self.names
        return any(address in network for network in self.networks)


@dataclass(frozen=True, slots=True)
class RegionHosts:
    rules: Mapping[str, HostRules] = field(default_factory=dict)
    # Upstreams already found allowed: every report names its standby's, and it rarely
    # changes, so the report stream parses each once (bounded: cleared when full).
    _allowed_upstreams: set[str] = field(default_factory=set, compare=False, repr=False)

    @classmethod
    def parse(cls, items: Iterable[str], regions: Collection[str]) -> RegionHosts:
        """``region=host`` items (a host: an IP address, a CIDR or a DNS name; a region
        may have many items) -> RegionHosts; ConfigError naming region_hosts otherwise.
        Once any region is listed, every region must be: none is left unchecked by omission."""
        networks: dict[str, list[Network]] = {}
        names: dict[str, set[str]] = {}
        for item in items:
            region, sep, host = (part.strip() for part in item.partition("="))
            if not sep or not region or not host:
                raise ConfigError(f"region_hosts: expected region=host-or-CIDR, got {item!r}")
            if region not in regions:
                raise ConfigError(
                    f"region_hosts: {region!r} is not one of the regions "
                    f"({', '.join(sorted(regions))})"
                )
            networks.setdefault(region, [])
            names.setdefault(region, set())
            try:
                networks[region].append(ipaddress.ip_network(host, strict=False))
            except ValueError:
                if not _is_host_name(host):
                    raise ConfigError(
                        f"region_hosts: {host!r} for {region} is neither an IP address, a CIDR "
                        "nor a host name"
                    ) from None
                names[region].add(host.lower().rstrip("."))
        missing = sorted(set(regions) - set(networks)) if networks else []
        if missing:
            raise ConfigError(
                f"region_hosts: no hosts for {', '.join(missing)} (once one region is listed, "
                "every region must be)"
            )
        return cls(
            {
                region: HostRules(tuple(networks[region]), frozenset(names[region]))
                for region in networks
            }
        )

    @property
    def checked(self) -> bool:
        return bool(self.rules)

    def check_hello(self, hello: agent_pb2.Hello) -> None:
        """InvalidMessage naming the first address of ``hello`` outside its region's hosts."""
        if not self.checked:
            return
        rules = self.rules[hello.region]
        for i, endpoint in enumerate(hello.endpoints):
            where = f"hello.endpoints[{i}].address"
            self._check(rules, _host(endpoint, where), where, hello.region)
        if hello.agent_address:
            host, _ = _host_port(hello.agent_address, "hello.agent_address")
            self._check(rules, host, "hello.agent_address", hello.region)

    def check_report(self, report: agent_pb2.Report) -> None:
        """InvalidMessage when the server ``report``'s database streams from is not on any
        region's hosts."""
        upstream = report.database.upstream_address
        if not self.checked or not upstream or upstream in self._allowed_upstreams:
            return
        where = "report.database.upstream_address"
        host, _ = _host_port(upstream, where)
        if not any(rules.allows(host) for rules in self.rules.values()):
            raise InvalidMessage(
                where, f"host {host} is on no region's configured hosts (region_hosts)"
            )
        if len(self._allowed_upstreams) >= _ALLOWED_KEPT:
            self._allowed_upstreams.clear()
        self._allowed_upstreams.add(upstream)

    @staticmethod
    def _check(rules: HostRules, host: str, where: str, region: str) -> None:
        if not rules.allows(host):
            raise InvalidMessage(
                where, f"host {host} is not one of {region}'s configured hosts (region_hosts)"
            )


def _host(endpoint: common_pb2.Endpoint, where: str) -> str:
    if endpoint.kind == common_pb2.ENDPOINT_KIND_HTTP:
        try:
            host = urlsplit(endpoint.address).hostname
        except ValueError:
            host = None
        if not host:
            raise InvalidMessage(where, "expected an http(s) URL with a host")
        return host
    return _host_port(endpoint.address, where)[0]


def _host_port(address: str, where: str) -> tuple[str, int]:
    try:
        return parse_host_port(address, where)
    except ConfigError as err:
        raise InvalidMessage(where, f"expected host:port, got {address[:128]!r}") from err


def _is_host_name(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return len(text) <= 253 and all(
        0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
        for label in labels
    )
