import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EndpointKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENDPOINT_KIND_UNSPECIFIED: _ClassVar[EndpointKind]
    ENDPOINT_KIND_POSTGRES: _ClassVar[EndpointKind]
    ENDPOINT_KIND_HTTP: _ClassVar[EndpointKind]
    ENDPOINT_KIND_GRPC: _ClassVar[EndpointKind]
    ENDPOINT_KIND_TCP: _ClassVar[EndpointKind]

class RegionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REGION_STATE_UNSPECIFIED: _ClassVar[RegionState]
    REGION_STATE_PENDING: _ClassVar[RegionState]
    REGION_STATE_HEALTHY: _ClassVar[RegionState]
    REGION_STATE_DEGRADED: _ClassVar[RegionState]
    REGION_STATE_UNHEALTHY: _ClassVar[RegionState]
    REGION_STATE_FAILOVER: _ClassVar[RegionState]
    REGION_STATE_MAINTENANCE: _ClassVar[RegionState]

class DatabaseRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATABASE_ROLE_UNSPECIFIED: _ClassVar[DatabaseRole]
    DATABASE_ROLE_PRIMARY: _ClassVar[DatabaseRole]
    DATABASE_ROLE_STANDBY: _ClassVar[DatabaseRole]
    DATABASE_ROLE_UNKNOWN: _ClassVar[DatabaseRole]
    DATABASE_ROLE_DOWN: _ClassVar[DatabaseRole]

class FenceCause(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FENCE_CAUSE_UNSPECIFIED: _ClassVar[FenceCause]
    FENCE_CAUSE_SELF: _ClassVar[FenceCause]
    FENCE_CAUSE_COMMAND: _ClassVar[FenceCause]
    FENCE_CAUSE_STARTUP: _ClassVar[FenceCause]
    FENCE_CAUSE_KEEPER: _ClassVar[FenceCause]

class SyncState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SYNC_STATE_UNSPECIFIED: _ClassVar[SyncState]
    SYNC_STATE_ASYNC: _ClassVar[SyncState]
    SYNC_STATE_POTENTIAL: _ClassVar[SyncState]
    SYNC_STATE_SYNC: _ClassVar[SyncState]
    SYNC_STATE_QUORUM: _ClassVar[SyncState]
ENDPOINT_KIND_UNSPECIFIED: EndpointKind
ENDPOINT_KIND_POSTGRES: EndpointKind
ENDPOINT_KIND_HTTP: EndpointKind
ENDPOINT_KIND_GRPC: EndpointKind
ENDPOINT_KIND_TCP: EndpointKind
REGION_STATE_UNSPECIFIED: RegionState
REGION_STATE_PENDING: RegionState
REGION_STATE_HEALTHY: RegionState
REGION_STATE_DEGRADED: RegionState
REGION_STATE_UNHEALTHY: RegionState
REGION_STATE_FAILOVER: RegionState
REGION_STATE_MAINTENANCE: RegionState
DATABASE_ROLE_UNSPECIFIED: DatabaseRole
DATABASE_ROLE_PRIMARY: DatabaseRole
DATABASE_ROLE_STANDBY: DatabaseRole
DATABASE_ROLE_UNKNOWN: DatabaseRole
DATABASE_ROLE_DOWN: DatabaseRole
FENCE_CAUSE_UNSPECIFIED: FenceCause
FENCE_CAUSE_SELF: FenceCause
FENCE_CAUSE_COMMAND: FenceCause
FENCE_CAUSE_STARTUP: FenceCause
FENCE_CAUSE_KEEPER: FenceCause
SYNC_STATE_UNSPECIFIED: SyncState
SYNC_STATE_ASYNC: SyncState
SYNC_STATE_POTENTIAL: SyncState
SYNC_STATE_SYNC: SyncState
SYNC_STATE_QUORUM: SyncState

class Location(_message.Message):
    __slots__ = ("latitude", "longitude")
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    latitude: float
    longitude: float
    def __init__(self, latitude: _Optional[float] = ..., longitude: _Optional[float] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("name", "kind", "address")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: EndpointKind
    address: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[EndpointKind, str]] = ..., address: _Optional[str] = ...) -> None: ...

