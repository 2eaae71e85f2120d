"""RoutingService's bounds on a real in-process gRPC server (port 0): Watch streams per caller,
who may report latencies and how often, and bad fields answered INVALID_ARGUMENT."""

from __future__ import annotations

import asyncio
import dataclasses
import types

import grpc
import pytest

from coordinator.config import CoordinatorConfig
from coordinator.routing.cache import TableCache
from coordinator.routing.latency import PrefixLatencies
from coordinator.routing_service import RoutingService, register
from latitude import pki
from latitude.authz import Authorizer
from latitude.v1 import common_pb2, routing_pb2, routing_pb2_grpc
from tests.unit.routing_tables import REGIONS, make_table, status

CONFIG = CoordinatorConfig(
    regions=tuple(REGIONS),
    streams_per_caller=3,
    streams_total=5,
    # So slow that no token comes back during a test, however slow the machine.
    latency_reports_per_second=1e-9,
    latency_report_burst=4,
)


def leader_node(config: CoordinatorConfig = CONFIG):
    latencies = PrefixLatencies(max_prefixes=100, max_per_caller=8)
    return types.SimpleNamespace(
        config=config, publisher=types.SimpleNamespace(latencies=latencies)
    )


class Served:
    def __init__(self, service: RoutingService, server: grpc.aio.Server, address: str):
        self.service, self.server, self.address = service, server, address


async def serve(node, credentials=None) -> Served:
    cache = TableCache(store=None)
    cache.apply(make_table([status(name) for name in REGIONS]))
    service = RoutingService(node, cache)
    # With TLS, as latitude.serving.Server serves: behind the role check.
    server = grpc.aio.server(interceptors=[Authorizer()] if credentials is not None else [])
    register(service, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return Served(service, server, f"127.0.0.1:{port}")


@pytest.fixture
async def plaintext():
    served = await serve(leader_node())
    yield served
    await served.server.stop(None)
    await served.service.close()


def report(**fields) -> routing_pb2.LatencyReport:
    fields.setdefault("network_prefix", "198.51.100.0/24")
    request = routing_pb2.LatencyReport(**fields)
    request.samples.add(region="eu-west-1", latency_seconds=0.02)
    return request


async def test_watch_streams_are_capped_per_caller_and_freed_when_they_end(plaintext):
    async with grpc.aio.insecure_channel(plaintext.address) as channel:
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        calls = [stub.Watch(routing_pb2.WatchRequest()) for _ in range(3)]
        for call in calls:
            assert (await call.read()).version == 7
        refused = stub.Watch(routing_pb2.WatchRequest())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await refused.read()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 3 Watch streams per caller" in caught.value.details()
        calls[0].cancel()
        deadline = asyncio.get_running_loop().time() + 5
        while plaintext.service.watches.held("anonymous@127.0.0.1") != 2:
            assert asyncio.get_running_loop().time() < deadline, "the slot was never freed"
            await asyncio.sleep(0.01)
        again = stub.Watch(routing_pb2.WatchRequest())
        assert (await again.read()).version == 7
        for call in [*calls[1:], again]:
            call.cancel()


async def test_latency_reports_past_the_callers_rate_are_refused(plaintext):
    async with grpc.aio.insecure_channel(plaintext.address) as channel:
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        for _ in range(4):
            assert (await stub.ReportLatency(report(), timeout=2)).accepted_samples == 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ReportLatency(report(), timeout=2)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "more than 1e-09 latency reports a second" in caught.value.details()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"network_prefix": "1" * 300}, "network_prefix: at most 64 characters"),
        ({"network_prefix": "", "client_ip": "x" * 100_000}, "client_ip: at most 64 characters"),
    ],
)
async def test_oversized_report_fields_are_named(plaintext, fields, field):
    async with grpc.aio.insecure_channel(plaintext.address) as channel:
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ReportLatency(report(**fields), timeout=2)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith(field)


