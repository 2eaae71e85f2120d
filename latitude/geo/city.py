"""The operator's MaxMind City database (GeoIP2-City, GeoLite2-City or the same layout)."""

from __future__ import annotations

import ipaddress
import math
import os

import maxminddb

from latitude.errors import ConfigError
from latitude.geo.centroids import country_centroid
from latitude.v1 import routing_pb2

IP_CITY = routing_pb2.LOCATION_SOURCE_IP_CITY
IP_COUNTRY = routing_pb2.LOCATION_SOURCE_IP_COUNTRY

# (latitude, longitude, LocationSource, detail)
Place = tuple[float, float, int, str]


class CityDatabase:
    """Reads records shaped like GeoIP2-City's: ``city.names``, ``country.iso_code`` and
    ``location.latitude``/``longitude``. Safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        where = f"MaxMind database {self.path}"
        if not os.path.exists(self.path):
            raise ConfigError(f"{where}: no such file")
        if os.path.isdir(self.path):
            raise ConfigError(f"{where}: is a directory, not a .mmdb file")
        try:
            self._reader = maxminddb.open_database(self.path)
        except OSError as err:
            raise ConfigError(f"{where}: cannot read it: {err.strerror or err}") from err
        except (maxminddb.InvalidDatabaseError, ValueError) as err:
            raise ConfigError(f"{where}: not a MaxMind DB (.mmdb) file") from err
        self.database_type = self._reader.metadata().database_type
        if "City" not in self.database_type and "Country" not in self.database_type:
            self._reader.close()
            raise ConfigError(
                f"{where}: a {self.database_type!r} database has no locations;"
                " configure a City database such as GeoLite2-City"
            )

    def lookup(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Place | None:
        """The city, else the country's centre, recorded for ``ip``; None when the database
        has neither (the caller then asks the next source)."""
        try:
            record = self._reader.get(ip)
        except ValueError:  # an IPv6 address in an IPv4-only database
            return None
        if not isinstance(record, dict):
            return None
        code = _get(record, "country", "iso_code")
        city = _english_name(_get(record, "city", "names"))
        latitude = _get(record, "location", "latitude")
        longitude = _get(record, "location", "longitude")
        if city and _usable(latitude, 90.0) and _usable(longitude, 180.0):
            detail = f"{city}, {code} (ip-city)" if code else f"{city} (ip-city)"
            return float(latitude), float(longitude), IP_CITY, detail
        centroid = country_centroid(code) if isinstance(code, str) else None
        if centroid is None:
            return None
        detail = f"{code} (ip-country, {self.database_type})"
        return centroid.latitude, centroid.longitude, IP_COUNTRY, detail

    def close(self) -> None:
        self._reader.close()


def _get(record: dict, section: str, key: str) -> object:
    part = record.get(section)
    return part.get(key) if isinstance(part, dict) else None


def _english_name(names: object) -> str | None:
    if not isinstance(names, dict) or not names:
        return None
    name = names.get("en") or next(iter(names.values()))
    return name if isinstance(name, str) and name else None


def _usable(value: object, limit: float) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and -limit <= value <= limit
    )
