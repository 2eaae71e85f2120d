"""ListIncidents: any replica reads the incidents the leader keeps in etcd."""

from __future__ import annotations

from coordinator import keys
from coordinator.events import InvalidRequest
from coordinator.store import Store
from latitude.v1 import admin_pb2

DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000


async def list_incidents(
    store: Store, request: admin_pb2.ListIncidentsRequest
) -> admin_pb2.ListIncidentsResponse:
    """Newest first; only open ones unless ``include_resolved``. InvalidRequest naming the
    field when the request is bad; EtcdError when etcd does not answer."""
    if request.limit > MAX_LIMIT:
        raise InvalidRequest("limit", f"at most {MAX_LIMIT}, got {request.limit}")
    stored = await store.read_prefix(keys.INCIDENTS)
    incidents = [admin_pb2.Incident.FromString(value) for value in stored.values()]
    if not request.include_resolved:
        incidents = [i for i in incidents if i.state == admin_pb2.INCIDENT_STATE_OPEN]
    incidents.sort(key=lambda i: (i.opened_at.ToNanoseconds(), i.id), reverse=True)
    return admin_pb2.ListIncidentsResponse(incidents=incidents[: request.limit or DEFAULT_LIMIT])