async def test_a_measured_at_out_of_range_is_invalid_not_unknown(plaintext):
    request = report()
    request.samples[0].measured_at.seconds = 2**62
    async with grpc.aio.insecure_channel(plaintext.address) as channel:
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ReportLatency(request, timeout=2)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("samples[0].measured_at: not a valid timestamp")


async def test_a_huge_client_ip_in_resolve_is_named_in_short_details(plaintext):
    async with grpc.aio.insecure_channel(plaintext.address) as channel:
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Resolve(routing_pb2.ResolveRequest(client_ip="x" * 100_000), timeout=2)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("client_ip: ")
    assert len(caught.value.details()) <= 1000


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, pki.CertFiles]:
    ca = tmp_path_factory.mktemp("pki")
    pki.create_ca(ca)
    made = {
        "server": pki.issue(
            ca, "server", identity=pki.Identity("coordinator"), hosts=["127.0.0.1"]
        ),
        "reader": pki.issue(ca, "reader", identity=pki.Identity("reader")),
        "nobody": pki.issue(ca, "nobody"),
    }
    return made


async def serve_tls(certificates, require_client_auth: bool) -> Served:
    cert, key, ca = certificates["server"].read()
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=require_client_auth
    )
    node = leader_node(dataclasses.replace(CONFIG, latency_report_burst=100))
    return await serve(node, credentials)


async def report_as(served: Served, files: pki.CertFiles | None, ca: bytes) -> grpc.StatusCode:
    if files is None:
        credentials = grpc.ssl_channel_credentials(ca)
    else:
        cert, key, ca_pem = files.read()
        credentials = grpc.ssl_channel_credentials(ca_pem, key, cert)
    async with grpc.aio.secure_channel(served.address, credentials) as channel:
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        try:
            await stub.ReportLatency(report(), timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code()
        return grpc.StatusCode.OK


async def test_with_tls_only_a_caller_with_an_identity_may_report(certificates):
    ca = certificates["server"].read()[2]
    served = await serve_tls(certificates, require_client_auth=True)
    try:
        assert await report_as(served, certificates["reader"], ca) == grpc.StatusCode.OK
        nobody = await report_as(served, certificates["nobody"], ca)
        assert nobody == grpc.StatusCode.UNAUTHENTICATED  # a certificate naming no identity
        latencies = served.service._node.publisher.latencies
        assert latencies.held("latitude://role/reader@127.0.0.1") == 1
        assert latencies.entries == 1
    finally:
        await served.server.stop(None)
        await served.service.close()
    # A server that does not ask for certificates: every caller is a stranger.
    served = await serve_tls(certificates, require_client_auth=False)
    try:
        assert await report_as(served, None, ca) == grpc.StatusCode.UNAUTHENTICATED
        assert served.service._node.publisher.latencies.entries == 0
    finally:
        await served.server.stop(None)
        await served.service.close()


def bad_resolve(**fields) -> bytes:
    return routing_pb2.ResolveRequest(**fields).SerializeToString()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (bad_resolve(strategy=99), "strategy: "),
        (bad_resolve(intent=77), "intent: "),
        (bad_resolve(max_replica_lag_seconds=-1.0), "max_replica_lag_seconds: "),
        (bad_resolve(max_replica_lag_seconds=float("nan")), "max_replica_lag_seconds: "),
        (
            bad_resolve(location=common_pb2.Location(latitude=float("nan"), longitude=0.0)),
            "location.latitude",
        ),
        (bad_resolve(location=common_pb2.Location(latitude=0.0, longitude=1e308)), "location."),
        (bad_resolve(client_ip="not an address"), "client_ip: "),
        (b"\xff\xff\xff", "request: not a ResolveRequest"),
    ],
)
async def test_bad_resolve_fields_are_invalid_argument_naming_the_field(plaintext, body, field):
    async with grpc.aio.insecure_channel(plaintext.address) as channel:
        resolve = channel.unary_unary("/latitude.v1.RoutingService/Resolve")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await resolve(body, timeout=2)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
    assert caught.value.details().startswith(field)
