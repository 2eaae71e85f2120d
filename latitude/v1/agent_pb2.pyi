import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from latitude.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommandKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMAND_KIND_UNSPECIFIED: _ClassVar[CommandKind]
    COMMAND_KIND_FENCE: _ClassVar[CommandKind]
    COMMAND_KIND_UNFENCE: _ClassVar[CommandKind]
    COMMAND_KIND_PROMOTE: _ClassVar[CommandKind]
    COMMAND_KIND_FOLLOW: _ClassVar[CommandKind]
    COMMAND_KIND_REJOIN: _ClassVar[CommandKind]
    COMMAND_KIND_REPORT_NOW: _ClassVar[CommandKind]
    COMMAND_KIND_CHECKPOINT: _ClassVar[CommandKind]
    COMMAND_KIND_SET_SYNCHRONOUS: _ClassVar[CommandKind]
    COMMAND_KIND_STOP_CONFIRMING: _ClassVar[CommandKind]
COMMAND_KIND_UNSPECIFIED: CommandKind
COMMAND_KIND_FENCE: CommandKind
COMMAND_KIND_UNFENCE: CommandKind
COMMAND_KIND_PROMOTE: CommandKind
COMMAND_KIND_FOLLOW: CommandKind
COMMAND_KIND_REJOIN: CommandKind
COMMAND_KIND_REPORT_NOW: CommandKind
COMMAND_KIND_CHECKPOINT: CommandKind
COMMAND_KIND_SET_SYNCHRONOUS: CommandKind
COMMAND_KIND_STOP_CONFIRMING: CommandKind

class ConfirmRequest(_message.Message):
    __slots__ = ("primary_region", "primary_address", "system_identifier")
    PRIMARY_REGION_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    primary_region: str
    primary_address: str
    system_identifier: int
    def __init__(self, primary_region: _Optional[str] = ..., primary_address: _Optional[str] = ..., system_identifier: _Optional[int] = ...) -> None: ...

class ConfirmReply(_message.Message):
    __slots__ = ("region", "confirmed", "reason")
    REGION_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    region: str
    confirmed: bool
    reason: str
    def __init__(self, region: _Optional[str] = ..., confirmed: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("hello", "report", "command_result")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    COMMAND_RESULT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    report: Report
    command_result: CommandResult
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., report: _Optional[_Union[Report, _Mapping]] = ..., command_result: _Optional[_Union[CommandResult, _Mapping]] = ...) -> None: ...

