"""Where a client is: from its explicit location, or from its IP address."""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import iptocc

from latitude.errors import LatitudeError
from latitude.geo.centroids import country_centroid
from latitude.geo.city import CityDatabase
from latitude.geo.overrides import PrefixOverrides
from latitude.geo.validation import InvalidLocation, config_location, validate_location
from latitude.v1 import routing_pb2

EXPLICIT = routing_pb2.LOCATION_SOURCE_EXPLICIT
OVERRIDE = routing_pb2.LOCATION_SOURCE_OVERRIDE
IP_COUNTRY = routing_pb2.LOCATION_SOURCE_IP_COUNTRY
DEFAULT = routing_pb2.LOCATION_SOURCE_DEFAULT

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NO_OVERRIDES: Mapping[str, tuple[float, float]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Located:
    """A client's location and how it was found.

    ``source`` is a ``latitude.v1.routing_pb2.LocationSource`` value; ``detail`` says the same
    for a person ("London, GB (ip-city)", "default (private address 10.0.0.5)");
    ``network_prefix`` is the client's /24 (IPv4) or /48 (IPv6), "" without a client IP.
    """

    latitude: float
    longitude: float
    source: int
    detail: str
    network_prefix: str


class Locator:
    """Locates clients for routing, first match wins:

    explicit location > operator prefix overrides > (addresses that are not public: the
    default) > the MaxMind City database, if configured > iptocc's IP-to-country data and the
    country's centre > the default location.

    Results for an IP are cached (LRU, ``cache_size`` addresses), so a client's repeat requests
    cost a dict lookup. Safe to share between threads.
    """

    def __init__(
        self,
        default: tuple[float, float],
        overrides: Mapping[str, tuple[float, float]] = _NO_OVERRIDES,
        mmdb_path: str | os.PathLike[str] | None = None,
        *,
        cache_size: int = 65536,
    ) -> None:
        self._default = config_location(default, "default location")
        self._overrides = PrefixOverrides(overrides)
        self._city = CityDatabase(mmdb_path) if mmdb_path else None
        self._closed = False
        self._cached = functools.lru_cache(maxsize=cache_size)(self._locate_ip)

    def locate(
        self,
        ip: str | None = None,
        latitude: float | None = None,
        longitude: float | None = None,
    ) -> Located:
        """Where the client is. ``ip`` None or "" means no client IP; a location needs both
        ``latitude`` and ``longitude``. InvalidLocation (naming ``location.latitude``,
        ``location.longitude`` or ``client_ip``) for a malformed one."""
        if self._closed:
            raise LatitudeError("the Locator is closed")
        if latitude is not None or longitude is not None:
            lat, lon = validate_location(latitude, longitude)
            return Located(lat, lon, EXPLICIT, "explicit location", network_prefix(ip))
        if not ip:
            return self._fallback("no client IP", "")
        return self._cached(ip)

    def close(self) -> None:
        """Release the MaxMind database; further locate() calls raise LatitudeError."""
        self._closed = True
        self._cached.cache_clear()
        if self._city is not None:
            self._city.close()
            self._city = None

    def __enter__(self) -> Locator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _locate_ip(self, text: str) -> Located:
        ip, query = _parse_ip(text)
        prefix = _prefix_of(ip)
        override = self._overrides.match(ip) if self._overrides else None
        if override is not None:
            detail = f"override {override.network}"
            return Located(override.latitude, override.longitude, OVERRIDE, detail, prefix)
        reason = _not_public(ip)
        if reason is not None:
            return self._fallback(f"{reason} {ip}", prefix)
        city = self._city
        if city is not None:
            place = city.lookup(ip)
            if place is not None:
                return Located(*place, prefix)
        code = iptocc.country_code(query)
        if code is None:
            return self._fallback(f"no country known for {ip}", prefix)
        centroid = country_centroid(code)
        if centroid is None:
            return self._fallback(f"{code} for {ip} is not a country with a centre", prefix)
        return Located(
            centroid.latitude, centroid.longitude, IP_COUNTRY, f"{code} (ip-country)", prefix
        )

    def _fallback(self, reason: str, prefix: str) -> Located:
        return Located(*self._default, DEFAULT, f"default ({reason})", prefix)


def network_prefix(ip_text: str | None) -> str:
    """The client's network: its /24 for IPv4, its /48 for IPv6, as CIDR text ("" for no
    IP). InvalidLocation naming ``client_ip`` if ``ip_text`` is not an IP address."""
    if not ip_text:
        return ""
    return _prefix_of(_parse_ip(ip_text)[0])


# The longest address text worth quoting whole (an IPv6 address with a zone index).
_QUOTED = 64


def _parse_ip(text: str) -> tuple[IPAddress, str]:
    """The client's address, and text for it that iptocc reads (``text`` itself when it
    already is one; formatting an IPv6 address costs more than the lookup)."""
    if not isinstance(text, str):
        raise InvalidLocation("client_ip", f"must be an IP address as text, got {text!r}")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError as err:
        # Quoted in part: a status quoting a padded field whole passes a gRPC client's 8 KiB
        # metadata limit, and the client never sees the refusal.
        shown = repr(text[:_QUOTED]) + ("..." if len(text) > _QUOTED else "")
        raise InvalidLocation("client_ip", f"not an IPv4 or IPv6 address: {shown}") from err
    if ip.version == 6:
        # An IPv4 client seen through a dual-stack socket is an IPv4 client; a zone index
        # ("%eth0") names a local interface and says nothing about where the client is.
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
            return ip, str(ip)
        if ip.scope_id is not None:
            ip = ipaddress.IPv6Address(int(ip))
            return ip, str(ip)
    return ip, text


def _prefix_of(ip: IPAddress) -> str:
    if ip.version == 4:
        a, b, c, _ = ip.packed
        return f"{a}.{b}.{c}.0/24"
    # The five zero groups after a /48 are the longest zero run, so RFC 5952 text always
    # compresses them (with any zero groups just before them) into the final "::".
    number = int(ip)
    groups = [(number >> 112) & 0xFFFF, (number >> 96) & 0xFFFF, (number >> 80) & 0xFFFF]
    while groups and groups[-1] == 0:
        groups.pop()
    return ":".join(f"{group:x}" for group in groups) + "::/48"


def _not_public(ip: IPAddress) -> str | None:
    """Why no geolocation database can place ``ip`` (e.g. "private address"), or None."""
    if ip.is_global and not ip.is_multicast and not ip.is_reserved:
        return None
    # Most specific first: a loopback address is also private.
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return f"{kind.replace('_', '-')} address"
    return "non-global address"
