"""Operator rules that place network prefixes at a location; the most specific prefix wins."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from latitude.errors import ConfigError
from latitude.geo.validation import config_location


@dataclass(frozen=True, slots=True)
class PrefixOverride:
    network: str  # canonical CIDR text, e.g. "10.1.0.0/16"
    latitude: float
    longitude: float


class PrefixOverrides:
    """Longest-prefix match over the configured prefixes.

    A lookup probes one dict per distinct prefix length, longest first, so its cost grows with
    the number of lengths in use (a handful), not with the number of rules.
    """

    __slots__ = ("_v4", "_v6")

    def __init__(self, overrides: Mapping[str, tuple[float, float]]) -> None:
        tables: dict[tuple[int, int], dict[int, PrefixOverride]] = {}
        for text, location in overrides.items():
            network = _parse_network(text)
            latitude, longitude = config_location(location, f"location override {text}")
            table = tables.setdefault((network.version, network.prefixlen), {})
            key = int(network.network_address) >> (network.max_prefixlen - network.prefixlen)
            if key in table:
                raise ConfigError(
                    f"location override {text}: the same prefix as {table[key].network}"
                )
            table[key] = PrefixOverride(str(network), latitude, longitude)
        # (shift, table) longest prefix first; shifting an address right by (bits - prefixlen)
        # leaves exactly its network number at that length.
        self._v4 = [
            (32 - length, table)
            for (version, length), table in sorted(tables.items(), reverse=True)
            if version == 4
        ]
        self._v6 = [
            (128 - length, table)
            for (version, length), table in sorted(tables.items(), reverse=True)
            if version == 6
        ]

    def __bool__(self) -> bool:
        return bool(self._v4 or self._v6)

    def match(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> PrefixOverride | None:
        """The most specific override containing ``ip``, or None."""
        number = int(ip)
        for shift, table in self._v4 if ip.version == 4 else self._v6:
            found = table.get(number >> shift)
            if found is not None:
                return found
        return None


def _parse_network(text: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(text, str):
        raise ConfigError(f"location override {text!r}: the prefix must be CIDR text")
    try:
        return ipaddress.ip_network(text)
    except ValueError as err:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(
                f"location override {text!r}: not a network prefix in CIDR form"
                " (e.g. 10.1.0.0/16 or 2001:db8::/32)"
            ) from err
        raise ConfigError(
            f"location override {text!r}: host bits are set; did you mean {loose}?"
        ) from err