class ReplicaStatus(_message.Message):
    __slots__ = ("region", "client_address", "state", "sync_state", "sent_lsn", "flush_lsn", "replay_lsn", "replay_lag_seconds")
    REGION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SYNC_STATE_FIELD_NUMBER: _ClassVar[int]
    SENT_LSN_FIELD_NUMBER: _ClassVar[int]
    FLUSH_LSN_FIELD_NUMBER: _ClassVar[int]
    REPLAY_LSN_FIELD_NUMBER: _ClassVar[int]
    REPLAY_LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    region: str
    client_address: str
    state: str
    sync_state: SyncState
    sent_lsn: int
    flush_lsn: int
    replay_lsn: int
    replay_lag_seconds: float
    def __init__(self, region: _Optional[str] = ..., client_address: _Optional[str] = ..., state: _Optional[str] = ..., sync_state: _Optional[_Union[SyncState, str]] = ..., sent_lsn: _Optional[int] = ..., flush_lsn: _Optional[int] = ..., replay_lsn: _Optional[int] = ..., replay_lag_seconds: _Optional[float] = ...) -> None: ...

class DatabaseStatus(_message.Message):
    __slots__ = ("role", "fenced", "fence_cause", "timeline_id", "current_lsn", "received_lsn", "replayed_lsn", "replay_lag_bytes", "replay_lag_seconds", "wal_receiver_streaming", "upstream_address", "upstream_region", "replicas", "system_identifier", "server_version", "probe_error", "observed_at", "heartbeat_at", "timeline_history", "wal_receiver_silence_seconds")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    FENCED_FIELD_NUMBER: _ClassVar[int]
    FENCE_CAUSE_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_LSN_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_LSN_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_LSN_FIELD_NUMBER: _ClassVar[int]
    REPLAY_LAG_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPLAY_LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WAL_RECEIVER_STREAMING_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_REGION_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROBE_ERROR_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AT_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    WAL_RECEIVER_SILENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    role: DatabaseRole
    fenced: bool
    fence_cause: FenceCause
    timeline_id: int
    current_lsn: int
    received_lsn: int
    replayed_lsn: int
    replay_lag_bytes: int
    replay_lag_seconds: float
    wal_receiver_streaming: bool
    upstream_address: str
    upstream_region: str
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaStatus]
    system_identifier: int
    server_version: str
    probe_error: str
    observed_at: _timestamp_pb2.Timestamp
    heartbeat_at: _timestamp_pb2.Timestamp
    timeline_history: _containers.RepeatedCompositeFieldContainer[TimelineSwitch]
    wal_receiver_silence_seconds: float
    def __init__(self, role: _Optional[_Union[DatabaseRole, str]] = ..., fenced: _Optional[bool] = ..., fence_cause: _Optional[_Union[FenceCause, str]] = ..., timeline_id: _Optional[int] = ..., current_lsn: _Optional[int] = ..., received_lsn: _Optional[int] = ..., replayed_lsn: _Optional[int] = ..., replay_lag_bytes: _Optional[int] = ..., replay_lag_seconds: _Optional[float] = ..., wal_receiver_streaming: _Optional[bool] = ..., upstream_address: _Optional[str] = ..., upstream_region: _Optional[str] = ..., replicas: _Optional[_Iterable[_Union[ReplicaStatus, _Mapping]]] = ..., system_identifier: _Optional[int] = ..., server_version: _Optional[str] = ..., probe_error: _Optional[str] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timeline_history: _Optional[_Iterable[_Union[TimelineSwitch, _Mapping]]] = ..., wal_receiver_silence_seconds: _Optional[float] = ...) -> None: ...

class TimelineSwitch(_message.Message):
    __slots__ = ("timeline_id", "end_lsn")
    TIMELINE_ID_FIELD_NUMBER: _ClassVar[int]
    END_LSN_FIELD_NUMBER: _ClassVar[int]
    timeline_id: int
    end_lsn: int
    def __init__(self, timeline_id: _Optional[int] = ..., end_lsn: _Optional[int] = ...) -> None: ...

class CheckResult(_message.Message):
    __slots__ = ("name", "ok", "latency_seconds", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    ok: bool
    latency_seconds: float
    error: str
    def __init__(self, name: _Optional[str] = ..., ok: _Optional[bool] = ..., latency_seconds: _Optional[float] = ..., error: _Optional[str] = ...) -> None: ...
