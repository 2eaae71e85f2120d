"""Where a client is, by the rules the routing table carries (default location, prefix
overrides) plus this host's optional MaxMind City database."""

from __future__ import annotations

from latitude.geo import Located, Locator
from latitude.v1 import routing_pb2


class TableLocator:
    """A ``Locator`` kept in step with the table's location rules, rebuilt only when they change."""

    def __init__(self, mmdb_path: str | None = None) -> None:
        self._mmdb_path = mmdb_path or None
        self._locator: Locator | None = None
        self._rules: tuple | None = None
        self._table: routing_pb2.RoutingTable | None = None  # whose rules _locator follows

    def locate(
        self,
        table: routing_pb2.RoutingTable,
        ip: str | None,
        location: tuple[float, float] | None,
    ) -> Located:
        locator = self._for(table)
        if location is not None:
            return locator.locate(ip=ip, latitude=location[0], longitude=location[1])
        return locator.locate(ip=ip)

    def _for(self, table: routing_pb2.RoutingTable) -> Locator:
        if table is self._table:
            return self._locator  # the common case: one table serves many requests
        rules = (
            table.default_location.latitude,
            table.default_location.longitude,
            tuple((o.network_prefix, o.location.latitude, o.location.longitude)
                  for o in table.location_overrides),
        )  # fmt: skip
        if self._locator is None or rules != self._rules:
            if self._locator is not None:
                self._locator.close()
            self._locator = Locator(
                default=(rules[0], rules[1]),
                overrides={prefix: (lat, lon) for prefix, lat, lon in rules[2]},
                mmdb_path=self._mmdb_path,
            )
            self._rules = rules
        self._table = table
        return self._locator

    def close(self) -> None:
        if self._locator is not None:
            self._locator.close()
            self._locator = None
            self._table = None
