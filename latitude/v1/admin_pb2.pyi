import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from latitude.v1 import agent_pb2 as _agent_pb2
from latitude.v1 import common_pb2 as _common_pb2
from latitude.v1 import history_pb2 as _history_pb2
from latitude.v1 import routing_pb2 as _routing_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FailoverKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILOVER_KIND_UNSPECIFIED: _ClassVar[FailoverKind]
    FAILOVER_KIND_AUTOMATIC: _ClassVar[FailoverKind]
    FAILOVER_KIND_MANUAL: _ClassVar[FailoverKind]
    FAILOVER_KIND_SWITCHOVER: _ClassVar[FailoverKind]

class FailoverPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILOVER_PHASE_UNSPECIFIED: _ClassVar[FailoverPhase]
    FAILOVER_PHASE_FENCING: _ClassVar[FailoverPhase]
    FAILOVER_PHASE_SELECTING: _ClassVar[FailoverPhase]
    FAILOVER_PHASE_PROMOTING: _ClassVar[FailoverPhase]
    FAILOVER_PHASE_REPOINTING: _ClassVar[FailoverPhase]
    FAILOVER_PHASE_COMPLETED: _ClassVar[FailoverPhase]
    FAILOVER_PHASE_ABORTED: _ClassVar[FailoverPhase]

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_LEADER_ELECTED: _ClassVar[EventKind]
    EVENT_KIND_AGENT_CONNECTED: _ClassVar[EventKind]
    EVENT_KIND_AGENT_DISCONNECTED: _ClassVar[EventKind]
    EVENT_KIND_REGION_STATE_CHANGED: _ClassVar[EventKind]
    EVENT_KIND_FAILOVER_STARTED: _ClassVar[EventKind]
    EVENT_KIND_FAILOVER_COMPLETED: _ClassVar[EventKind]
    EVENT_KIND_FAILOVER_ABORTED: _ClassVar[EventKind]
    EVENT_KIND_FENCED: _ClassVar[EventKind]
    EVENT_KIND_UNFENCED: _ClassVar[EventKind]
    EVENT_KIND_PROMOTED: _ClassVar[EventKind]
    EVENT_KIND_REJOINED: _ClassVar[EventKind]
    EVENT_KIND_COMMAND_FAILED: _ClassVar[EventKind]
    EVENT_KIND_STRATEGY_CHANGED: _ClassVar[EventKind]
    EVENT_KIND_MAINTENANCE_CHANGED: _ClassVar[EventKind]
    EVENT_KIND_CONSISTENCY_CHECKED: _ClassVar[EventKind]
    EVENT_KIND_ALERT: _ClassVar[EventKind]
    EVENT_KIND_ACCESS_REFUSED: _ClassVar[EventKind]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_INFO: _ClassVar[Severity]
    SEVERITY_WARNING: _ClassVar[Severity]
    SEVERITY_CRITICAL: _ClassVar[Severity]

class ConsistencyVerdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSISTENCY_VERDICT_UNSPECIFIED: _ClassVar[ConsistencyVerdict]
    CONSISTENCY_VERDICT_IN_SYNC: _ClassVar[ConsistencyVerdict]
    CONSISTENCY_VERDICT_LAGGING: _ClassVar[ConsistencyVerdict]
    CONSISTENCY_VERDICT_DIVERGED: _ClassVar[ConsistencyVerdict]
    CONSISTENCY_VERDICT_CONFLICTING_PRIMARY: _ClassVar[ConsistencyVerdict]
    CONSISTENCY_VERDICT_UNKNOWN: _ClassVar[ConsistencyVerdict]

class IncidentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INCIDENT_STATE_UNSPECIFIED: _ClassVar[IncidentState]
    INCIDENT_STATE_OPEN: _ClassVar[IncidentState]
    INCIDENT_STATE_RESOLVED: _ClassVar[IncidentState]
