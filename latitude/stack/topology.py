"""The shape of the local stack: which regions exist, where they are, who starts as primary.

This is the single description that ``latitude up``, the test harness and the topology test of
``docker-compose.yml`` all read, so the three cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from latitude.errors import UnknownRegionError
from latitude.replication import slot_name


@dataclass(frozen=True, slots=True)
class RegionSpec:
    name: str
    # Where the region's data centre is, for geographic routing.
    latitude: float
    longitude: float
    # The region whose PostgreSQL starts as the primary; the others start as its standbys.
    initial_primary: bool = False

    @property
    def slot_name(self) -> str:
        return slot_name(self.name)


@dataclass(frozen=True, slots=True)
class Topology:
    regions: tuple[RegionSpec, ...]
    etcd_members: tuple[str, ...]
    coordinators: tuple[str, ...]

    def region(self, name: str) -> RegionSpec:
        for region in self.regions:
            if region.name == name:
                return region
        known = ", ".join(r.name for r in self.regions)
        raise UnknownRegionError(f"unknown region {name!r}: known regions are {known}")

    @property
    def primary(self) -> RegionSpec:
        return next(r for r in self.regions if r.initial_primary)

    @property
    def standbys(self) -> tuple[RegionSpec, ...]:
        return tuple(r for r in self.regions if not r.initial_primary)


# The zone every coordinator's DNS responder serves, natively and in compose (.test is
# reserved for testing: RFC 2606).
DNS_ZONE = "latitude.test."

DEFAULT_TOPOLOGY = Topology(
    regions=(
        RegionSpec("us-east-1", 38.9, -77.4, initial_primary=True),  # northern Virginia
        RegionSpec("eu-west-1", 53.3, -6.3),  # Dublin
        RegionSpec("ap-southeast-1", 1.35, 103.8),  # Singapore
    ),
    etcd_members=("etcd-1", "etcd-2", "etcd-3"),
    coordinators=("coordinator-1", "coordinator-2", "coordinator-3"),
)
