import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from latitude.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Strategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STRATEGY_UNSPECIFIED: _ClassVar[Strategy]
    STRATEGY_GEOGRAPHIC: _ClassVar[Strategy]
    STRATEGY_LATENCY: _ClassVar[Strategy]
    STRATEGY_WEIGHTED: _ClassVar[Strategy]
    STRATEGY_ROUND_ROBIN: _ClassVar[Strategy]
    STRATEGY_HEALTH_BASED: _ClassVar[Strategy]

class Intent(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTENT_UNSPECIFIED: _ClassVar[Intent]
    INTENT_READ: _ClassVar[Intent]
    INTENT_WRITE: _ClassVar[Intent]

class LocationSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOCATION_SOURCE_UNSPECIFIED: _ClassVar[LocationSource]
    LOCATION_SOURCE_EXPLICIT: _ClassVar[LocationSource]
    LOCATION_SOURCE_OVERRIDE: _ClassVar[LocationSource]
    LOCATION_SOURCE_IP_CITY: _ClassVar[LocationSource]
    LOCATION_SOURCE_IP_COUNTRY: _ClassVar[LocationSource]
    LOCATION_SOURCE_DEFAULT: _ClassVar[LocationSource]
STRATEGY_UNSPECIFIED: Strategy
STRATEGY_GEOGRAPHIC: Strategy
STRATEGY_LATENCY: Strategy
STRATEGY_WEIGHTED: Strategy
STRATEGY_ROUND_ROBIN: Strategy
STRATEGY_HEALTH_BASED: Strategy
INTENT_UNSPECIFIED: Intent
INTENT_READ: Intent
INTENT_WRITE: Intent
LOCATION_SOURCE_UNSPECIFIED: LocationSource
LOCATION_SOURCE_EXPLICIT: LocationSource
LOCATION_SOURCE_OVERRIDE: LocationSource
LOCATION_SOURCE_IP_CITY: LocationSource
LOCATION_SOURCE_IP_COUNTRY: LocationSource
LOCATION_SOURCE_DEFAULT: LocationSource

class ResolveRequest(_message.Message):
    __slots__ = ("client_ip", "location", "strategy", "intent", "max_replica_lag_seconds", "max_targets")
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICA_LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_TARGETS_FIELD_NUMBER: _ClassVar[int]
    client_ip: str
    location: _common_pb2.Location
    strategy: Strategy
    intent: Intent
    max_replica_lag_seconds: float
    max_targets: int
    def __init__(self, client_ip: _Optional[str] = ..., location: _Optional[_Union[_common_pb2.Location, _Mapping]] = ..., strategy: _Optional[_Union[Strategy, str]] = ..., intent: _Optional[_Union[Intent, str]] = ..., max_replica_lag_seconds: _Optional[float] = ..., max_targets: _Optional[int] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("region", "weight", "endpoints", "estimated_latency_seconds", "distance_km", "state", "writable", "replay_lag_seconds")
    REGION_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_KM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_FIELD_NUMBER: _ClassVar[int]
    REPLAY_LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    region: str
    weight: float
    endpoints: _containers.RepeatedCompositeFieldContainer[_common_pb2.Endpoint]
    estimated_latency_seconds: float
    distance_km: float
    state: _common_pb2.RegionState
    writable: bool
    replay_lag_seconds: float
    def __init__(self, region: _Optional[str] = ..., weight: _Optional[float] = ..., endpoints: _Optional[_Iterable[_Union[_common_pb2.Endpoint, _Mapping]]] = ..., estimated_latency_seconds: _Optional[float] = ..., distance_km: _Optional[float] = ..., state: _Optional[_Union[_common_pb2.RegionState, str]] = ..., writable: _Optional[bool] = ..., replay_lag_seconds: _Optional[float] = ...) -> None: ...

class RoutingDecision(_message.Message):
    __slots__ = ("targets", "write_region", "table_version", "strategy", "reason", "location_source", "location", "no_healthy_region", "latency_basis", "table_age_seconds")
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    WRITE_REGION_FIELD_NUMBER: _ClassVar[int]
    TABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LOCATION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    NO_HEALTHY_REGION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BASIS_FIELD_NUMBER: _ClassVar[int]
    TABLE_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[Target]
    write_region: str
    table_version: int
    strategy: Strategy
    reason: str
    location_source: LocationSource
    location: _common_pb2.Location
    no_healthy_region: bool
    latency_basis: str
    table_age_seconds: float
    def __init__(self, targets: _Optional[_Iterable[_Union[Target, _Mapping]]] = ..., write_region: _Optional[str] = ..., table_version: _Optional[int] = ..., strategy: _Optional[_Union[Strategy, str]] = ..., reason: _Optional[str] = ..., location_source: _Optional[_Union[LocationSource, str]] = ..., location: _Optional[_Union[_common_pb2.Location, _Mapping]] = ..., no_healthy_region: _Optional[bool] = ..., latency_basis: _Optional[str] = ..., table_age_seconds: _Optional[float] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("known_version",)
    KNOWN_VERSION_FIELD_NUMBER: _ClassVar[int]
    known_version: int
    def __init__(self, known_version: _Optional[int] = ...) -> None: ...

class RegionRoute(_message.Message):
    __slots__ = ("region", "state", "weight", "location", "endpoints", "role", "replay_lag_bytes", "replay_lag_seconds", "capacity", "capacity_utilization", "error_rate", "response_time_seconds", "availability", "readable")
    REGION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REPLAY_LAG_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPLAY_LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    READABLE_FIELD_NUMBER: _ClassVar[int]
    region: str
    state: _common_pb2.RegionState
    weight: float
    location: _common_pb2.Location
    endpoints: _containers.RepeatedCompositeFieldContainer[_common_pb2.Endpoint]
    role: _common_pb2.DatabaseRole
    replay_lag_bytes: int
    replay_lag_seconds: float
    capacity: int
    capacity_utilization: float
    error_rate: float
    response_time_seconds: float
    availability: float
    readable: bool
    def __init__(self, region: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.RegionState, str]] = ..., weight: _Optional[float] = ..., location: _Optional[_Union[_common_pb2.Location, _Mapping]] = ..., endpoints: _Optional[_Iterable[_Union[_common_pb2.Endpoint, _Mapping]]] = ..., role: _Optional[_Union[_common_pb2.DatabaseRole, str]] = ..., replay_lag_bytes: _Optional[int] = ..., replay_lag_seconds: _Optional[float] = ..., capacity: _Optional[int] = ..., capacity_utilization: _Optional[float] = ..., error_rate: _Optional[float] = ..., response_time_seconds: _Optional[float] = ..., availability: _Optional[float] = ..., readable: _Optional[bool] = ...) -> None: ...

class LatencyModel(_message.Message):
    __slots__ = ("base_seconds", "seconds_per_km", "region_factor")
    class RegionFactorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    BASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_PER_KM_FIELD_NUMBER: _ClassVar[int]
    REGION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    base_seconds: float
    seconds_per_km: float
    region_factor: _containers.ScalarMap[str, float]
    def __init__(self, base_seconds: _Optional[float] = ..., seconds_per_km: _Optional[float] = ..., region_factor: _Optional[_Mapping[str, float]] = ...) -> None: ...

class PrefixLatency(_message.Message):
    __slots__ = ("network_prefix", "region", "latency_seconds", "samples", "last_measured_at")
    NETWORK_PREFIX_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    LAST_MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    network_prefix: str
    region: str
    latency_seconds: float
    samples: int
    last_measured_at: _timestamp_pb2.Timestamp
    def __init__(self, network_prefix: _Optional[str] = ..., region: _Optional[str] = ..., latency_seconds: _Optional[float] = ..., samples: _Optional[int] = ..., last_measured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RoutingTable(_message.Message):
    __slots__ = ("version", "generated_at", "write_region", "default_strategy", "default_max_replica_lag_seconds", "regions", "failover_in_progress", "latency_model", "prefix_latencies", "panic_threshold", "overprovisioning_factor", "default_location", "location_overrides")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    GENERATED_AT_FIELD_NUMBER: _ClassVar[int]
    WRITE_REGION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MAX_REPLICA_LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MODEL_FIELD_NUMBER: _ClassVar[int]
    PREFIX_LATENCIES_FIELD_NUMBER: _ClassVar[int]
    PANIC_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OVERPROVISIONING_FACTOR_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LOCATION_FIELD_NUMBER: _ClassVar[int]
    LOCATION_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    version: int
    generated_at: _timestamp_pb2.Timestamp
    write_region: str
    default_strategy: Strategy
    default_max_replica_lag_seconds: float
    regions: _containers.RepeatedCompositeFieldContainer[RegionRoute]
    failover_in_progress: bool
    latency_model: LatencyModel
    prefix_latencies: _containers.RepeatedCompositeFieldContainer[PrefixLatency]
    panic_threshold: float
    overprovisioning_factor: float
    default_location: _common_pb2.Location
    location_overrides: _containers.RepeatedCompositeFieldContainer[LocationOverride]
    def __init__(self, version: _Optional[int] = ..., generated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., write_region: _Optional[str] = ..., default_strategy: _Optional[_Union[Strategy, str]] = ..., default_max_replica_lag_seconds: _Optional[float] = ..., regions: _Optional[_Iterable[_Union[RegionRoute, _Mapping]]] = ..., failover_in_progress: _Optional[bool] = ..., latency_model: _Optional[_Union[LatencyModel, _Mapping]] = ..., prefix_latencies: _Optional[_Iterable[_Union[PrefixLatency, _Mapping]]] = ..., panic_threshold: _Optional[float] = ..., overprovisioning_factor: _Optional[float] = ..., default_location: _Optional[_Union[_common_pb2.Location, _Mapping]] = ..., location_overrides: _Optional[_Iterable[_Union[LocationOverride, _Mapping]]] = ...) -> None: ...

class LocationOverride(_message.Message):
    __slots__ = ("network_prefix", "location")
    NETWORK_PREFIX_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    network_prefix: str
    location: _common_pb2.Location
    def __init__(self, network_prefix: _Optional[str] = ..., location: _Optional[_Union[_common_pb2.Location, _Mapping]] = ...) -> None: ...

class LatencySample(_message.Message):
    __slots__ = ("region", "latency_seconds", "measured_at")
    REGION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    region: str
    latency_seconds: float
    measured_at: _timestamp_pb2.Timestamp
    def __init__(self, region: _Optional[str] = ..., latency_seconds: _Optional[float] = ..., measured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LatencyReport(_message.Message):
    __slots__ = ("network_prefix", "client_ip", "samples")
    NETWORK_PREFIX_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    network_prefix: str
    client_ip: str
    samples: _containers.RepeatedCompositeFieldContainer[LatencySample]
    def __init__(self, network_prefix: _Optional[str] = ..., client_ip: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[LatencySample, _Mapping]]] = ...) -> None: ...

class ReportLatencyResponse(_message.Message):
    __slots__ = ("accepted_samples",)
    ACCEPTED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    accepted_samples: int
    def __init__(self, accepted_samples: _Optional[int] = ...) -> None: ...
