"""The wire contract's shape: what clients, agents and coordinators program against."""

from types import ModuleType

import pytest
from google.protobuf import descriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from latitude import _genproto
from latitude.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    agent_pb2,
    agent_pb2_grpc,
    common_pb2,
    routing_pb2,
    routing_pb2_grpc,
)

MODULES = [common_pb2, agent_pb2, routing_pb2, admin_pb2]

SERVICE_MODULES: dict[str, ModuleType] = {
    "AgentService": agent_pb2,
    "RoutingService": routing_pb2,
    "AdminService": admin_pb2,
}
# service -> method -> (client streaming, server streaming)
SERVICES: dict[str, dict[str, tuple[bool, bool]]] = {
    "AgentService": {"Connect": (True, True)},
    "RoutingService": {
        "Resolve": (False, False),
        "Watch": (False, True),
        "ReportLatency": (False, False),
    },
    "AdminService": {
        "GetStatus": (False, False),
        "SetStrategy": (False, False),
        "Switchover": (False, False),
        "Failover": (False, False),
        "SetMaintenance": (False, False),
        "ListEvents": (False, False),
        "CheckConsistency": (False, False),
        "GetHistory": (False, False),
        "ListIncidents": (False, False),
    },
}


def _all_enums() -> list[descriptor.EnumDescriptor]:
    enums: list[descriptor.EnumDescriptor] = []

    def visit(message: descriptor.Descriptor) -> None:
        enums.extend(message.enum_types)
        for nested in message.nested_types:
            visit(nested)

    for module in MODULES:
        enums.extend(module.DESCRIPTOR.enum_types_by_name.values())
        for message in module.DESCRIPTOR.message_types_by_name.values():
            visit(message)
    return enums


@pytest.mark.parametrize("service", SERVICES)
def test_services_have_the_expected_methods_and_streaming(service: str) -> None:
    methods = SERVICE_MODULES[service].DESCRIPTOR.services_by_name[service].methods
    actual = {m.name: (m.client_streaming, m.server_streaming) for m in methods}
    assert actual == SERVICES[service]


def test_grpc_stubs_exist_for_every_service() -> None:
    for grpc_module, service in [
        (agent_pb2_grpc, "AgentService"),
        (routing_pb2_grpc, "RoutingService"),
        (admin_pb2_grpc, "AdminService"),
    ]:
        assert hasattr(grpc_module, f"{service}Stub")
        assert hasattr(grpc_module, f"{service}Servicer")
        assert hasattr(grpc_module, f"add_{service}Servicer_to_server")


def test_every_enum_reserves_zero_as_unspecified() -> None:
    enums = _all_enums()
    assert len(enums) >= 10
    for enum in enums:
        prefix = "".join(f"_{c}" if c.isupper() else c.upper() for c in enum.name).lstrip("_")
        assert enum.values_by_number[0].name == f"{prefix}_UNSPECIFIED", enum.full_name
        for value in enum.values:
            assert value.name.startswith(f"{prefix}_"), value.name


def test_stream_messages_are_oneofs_of_the_documented_bodies() -> None:
    agent = agent_pb2.AgentMessage.DESCRIPTOR.oneofs_by_name["body"]
    coordinator = agent_pb2.CoordinatorMessage.DESCRIPTOR.oneofs_by_name["body"]
    assert [f.name for f in agent.fields] == ["hello", "report", "command_result"]
    assert [f.name for f in coordinator.fields] == [
        "welcome",
        "command",
        "not_leader",
        "report_ack",
    ]


def _sample_report() -> agent_pb2.Report:
    return agent_pb2.Report(
        sequence=42,
        sent_at=Timestamp(seconds=1_700_000_000, nanos=500_000_000),
        database=common_pb2.DatabaseStatus(
            role=common_pb2.DATABASE_ROLE_STANDBY,
            timeline_id=3,
            received_lsn=(0x16 << 32) | 0xB374D848,
            replayed_lsn=(0x16 << 32) | 0xB374D000,
            replay_lag_bytes=0x848,
            replay_lag_seconds=0.25,
            wal_receiver_streaming=True,
            upstream_address="10.0.1.5:5432",
            upstream_region="us-east-1",
            system_identifier=7_300_000_000_000_000_001,
        ),
        checks=[
            common_pb2.CheckResult(name="api", ok=True, latency_seconds=0.004),
            common_pb2.CheckResult(name="cache", ok=False, latency_seconds=1.0, error="timeout"),
        ],
        capacity_utilization=0.6,
        error_rate=0.01,
        response_time_seconds=0.012,
        peers=[agent_pb2.PeerRtt(region="eu-west-1", rtt_seconds=0.075, reachable=True)],
    )


def test_report_round_trips_through_the_wire_format() -> None:
    report = _sample_report()
    wire = agent_pb2.AgentMessage(report=report).SerializeToString()

    parsed = agent_pb2.AgentMessage.FromString(wire)

    assert parsed.WhichOneof("body") == "report"
    assert parsed.report == report
    assert parsed.report.database.received_lsn == 0x16_B374_D848
    assert [c.error for c in parsed.report.checks] == ["", "timeout"]


def test_command_carries_typed_arguments_and_an_epoch() -> None:
    command = agent_pb2.Command(
        command_id="c-1",
        epoch=7,
        kind=agent_pb2.COMMAND_KIND_FOLLOW,
        follow=agent_pb2.FollowArgs(
            primary_region="eu-west-1", primary_host="10.0.2.5", primary_port=5432
        ),
    )
    message = agent_pb2.CoordinatorMessage.FromString(
        agent_pb2.CoordinatorMessage(command=command).SerializeToString()
    )
    assert message.command.WhichOneof("args") == "follow"
    assert message.command.follow.primary_port == 5432
    assert message.command.epoch == 7


def test_welcome_intervals_are_durations() -> None:
    welcome = agent_pb2.Welcome(fence_after=Duration(seconds=4))
    assert welcome.fence_after.ToTimedelta().total_seconds() == 4


def test_unset_is_distinguishable_where_zero_is_meaningful() -> None:
    request = routing_pb2.ResolveRequest()
    assert not request.HasField("location")
    assert not request.HasField("max_replica_lag_seconds")
    request.max_replica_lag_seconds = 0.0
    assert request.HasField("max_replica_lag_seconds")

    target = routing_pb2.Target()
    assert not target.HasField("distance_km")
    assert not admin_pb2.FailoverStatus().HasField("data_loss_bound_bytes")
    assert not admin_pb2.ClusterStatus().HasField("failover")


def test_every_declaration_is_documented() -> None:
    # A stranger must be able to write a client from the .proto alone. Paths index into
    # FileDescriptorProto: 4 = message_type, 5 = enum_type, 6 = service, then 2 = method.
    undocumented = []
    for file in _genproto.descriptor_set().file:
        comments = {
            tuple(loc.path): loc.leading_comments.strip() for loc in file.source_code_info.location
        }
        declarations = [((4, i), m.name) for i, m in enumerate(file.message_type)]
        declarations += [((5, i), e.name) for i, e in enumerate(file.enum_type)]
        for i, service in enumerate(file.service):
            declarations.append(((6, i), service.name))
            declarations += [((6, i, 2, j), m.name) for j, m in enumerate(service.method)]
        undocumented += [
            f"{file.name}: {name}" for path, name in declarations if not comments.get(path)
        ]
    assert not undocumented, "no leading comment: " + ", ".join(undocumented)