class CoordinatorMessage(_message.Message):
    __slots__ = ("welcome", "command", "not_leader", "report_ack")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    NOT_LEADER_FIELD_NUMBER: _ClassVar[int]
    REPORT_ACK_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    command: Command
    not_leader: NotLeader
    report_ack: ReportAck
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., command: _Optional[_Union[Command, _Mapping]] = ..., not_leader: _Optional[_Union[NotLeader, _Mapping]] = ..., report_ack: _Optional[_Union[ReportAck, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("region", "agent_id", "location", "capacity", "priority", "endpoints", "agent_version", "highest_epoch_seen", "agent_address")
    REGION_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    HIGHEST_EPOCH_SEEN_FIELD_NUMBER: _ClassVar[int]
    AGENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    region: str
    agent_id: str
    location: _common_pb2.Location
    capacity: int
    priority: int
    endpoints: _containers.RepeatedCompositeFieldContainer[_common_pb2.Endpoint]
    agent_version: str
    highest_epoch_seen: int
    agent_address: str
    def __init__(self, region: _Optional[str] = ..., agent_id: _Optional[str] = ..., location: _Optional[_Union[_common_pb2.Location, _Mapping]] = ..., capacity: _Optional[int] = ..., priority: _Optional[int] = ..., endpoints: _Optional[_Iterable[_Union[_common_pb2.Endpoint, _Mapping]]] = ..., agent_version: _Optional[str] = ..., highest_epoch_seen: _Optional[int] = ..., agent_address: _Optional[str] = ...) -> None: ...

class PeerRtt(_message.Message):
    __slots__ = ("region", "rtt_seconds", "reachable")
    REGION_FIELD_NUMBER: _ClassVar[int]
    RTT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    region: str
    rtt_seconds: float
    reachable: bool
    def __init__(self, region: _Optional[str] = ..., rtt_seconds: _Optional[float] = ..., reachable: _Optional[bool] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("sequence", "sent_at", "database", "checks", "capacity_utilization", "error_rate", "response_time_seconds", "peers", "lease")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    sent_at: _timestamp_pb2.Timestamp
    database: _common_pb2.DatabaseStatus
    checks: _containers.RepeatedCompositeFieldContainer[_common_pb2.CheckResult]
    capacity_utilization: float
    error_rate: float
    response_time_seconds: float
    peers: _containers.RepeatedCompositeFieldContainer[PeerRtt]
    lease: Lease
    def __init__(self, sequence: _Optional[int] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., database: _Optional[_Union[_common_pb2.DatabaseStatus, _Mapping]] = ..., checks: _Optional[_Iterable[_Union[_common_pb2.CheckResult, _Mapping]]] = ..., capacity_utilization: _Optional[float] = ..., error_rate: _Optional[float] = ..., response_time_seconds: _Optional[float] = ..., peers: _Optional[_Iterable[_Union[PeerRtt, _Mapping]]] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("remaining_seconds", "failsafe", "confirmed_by", "failsafe_problem")
    REMAINING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FAILSAFE_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_BY_FIELD_NUMBER: _ClassVar[int]
    FAILSAFE_PROBLEM_FIELD_NUMBER: _ClassVar[int]
    remaining_seconds: float
    failsafe: bool
    confirmed_by: _containers.RepeatedScalarFieldContainer[str]
    failsafe_problem: str
    def __init__(self, remaining_seconds: _Optional[float] = ..., failsafe: _Optional[bool] = ..., confirmed_by: _Optional[_Iterable[str]] = ..., failsafe_problem: _Optional[str] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("command_id", "ok", "error", "observed", "agent_epoch", "rewound", "fence_lsn", "last_confirmed_seconds_ago")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    AGENT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    REWOUND_FIELD_NUMBER: _ClassVar[int]
    FENCE_LSN_FIELD_NUMBER: _ClassVar[int]
    LAST_CONFIRMED_SECONDS_AGO_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    ok: bool
    error: str
    observed: _common_pb2.DatabaseStatus
    agent_epoch: int
    rewound: bool
    fence_lsn: int
    last_confirmed_seconds_ago: float
    def __init__(self, command_id: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., observed: _Optional[_Union[_common_pb2.DatabaseStatus, _Mapping]] = ..., agent_epoch: _Optional[int] = ..., rewound: _Optional[bool] = ..., fence_lsn: _Optional[int] = ..., last_confirmed_seconds_ago: _Optional[float] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("leader_id", "epoch", "report_interval", "fence_after", "peer_probe_interval", "ack_every", "word")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    FENCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    PEER_PROBE_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    ACK_EVERY_FIELD_NUMBER: _ClassVar[int]
    WORD_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    epoch: int
    report_interval: _duration_pb2.Duration
    fence_after: _duration_pb2.Duration
    peer_probe_interval: _duration_pb2.Duration
    ack_every: int
    word: ClusterWord
    def __init__(self, leader_id: _Optional[str] = ..., epoch: _Optional[int] = ..., report_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., fence_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., peer_probe_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., ack_every: _Optional[int] = ..., word: _Optional[_Union[ClusterWord, _Mapping]] = ...) -> None: ...

class ClusterWord(_message.Message):
    __slots__ = ("write_region", "failover_in_progress", "maintenance")
    WRITE_REGION_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MAINTENANCE_FIELD_NUMBER: _ClassVar[int]
    write_region: str
    failover_in_progress: bool
    maintenance: bool
    def __init__(self, write_region: _Optional[str] = ..., failover_in_progress: _Optional[bool] = ..., maintenance: _Optional[bool] = ...) -> None: ...

class ReportAck(_message.Message):
    __slots__ = ("sequence", "epoch", "word")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    WORD_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    epoch: int
    word: ClusterWord
    def __init__(self, sequence: _Optional[int] = ..., epoch: _Optional[int] = ..., word: _Optional[_Union[ClusterWord, _Mapping]] = ...) -> None: ...

class NotLeader(_message.Message):
    __slots__ = ("leader_id", "leader_address")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    leader_address: str
    def __init__(self, leader_id: _Optional[str] = ..., leader_address: _Optional[str] = ...) -> None: ...

class PromoteArgs(_message.Message):
    __slots__ = ("min_replayed_lsn", "create_slots", "synchronous_standby_names")
    MIN_REPLAYED_LSN_FIELD_NUMBER: _ClassVar[int]
    CREATE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    SYNCHRONOUS_STANDBY_NAMES_FIELD_NUMBER: _ClassVar[int]
    min_replayed_lsn: int
    create_slots: _containers.RepeatedScalarFieldContainer[str]
    synchronous_standby_names: str
    def __init__(self, min_replayed_lsn: _Optional[int] = ..., create_slots: _Optional[_Iterable[str]] = ..., synchronous_standby_names: _Optional[str] = ...) -> None: ...

class FollowArgs(_message.Message):
    __slots__ = ("primary_region", "primary_host", "primary_port", "slot_name")
    PRIMARY_REGION_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_HOST_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_PORT_FIELD_NUMBER: _ClassVar[int]
    SLOT_NAME_FIELD_NUMBER: _ClassVar[int]
    primary_region: str
    primary_host: str
    primary_port: int
    slot_name: str
    def __init__(self, primary_region: _Optional[str] = ..., primary_host: _Optional[str] = ..., primary_port: _Optional[int] = ..., slot_name: _Optional[str] = ...) -> None: ...

class SynchronousArgs(_message.Message):
    __slots__ = ("synchronous_standby_names",)
    SYNCHRONOUS_STANDBY_NAMES_FIELD_NUMBER: _ClassVar[int]
    synchronous_standby_names: str
    def __init__(self, synchronous_standby_names: _Optional[str] = ...) -> None: ...

class StopConfirmingArgs(_message.Message):
    __slots__ = ("primary_region", "failover_id")
    PRIMARY_REGION_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_ID_FIELD_NUMBER: _ClassVar[int]
    primary_region: str
    failover_id: str
    def __init__(self, primary_region: _Optional[str] = ..., failover_id: _Optional[str] = ...) -> None: ...

class RejoinArgs(_message.Message):
    __slots__ = ("follow", "allow_rewind")
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    ALLOW_REWIND_FIELD_NUMBER: _ClassVar[int]
    follow: FollowArgs
    allow_rewind: bool
    def __init__(self, follow: _Optional[_Union[FollowArgs, _Mapping]] = ..., allow_rewind: _Optional[bool] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("command_id", "epoch", "kind", "promote", "follow", "rejoin", "synchronous", "stop_confirming", "deadline", "reason", "time_limit")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    REJOIN_FIELD_NUMBER: _ClassVar[int]
    SYNCHRONOUS_FIELD_NUMBER: _ClassVar[int]
    STOP_CONFIRMING_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    epoch: int
    kind: CommandKind
    promote: PromoteArgs
    follow: FollowArgs
    rejoin: RejoinArgs
    synchronous: SynchronousArgs
    stop_confirming: StopConfirmingArgs
    deadline: _timestamp_pb2.Timestamp
    reason: str
    time_limit: _duration_pb2.Duration
    def __init__(self, command_id: _Optional[str] = ..., epoch: _Optional[int] = ..., kind: _Optional[_Union[CommandKind, str]] = ..., promote: _Optional[_Union[PromoteArgs, _Mapping]] = ..., follow: _Optional[_Union[FollowArgs, _Mapping]] = ..., rejoin: _Optional[_Union[RejoinArgs, _Mapping]] = ..., synchronous: _Optional[_Union[SynchronousArgs, _Mapping]] = ..., stop_confirming: _Optional[_Union[StopConfirmingArgs, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., time_limit: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class VerifyKey(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class KeyRange(_message.Message):
    __slots__ = ("after", "upto")
    AFTER_FIELD_NUMBER: _ClassVar[int]
    UPTO_FIELD_NUMBER: _ClassVar[int]
    after: VerifyKey
    upto: VerifyKey
    def __init__(self, after: _Optional[_Union[VerifyKey, _Mapping]] = ..., upto: _Optional[_Union[VerifyKey, _Mapping]] = ...) -> None: ...

class VerifyTable(_message.Message):
    __slots__ = ("schema", "name", "key_columns", "estimated_rows")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_ROWS_FIELD_NUMBER: _ClassVar[int]
    schema: str
    name: str
    key_columns: _containers.RepeatedScalarFieldContainer[str]
    estimated_rows: float
    def __init__(self, schema: _Optional[str] = ..., name: _Optional[str] = ..., key_columns: _Optional[_Iterable[str]] = ..., estimated_rows: _Optional[float] = ...) -> None: ...

class VerifyTablesRequest(_message.Message):
    __slots__ = ("min_lsn", "wait_seconds")
    MIN_LSN_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    min_lsn: int
    wait_seconds: float
    def __init__(self, min_lsn: _Optional[int] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class VerifyTablesReply(_message.Message):
    __slots__ = ("region", "standby", "lsn", "tables", "timeline_id")
    REGION_FIELD_NUMBER: _ClassVar[int]
    STANDBY_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_ID_FIELD_NUMBER: _ClassVar[int]
    region: str
    standby: bool
    lsn: int
    tables: _containers.RepeatedCompositeFieldContainer[VerifyTable]
    timeline_id: int
    def __init__(self, region: _Optional[str] = ..., standby: _Optional[bool] = ..., lsn: _Optional[int] = ..., tables: _Optional[_Iterable[_Union[VerifyTable, _Mapping]]] = ..., timeline_id: _Optional[int] = ...) -> None: ...

class ChecksumRequest(_message.Message):
    __slots__ = ("schema", "table", "ranges", "min_lsn", "wait_seconds")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    MIN_LSN_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    schema: str
    table: str
    ranges: _containers.RepeatedCompositeFieldContainer[KeyRange]
    min_lsn: int
    wait_seconds: float
    def __init__(self, schema: _Optional[str] = ..., table: _Optional[str] = ..., ranges: _Optional[_Iterable[_Union[KeyRange, _Mapping]]] = ..., min_lsn: _Optional[int] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class RangeChecksum(_message.Message):
    __slots__ = ("rows", "digest")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    rows: int
    digest: str
    def __init__(self, rows: _Optional[int] = ..., digest: _Optional[str] = ...) -> None: ...

class ChecksumReply(_message.Message):
    __slots__ = ("ranges", "lsn", "standby")
    RANGES_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    STANDBY_FIELD_NUMBER: _ClassVar[int]
    ranges: _containers.RepeatedCompositeFieldContainer[RangeChecksum]
    lsn: int
    standby: bool
    def __init__(self, ranges: _Optional[_Iterable[_Union[RangeChecksum, _Mapping]]] = ..., lsn: _Optional[int] = ..., standby: _Optional[bool] = ...) -> None: ...

class BoundsRequest(_message.Message):
    __slots__ = ("schema", "table", "range", "every", "limit")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    schema: str
    table: str
    range: KeyRange
    every: int
    limit: int
    def __init__(self, schema: _Optional[str] = ..., table: _Optional[str] = ..., range: _Optional[_Union[KeyRange, _Mapping]] = ..., every: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class BoundsReply(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[VerifyKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[VerifyKey, _Mapping]]] = ...) -> None: ...

class RowsRequest(_message.Message):
    __slots__ = ("schema", "table", "range", "limit", "min_lsn", "wait_seconds")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MIN_LSN_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    schema: str
    table: str
    range: KeyRange
    limit: int
    min_lsn: int
    wait_seconds: float
    def __init__(self, schema: _Optional[str] = ..., table: _Optional[str] = ..., range: _Optional[_Union[KeyRange, _Mapping]] = ..., limit: _Optional[int] = ..., min_lsn: _Optional[int] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class RowHash(_message.Message):
    __slots__ = ("key", "digest")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    key: VerifyKey
    digest: str
    def __init__(self, key: _Optional[_Union[VerifyKey, _Mapping]] = ..., digest: _Optional[str] = ...) -> None: ...

class RowsReply(_message.Message):
    __slots__ = ("rows", "truncated", "lsn", "standby")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    STANDBY_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[RowHash]
    truncated: bool
    lsn: int
    standby: bool
    def __init__(self, rows: _Optional[_Iterable[_Union[RowHash, _Mapping]]] = ..., truncated: _Optional[bool] = ..., lsn: _Optional[int] = ..., standby: _Optional[bool] = ...) -> None: ...
