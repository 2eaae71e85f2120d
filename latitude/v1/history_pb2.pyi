from latitude.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthSample(_message.Message):
    __slots__ = ("at_ms", "state", "replay_lag_bytes", "replay_lag_seconds", "weight", "response_time_seconds", "role")
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REPLAY_LAG_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPLAY_LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    at_ms: int
    state: _common_pb2.RegionState
    replay_lag_bytes: int
    replay_lag_seconds: float
    weight: float
    response_time_seconds: float
    role: _common_pb2.DatabaseRole
    def __init__(self, at_ms: _Optional[int] = ..., state: _Optional[_Union[_common_pb2.RegionState, str]] = ..., replay_lag_bytes: _Optional[int] = ..., replay_lag_seconds: _Optional[float] = ..., weight: _Optional[float] = ..., response_time_seconds: _Optional[float] = ..., role: _Optional[_Union[_common_pb2.DatabaseRole, str]] = ...) -> None: ...

class HealthSamples(_message.Message):
    __slots__ = ("samples",)
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[HealthSample]
    def __init__(self, samples: _Optional[_Iterable[_Union[HealthSample, _Mapping]]] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("region", "since_seconds", "max_samples")
    REGION_FIELD_NUMBER: _ClassVar[int]
    SINCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    region: str
    since_seconds: float
    max_samples: int
    def __init__(self, region: _Optional[str] = ..., since_seconds: _Optional[float] = ..., max_samples: _Optional[int] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("region", "samples", "resolution_seconds")
    REGION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    region: str
    samples: _containers.RepeatedCompositeFieldContainer[HealthSample]
    resolution_seconds: float
    def __init__(self, region: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[HealthSample, _Mapping]]] = ..., resolution_seconds: _Optional[float] = ...) -> None: ...