FAILOVER_KIND_UNSPECIFIED: FailoverKind
FAILOVER_KIND_AUTOMATIC: FailoverKind
FAILOVER_KIND_MANUAL: FailoverKind
FAILOVER_KIND_SWITCHOVER: FailoverKind
FAILOVER_PHASE_UNSPECIFIED: FailoverPhase
FAILOVER_PHASE_FENCING: FailoverPhase
FAILOVER_PHASE_SELECTING: FailoverPhase
FAILOVER_PHASE_PROMOTING: FailoverPhase
FAILOVER_PHASE_REPOINTING: FailoverPhase
FAILOVER_PHASE_COMPLETED: FailoverPhase
FAILOVER_PHASE_ABORTED: FailoverPhase
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_LEADER_ELECTED: EventKind
EVENT_KIND_AGENT_CONNECTED: EventKind
EVENT_KIND_AGENT_DISCONNECTED: EventKind
EVENT_KIND_REGION_STATE_CHANGED: EventKind
EVENT_KIND_FAILOVER_STARTED: EventKind
EVENT_KIND_FAILOVER_COMPLETED: EventKind
EVENT_KIND_FAILOVER_ABORTED: EventKind
EVENT_KIND_FENCED: EventKind
EVENT_KIND_UNFENCED: EventKind
EVENT_KIND_PROMOTED: EventKind
EVENT_KIND_REJOINED: EventKind
EVENT_KIND_COMMAND_FAILED: EventKind
EVENT_KIND_STRATEGY_CHANGED: EventKind
EVENT_KIND_MAINTENANCE_CHANGED: EventKind
EVENT_KIND_CONSISTENCY_CHECKED: EventKind
EVENT_KIND_ALERT: EventKind
EVENT_KIND_ACCESS_REFUSED: EventKind
SEVERITY_UNSPECIFIED: Severity
SEVERITY_INFO: Severity
SEVERITY_WARNING: Severity
SEVERITY_CRITICAL: Severity
CONSISTENCY_VERDICT_UNSPECIFIED: ConsistencyVerdict
CONSISTENCY_VERDICT_IN_SYNC: ConsistencyVerdict
CONSISTENCY_VERDICT_LAGGING: ConsistencyVerdict
CONSISTENCY_VERDICT_DIVERGED: ConsistencyVerdict
CONSISTENCY_VERDICT_CONFLICTING_PRIMARY: ConsistencyVerdict
CONSISTENCY_VERDICT_UNKNOWN: ConsistencyVerdict
INCIDENT_STATE_UNSPECIFIED: IncidentState
INCIDENT_STATE_OPEN: IncidentState
INCIDENT_STATE_RESOLVED: IncidentState

