"""Which regions a Verify compares, and where their agents are: from the region statuses the
leader publishes in etcd, so that any coordinator can run the check."""

from __future__ import annotations

from collections.abc import Mapping

from latitude.errors import LatitudeError
from latitude.v1 import admin_pb2


class NoTargets(LatitudeError):
    """The cluster is not in a state the check can run in; the message says why."""


def verify_targets(published: Mapping[str, bytes], write_region: str) -> tuple[str, dict[str, str]]:
    """(the primary's region, {region: its agent's address}) for every known region."""
    if not write_region:
        raise NoTargets("no write region: there is no primary to compare with")
    agents: dict[str, str] = {}
    unknown = []
    for name in sorted(published):
        status = admin_pb2.RegionStatus.FromString(published[name])
        if status.agent_address:
            agents[status.region or name] = status.agent_address
        else:
            unknown.append(status.region or name)
    if unknown:
        raise NoTargets(
            f"no agent address known for {', '.join(unknown)} (an agent that has not connected "
            "to this leader, or an older agent that does not advertise one)"
        )
    if write_region not in agents:
        raise NoTargets(f"the write region {write_region} is not among the known regions")
    return write_region, agents
