"""An agent speaks only for the region its certificate names: the pure check, then
AgentService.Connect driven in process with a fake TLS context."""

from __future__ import annotations

from types import SimpleNamespace

import grpc
import pytest

from coordinator.agent_identity import AccessRefused, check_agent_identity
from coordinator.agent_service import AgentService
from coordinator.region_hosts import RegionHosts
from latitude.pki import Identity
from latitude.v1 import admin_pb2, agent_pb2
from tests.unit.agent_contexts import Aborted, Context, Events


def hello(region="eu-west-1") -> agent_pb2.Hello:
    return agent_pb2.Hello(region=region, agent_id=f"{region}/a")


def test_plaintext_has_no_identity_and_the_hello_is_believed():
    check_agent_identity(None, hello())


def test_an_agent_speaks_for_its_own_region():
    check_agent_identity(Identity("agent", "eu-west-1"), hello("eu-west-1"))


def test_an_agent_of_another_region_is_refused_naming_both():
    with pytest.raises(AccessRefused) as refused:
        check_agent_identity(Identity("agent", "ap-southeast-1"), hello("eu-west-1"))
    assert str(refused.value) == (
        "the certificate is for region 'ap-southeast-1' but the hello says 'eu-west-1': an "
        "agent speaks only for the region its certificate names"
    )


@pytest.mark.parametrize("role", ["operator", "reader", "coordinator"])
def test_a_certificate_that_is_not_an_agent_is_refused(role):
    with pytest.raises(AccessRefused, match=f"the {role} role cannot open an agent stream"):
        check_agent_identity(Identity(role), hello())


def test_a_huge_region_in_the_hello_is_not_copied_into_the_refusal():
    with pytest.raises(AccessRefused) as refused:
        check_agent_identity(Identity("agent", "eu-west-1"), hello("x" * 100_000))
    assert len(str(refused.value)) < 300


def node(events: Events):
    # Only what a refusal reaches: a refused stream never gets to the registry.
    config = SimpleNamespace(
        regions=("eu-west-1", "ap-southeast-1"),
        hosts=RegionHosts(),
        streams_per_caller=64,
        streams_total=4096,
    )
    return SimpleNamespace(is_leader=True, config=config, events=events, registry=None)


async def connect(context: Context, events: Events) -> None:
    with pytest.raises(Aborted):
        await AgentService(node(events)).Connect(None, context)


async def test_connect_refuses_a_hello_for_another_region_than_the_certificate():
    events = Events()
    message = agent_pb2.AgentMessage(hello=hello("eu-west-1"))
    context = Context([message], "latitude://region/ap-southeast-1")
    await connect(context, events)
    code, details = context.status
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "'ap-southeast-1'" in details and "'eu-west-1'" in details
    assert context.written == []  # no Welcome, no NotLeader
    [(recorded, fields)] = events.recorded
    assert recorded == admin_pb2.EVENT_KIND_ACCESS_REFUSED and fields["region"] == "eu-west-1"
    assert fields["attributes"]["identity"] == "latitude://region/ap-southeast-1"
    assert "the hello says 'eu-west-1'" in fields["message"]


async def test_connect_refuses_an_operator_before_reading_anything():
    context = Context([], "latitude://role/operator")
    await connect(context, Events())
    assert context.status[0] == grpc.StatusCode.PERMISSION_DENIED
    assert context.status[1] == (
        "a certificate with the operator role cannot open an agent stream (only a region's "
        "agent certificate can)"
    )


async def test_connect_over_tls_without_a_certificate_is_unauthenticated():
    context = Context([agent_pb2.AgentMessage(hello=hello())], None)
    await connect(context, Events())
    assert context.status == (
        grpc.StatusCode.UNAUTHENTICATED,
        "a client certificate is required to open an agent stream",
    )


async def test_a_flood_of_refused_hellos_records_a_bounded_number_of_events():
    """The stream's own refusals share the authorisation layer's bound (coordinator.refusals):
    a stranger repeating a forged Hello cannot flood etcd's event history."""
    events = Events()
    service = AgentService(node(events))
    for _ in range(25):
        context = Context(
            [agent_pb2.AgentMessage(hello=hello("eu-west-1"))], "latitude://region/ap-southeast-1"
        )
        with pytest.raises(Aborted):
            await service.Connect(None, context)
        assert context.status[0] == grpc.StatusCode.PERMISSION_DENIED
    assert len(events.recorded) == 10