class LeaderInfo(_message.Message):
    __slots__ = ("leader_id", "address", "epoch", "elected_at")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ELECTED_AT_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    address: str
    epoch: int
    elected_at: _timestamp_pb2.Timestamp
    def __init__(self, leader_id: _Optional[str] = ..., address: _Optional[str] = ..., epoch: _Optional[int] = ..., elected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EtcdMember(_message.Message):
    __slots__ = ("name", "id", "client_urls", "healthy", "is_leader", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_URLS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: int
    client_urls: _containers.RepeatedScalarFieldContainer[str]
    healthy: bool
    is_leader: bool
    error: str
    def __init__(self, name: _Optional[str] = ..., id: _Optional[int] = ..., client_urls: _Optional[_Iterable[str]] = ..., healthy: _Optional[bool] = ..., is_leader: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class FailoverStatus(_message.Message):
    __slots__ = ("failover_id", "kind", "phase", "from_region", "to_region", "reason", "forced", "started_at", "updated_at", "fence_deadline", "data_loss_bound_bytes", "error", "finished_at", "steps", "data_loss_bound_seconds", "selection_reason", "old_primary_lsn", "promoted_lsn", "fenced_by_command", "failsafe_confirmations", "old_primary_lsn_final")
    class StepsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _timestamp_pb2.Timestamp
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
    class FailsafeConfirmationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _timestamp_pb2.Timestamp
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
    FAILOVER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    FROM_REGION_FIELD_NUMBER: _ClassVar[int]
    TO_REGION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FENCE_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    DATA_LOSS_BOUND_BYTES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    DATA_LOSS_BOUND_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SELECTION_REASON_FIELD_NUMBER: _ClassVar[int]
    OLD_PRIMARY_LSN_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_LSN_FIELD_NUMBER: _ClassVar[int]
    FENCED_BY_COMMAND_FIELD_NUMBER: _ClassVar[int]
    FAILSAFE_CONFIRMATIONS_FIELD_NUMBER: _ClassVar[int]
    OLD_PRIMARY_LSN_FINAL_FIELD_NUMBER: _ClassVar[int]
    failover_id: str
    kind: FailoverKind
    phase: FailoverPhase
    from_region: str
    to_region: str
    reason: str
    forced: bool
    started_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    fence_deadline: _timestamp_pb2.Timestamp
    data_loss_bound_bytes: int
    error: str
    finished_at: _timestamp_pb2.Timestamp
    steps: _containers.MessageMap[str, _timestamp_pb2.Timestamp]
    data_loss_bound_seconds: float
    selection_reason: str
    old_primary_lsn: int
    promoted_lsn: int
    fenced_by_command: bool
    failsafe_confirmations: _containers.MessageMap[str, _timestamp_pb2.Timestamp]
    old_primary_lsn_final: bool
    def __init__(self, failover_id: _Optional[str] = ..., kind: _Optional[_Union[FailoverKind, str]] = ..., phase: _Optional[_Union[FailoverPhase, str]] = ..., from_region: _Optional[str] = ..., to_region: _Optional[str] = ..., reason: _Optional[str] = ..., forced: _Optional[bool] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fence_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data_loss_bound_bytes: _Optional[int] = ..., error: _Optional[str] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., steps: _Optional[_Mapping[str, _timestamp_pb2.Timestamp]] = ..., data_loss_bound_seconds: _Optional[float] = ..., selection_reason: _Optional[str] = ..., old_primary_lsn: _Optional[int] = ..., promoted_lsn: _Optional[int] = ..., fenced_by_command: _Optional[bool] = ..., failsafe_confirmations: _Optional[_Mapping[str, _timestamp_pb2.Timestamp]] = ..., old_primary_lsn_final: _Optional[bool] = ...) -> None: ...

class RegionStatus(_message.Message):
    __slots__ = ("region", "state", "state_reason", "agent_id", "agent_connected", "last_report_at", "last_report_age_seconds", "database", "checks", "replay_lag_bytes", "replay_lag_seconds", "weight", "capacity", "capacity_utilization", "response_time_seconds", "error_rate", "priority", "location", "endpoints", "peers", "agent_address")
    REGION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    LAST_REPORT_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_REPORT_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    REPLAY_LAG_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPLAY_LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    AGENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    region: str
    state: _common_pb2.RegionState
    state_reason: str
    agent_id: str
    agent_connected: bool
    last_report_at: _timestamp_pb2.Timestamp
    last_report_age_seconds: float
    database: _common_pb2.DatabaseStatus
    checks: _containers.RepeatedCompositeFieldContainer[_common_pb2.CheckResult]
    replay_lag_bytes: int
    replay_lag_seconds: float
    weight: float
    capacity: int
    capacity_utilization: float
    response_time_seconds: float
    error_rate: float
    priority: int
    location: _common_pb2.Location
    endpoints: _containers.RepeatedCompositeFieldContainer[_common_pb2.Endpoint]
    peers: _containers.RepeatedCompositeFieldContainer[_agent_pb2.PeerRtt]
    agent_address: str
    def __init__(self, region: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.RegionState, str]] = ..., state_reason: _Optional[str] = ..., agent_id: _Optional[str] = ..., agent_connected: _Optional[bool] = ..., last_report_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_report_age_seconds: _Optional[float] = ..., database: _Optional[_Union[_common_pb2.DatabaseStatus, _Mapping]] = ..., checks: _Optional[_Iterable[_Union[_common_pb2.CheckResult, _Mapping]]] = ..., replay_lag_bytes: _Optional[int] = ..., replay_lag_seconds: _Optional[float] = ..., weight: _Optional[float] = ..., capacity: _Optional[int] = ..., capacity_utilization: _Optional[float] = ..., response_time_seconds: _Optional[float] = ..., error_rate: _Optional[float] = ..., priority: _Optional[int] = ..., location: _Optional[_Union[_common_pb2.Location, _Mapping]] = ..., endpoints: _Optional[_Iterable[_Union[_common_pb2.Endpoint, _Mapping]]] = ..., peers: _Optional[_Iterable[_Union[_agent_pb2.PeerRtt, _Mapping]]] = ..., agent_address: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("generated_at", "responder_id", "leader", "regions", "write_region", "strategy", "table_version", "etcd_members", "failover")
    GENERATED_AT_FIELD_NUMBER: _ClassVar[int]
    RESPONDER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    WRITE_REGION_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    TABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ETCD_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_FIELD_NUMBER: _ClassVar[int]
    generated_at: _timestamp_pb2.Timestamp
    responder_id: str
    leader: LeaderInfo
    regions: _containers.RepeatedCompositeFieldContainer[RegionStatus]
    write_region: str
    strategy: _routing_pb2.Strategy
    table_version: int
    etcd_members: _containers.RepeatedCompositeFieldContainer[EtcdMember]
    failover: FailoverStatus
    def __init__(self, generated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., responder_id: _Optional[str] = ..., leader: _Optional[_Union[LeaderInfo, _Mapping]] = ..., regions: _Optional[_Iterable[_Union[RegionStatus, _Mapping]]] = ..., write_region: _Optional[str] = ..., strategy: _Optional[_Union[_routing_pb2.Strategy, str]] = ..., table_version: _Optional[int] = ..., etcd_members: _Optional[_Iterable[_Union[EtcdMember, _Mapping]]] = ..., failover: _Optional[_Union[FailoverStatus, _Mapping]] = ...) -> None: ...

class SetStrategyRequest(_message.Message):
    __slots__ = ("strategy",)
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    strategy: _routing_pb2.Strategy
    def __init__(self, strategy: _Optional[_Union[_routing_pb2.Strategy, str]] = ...) -> None: ...

class SetStrategyResponse(_message.Message):
    __slots__ = ("previous", "table_version")
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    TABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    previous: _routing_pb2.Strategy
    table_version: int
    def __init__(self, previous: _Optional[_Union[_routing_pb2.Strategy, str]] = ..., table_version: _Optional[int] = ...) -> None: ...

class SwitchoverRequest(_message.Message):
    __slots__ = ("target_region", "force", "wait")
    TARGET_REGION_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    target_region: str
    force: bool
    wait: bool
    def __init__(self, target_region: _Optional[str] = ..., force: _Optional[bool] = ..., wait: _Optional[bool] = ...) -> None: ...

class SwitchoverResponse(_message.Message):
    __slots__ = ("failover",)
    FAILOVER_FIELD_NUMBER: _ClassVar[int]
    failover: FailoverStatus
    def __init__(self, failover: _Optional[_Union[FailoverStatus, _Mapping]] = ...) -> None: ...

class FailoverRequest(_message.Message):
    __slots__ = ("target_region", "force", "reason", "wait")
    TARGET_REGION_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    target_region: str
    force: bool
    reason: str
    wait: bool
    def __init__(self, target_region: _Optional[str] = ..., force: _Optional[bool] = ..., reason: _Optional[str] = ..., wait: _Optional[bool] = ...) -> None: ...

class FailoverResponse(_message.Message):
    __slots__ = ("failover",)
    FAILOVER_FIELD_NUMBER: _ClassVar[int]
    failover: FailoverStatus
    def __init__(self, failover: _Optional[_Union[FailoverStatus, _Mapping]] = ...) -> None: ...

class SetMaintenanceRequest(_message.Message):
    __slots__ = ("region", "enabled", "drain", "reason")
    REGION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    region: str
    enabled: bool
    drain: bool
    reason: str
    def __init__(self, region: _Optional[str] = ..., enabled: _Optional[bool] = ..., drain: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class SetMaintenanceResponse(_message.Message):
    __slots__ = ("region", "switchover")
    REGION_FIELD_NUMBER: _ClassVar[int]
    SWITCHOVER_FIELD_NUMBER: _ClassVar[int]
    region: RegionStatus
    switchover: FailoverStatus
    def __init__(self, region: _Optional[_Union[RegionStatus, _Mapping]] = ..., switchover: _Optional[_Union[FailoverStatus, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("sequence", "time", "kind", "severity", "region", "message", "failover_id", "epoch", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    kind: EventKind
    severity: Severity
    region: str
    message: str
    failover_id: str
    epoch: int
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[EventKind, str]] = ..., severity: _Optional[_Union[Severity, str]] = ..., region: _Optional[str] = ..., message: _Optional[str] = ..., failover_id: _Optional[str] = ..., epoch: _Optional[int] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("limit", "region", "kinds", "since", "before_sequence")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    limit: int
    region: str
    kinds: _containers.RepeatedScalarFieldContainer[EventKind]
    since: _timestamp_pb2.Timestamp
    before_sequence: int
    def __init__(self, limit: _Optional[int] = ..., region: _Optional[str] = ..., kinds: _Optional[_Iterable[_Union[EventKind, str]]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., before_sequence: _Optional[int] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class CheckConsistencyRequest(_message.Message):
    __slots__ = ("fresh",)
    FRESH_FIELD_NUMBER: _ClassVar[int]
    fresh: bool
    def __init__(self, fresh: _Optional[bool] = ...) -> None: ...

class RegionConsistency(_message.Message):
    __slots__ = ("region", "role", "verdict", "timeline_id", "lsn", "behind_bytes", "system_identifier", "detail", "observed_at")
    REGION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_ID_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    BEHIND_BYTES_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    region: str
    role: _common_pb2.DatabaseRole
    verdict: ConsistencyVerdict
    timeline_id: int
    lsn: int
    behind_bytes: int
    system_identifier: int
    detail: str
    observed_at: _timestamp_pb2.Timestamp
    def __init__(self, region: _Optional[str] = ..., role: _Optional[_Union[_common_pb2.DatabaseRole, str]] = ..., verdict: _Optional[_Union[ConsistencyVerdict, str]] = ..., timeline_id: _Optional[int] = ..., lsn: _Optional[int] = ..., behind_bytes: _Optional[int] = ..., system_identifier: _Optional[int] = ..., detail: _Optional[str] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConsistencyReport(_message.Message):
    __slots__ = ("consistent", "primary_region", "primary_timeline_id", "primary_lsn", "regions", "checked_at")
    CONSISTENT_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_REGION_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_TIMELINE_ID_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_LSN_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    consistent: bool
    primary_region: str
    primary_timeline_id: int
    primary_lsn: int
    regions: _containers.RepeatedCompositeFieldContainer[RegionConsistency]
    checked_at: _timestamp_pb2.Timestamp
    def __init__(self, consistent: _Optional[bool] = ..., primary_region: _Optional[str] = ..., primary_timeline_id: _Optional[int] = ..., primary_lsn: _Optional[int] = ..., regions: _Optional[_Iterable[_Union[RegionConsistency, _Mapping]]] = ..., checked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IncidentEntry(_message.Message):
    __slots__ = ("sequence", "time", "kind", "severity", "region", "message", "failover_id", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    kind: EventKind
    severity: Severity
    region: str
    message: str
    failover_id: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[EventKind, str]] = ..., severity: _Optional[_Union[Severity, str]] = ..., region: _Optional[str] = ..., message: _Optional[str] = ..., failover_id: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class IncidentDelivery(_message.Message):
    __slots__ = ("target", "delivered_revision", "delivered_kind", "delivered_at", "delivered_state", "delivered", "failed_attempts", "last_error")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_REVISION_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_KIND_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_STATE_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    FAILED_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    target: str
    delivered_revision: int
    delivered_kind: str
    delivered_at: _timestamp_pb2.Timestamp
    delivered_state: IncidentState
    delivered: int
    failed_attempts: int
    last_error: str
    def __init__(self, target: _Optional[str] = ..., delivered_revision: _Optional[int] = ..., delivered_kind: _Optional[str] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivered_state: _Optional[_Union[IncidentState, str]] = ..., delivered: _Optional[int] = ..., failed_attempts: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class Incident(_message.Message):
    __slots__ = ("id", "cause", "severity", "state", "regions", "opened_at", "updated_at", "resolved_at", "summary", "revision", "reopened", "timeline", "timeline_dropped", "failover_ids", "planned_failover_ids", "awaiting", "deliveries", "failover_finished_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    REOPENED_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_DROPPED_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_IDS_FIELD_NUMBER: _ClassVar[int]
    PLANNED_FAILOVER_IDS_FIELD_NUMBER: _ClassVar[int]
    AWAITING_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    cause: str
    severity: Severity
    state: IncidentState
    regions: _containers.RepeatedScalarFieldContainer[str]
    opened_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    resolved_at: _timestamp_pb2.Timestamp
    summary: str
    revision: int
    reopened: int
    timeline: _containers.RepeatedCompositeFieldContainer[IncidentEntry]
    timeline_dropped: int
    failover_ids: _containers.RepeatedScalarFieldContainer[str]
    planned_failover_ids: _containers.RepeatedScalarFieldContainer[str]
    awaiting: _containers.RepeatedScalarFieldContainer[str]
    deliveries: _containers.RepeatedCompositeFieldContainer[IncidentDelivery]
    failover_finished_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., cause: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., state: _Optional[_Union[IncidentState, str]] = ..., regions: _Optional[_Iterable[str]] = ..., opened_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., summary: _Optional[str] = ..., revision: _Optional[int] = ..., reopened: _Optional[int] = ..., timeline: _Optional[_Iterable[_Union[IncidentEntry, _Mapping]]] = ..., timeline_dropped: _Optional[int] = ..., failover_ids: _Optional[_Iterable[str]] = ..., planned_failover_ids: _Optional[_Iterable[str]] = ..., awaiting: _Optional[_Iterable[str]] = ..., deliveries: _Optional[_Iterable[_Union[IncidentDelivery, _Mapping]]] = ..., failover_finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListIncidentsRequest(_message.Message):
    __slots__ = ("include_resolved", "limit")
    INCLUDE_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    include_resolved: bool
    limit: int
    def __init__(self, include_resolved: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class ListIncidentsResponse(_message.Message):
    __slots__ = ("incidents",)
    INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    incidents: _containers.RepeatedCompositeFieldContainer[Incident]
    def __init__(self, incidents: _Optional[_Iterable[_Union[Incident, _Mapping]]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("tables", "rows_per_range", "replay_wait_seconds", "ranges_per_call", "attempts", "max_rows_per_second")
    TABLES_FIELD_NUMBER: _ClassVar[int]
    ROWS_PER_RANGE_FIELD_NUMBER: _ClassVar[int]
    REPLAY_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RANGES_PER_CALL_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedScalarFieldContainer[str]
    rows_per_range: int
    replay_wait_seconds: float
    ranges_per_call: int
    attempts: int
    max_rows_per_second: float
    def __init__(self, tables: _Optional[_Iterable[str]] = ..., rows_per_range: _Optional[int] = ..., replay_wait_seconds: _Optional[float] = ..., ranges_per_call: _Optional[int] = ..., attempts: _Optional[int] = ..., max_rows_per_second: _Optional[float] = ...) -> None: ...

class VerifyProgress(_message.Message):
    __slots__ = ("table", "tables_done", "tables_total", "ranges_done", "rows_done", "elapsed_seconds", "phase")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    TABLES_DONE_FIELD_NUMBER: _ClassVar[int]
    TABLES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RANGES_DONE_FIELD_NUMBER: _ClassVar[int]
    ROWS_DONE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    table: str
    tables_done: int
    tables_total: int
    ranges_done: int
    rows_done: int
    elapsed_seconds: float
    phase: str
    def __init__(self, table: _Optional[str] = ..., tables_done: _Optional[int] = ..., tables_total: _Optional[int] = ..., ranges_done: _Optional[int] = ..., rows_done: _Optional[int] = ..., elapsed_seconds: _Optional[float] = ..., phase: _Optional[str] = ...) -> None: ...

class RowMismatch(_message.Message):
    __slots__ = ("key", "regions")
    class RegionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    key: str
    regions: _containers.ScalarMap[str, str]
    def __init__(self, key: _Optional[str] = ..., regions: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RangeMismatch(_message.Message):
    __slots__ = ("range", "regions", "rows", "unsettled", "rows_truncated")
    RANGE_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    UNSETTLED_FIELD_NUMBER: _ClassVar[int]
    ROWS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    range: str
    regions: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedCompositeFieldContainer[RowMismatch]
    unsettled: bool
    rows_truncated: bool
    def __init__(self, range: _Optional[str] = ..., regions: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[_Union[RowMismatch, _Mapping]]] = ..., unsettled: _Optional[bool] = ..., rows_truncated: _Optional[bool] = ...) -> None: ...

class TableVerdict(_message.Message):
    __slots__ = ("table", "key_columns", "ranges", "ranges_agreeing", "rows", "mismatches", "note", "elapsed_seconds")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    RANGES_AGREEING_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    MISMATCHES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    table: str
    key_columns: _containers.RepeatedScalarFieldContainer[str]
    ranges: int
    ranges_agreeing: int
    rows: int
    mismatches: _containers.RepeatedCompositeFieldContainer[RangeMismatch]
    note: str
    elapsed_seconds: float
    def __init__(self, table: _Optional[str] = ..., key_columns: _Optional[_Iterable[str]] = ..., ranges: _Optional[int] = ..., ranges_agreeing: _Optional[int] = ..., rows: _Optional[int] = ..., mismatches: _Optional[_Iterable[_Union[RangeMismatch, _Mapping]]] = ..., note: _Optional[str] = ..., elapsed_seconds: _Optional[float] = ...) -> None: ...

class VerifyReport(_message.Message):
    __slots__ = ("primary_region", "lsn", "regions", "ranges", "ranges_agreeing", "agreeing_fraction", "rows", "elapsed_seconds", "rows_per_second", "tables", "consistent", "notes", "ranges_unsettled")
    PRIMARY_REGION_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    RANGES_AGREEING_FIELD_NUMBER: _ClassVar[int]
    AGREEING_FRACTION_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROWS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    CONSISTENT_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    RANGES_UNSETTLED_FIELD_NUMBER: _ClassVar[int]
    primary_region: str
    lsn: int
    regions: _containers.RepeatedScalarFieldContainer[str]
    ranges: int
    ranges_agreeing: int
    agreeing_fraction: float
    rows: int
    elapsed_seconds: float
    rows_per_second: float
    tables: _containers.RepeatedCompositeFieldContainer[TableVerdict]
    consistent: bool
    notes: _containers.RepeatedScalarFieldContainer[str]
    ranges_unsettled: int
    def __init__(self, primary_region: _Optional[str] = ..., lsn: _Optional[int] = ..., regions: _Optional[_Iterable[str]] = ..., ranges: _Optional[int] = ..., ranges_agreeing: _Optional[int] = ..., agreeing_fraction: _Optional[float] = ..., rows: _Optional[int] = ..., elapsed_seconds: _Optional[float] = ..., rows_per_second: _Optional[float] = ..., tables: _Optional[_Iterable[_Union[TableVerdict, _Mapping]]] = ..., consistent: _Optional[bool] = ..., notes: _Optional[_Iterable[str]] = ..., ranges_unsettled: _Optional[int] = ...) -> None: ...

class VerifyUpdate(_message.Message):
    __slots__ = ("progress", "report")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    progress: VerifyProgress
    report: VerifyReport
    def __init__(self, progress: _Optional[_Union[VerifyProgress, _Mapping]] = ..., report: _Optional[_Union[VerifyReport, _Mapping]] = ...) -> None: ...
