"""The real programs in mutual TLS: two coordinators (latitude-coordinator --tls-*) on an etcd of
their own, and an agent whose certificate names its region. Each door is tried with the wrong
certificate and the right one, and the coordinators' calls to each other (a follower forwarding
to the leader) go through TLS with the coordinator's certificate.

The agent's database is absent (port 1): the agent reports it down, which is all a stream
needs. No session stack: etcd is started here, so this runs beside whatever etcd the stack
uses."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from latitude import pki
from latitude.admin_client import NoCoordinator, call_any, call_leader, cluster_status
from latitude.channels import open_channel
from latitude.errors import LatitudeError
from latitude.pki import CertFiles, Identity
from latitude.stack.ports import allocate
from latitude.v1 import admin_pb2, routing_pb2, routing_pb2_grpc

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="needs the etcd binary")

HOST = "127.0.0.1"


def tls_flags(tls: CertFiles) -> list[str]:
    return ["--tls-ca", str(tls.ca), "--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]


async def until(what: str, probe, timeout: float):
    """Poll ``probe`` (an async callable) until it answers something true; its answer."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = await probe()
            if answer:
                return answer
            last = answer
        except (LatitudeError, grpc.aio.AioRpcError, OSError) as err:
            last = err
        await asyncio.sleep(0.1)
    raise AssertionError(f"gave up waiting {timeout:g} s for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    here: Path = tmp_path_factory.mktemp("tls-programs")
    ca = here / "ca"
    pki.create_ca(ca)
    certs = {
        "c1": pki.issue(ca, "c1", identity=Identity("coordinator"), hosts=[HOST]),
        "c2": pki.issue(ca, "c2", identity=Identity("coordinator"), hosts=[HOST]),
        "us": pki.issue(ca, "us", identity=Identity("agent", "us-east-1"), hosts=[HOST]),
        "eu": pki.issue(ca, "eu", identity=Identity("agent", "eu-west-1"), hosts=[HOST]),
        "operator": pki.issue(ca, "operator", identity=Identity("operator")),
        "reader": pki.issue(ca, "reader", identity=Identity("reader")),
    }
    ports = allocate(HOST, ["etcd", "etcd.peer", "c1", "c2"])
    etcd_url, peer_url = f"http://{HOST}:{ports['etcd']}", f"http://{HOST}:{ports['etcd.peer']}"
    commands = {
        "etcd": [
            shutil.which("etcd"), "--name", "e1", "--data-dir", str(here / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"e1={peer_url}",
        ],
    }  # fmt: skip
    for name in ("c1", "c2"):
        commands[name] = [
            sys.executable, "-m", "coordinator.main", "--id", name,
            "--listen", f"{HOST}:{ports[name]}", "--etcd", f"{HOST}:{ports['etcd']}",
            "--regions", "us-east-1,eu-west-1", *tls_flags(certs[name]),
        ]  # fmt: skip
    coordinators = [f"{HOST}:{ports['c1']}", f"{HOST}:{ports['c2']}"]
    commands["agent"] = [
        sys.executable, "-m", "agent.main", "--region", "us-east-1", "--agent-id", "a-us",
        "--coordinators", ",".join(coordinators), "--listen", f"{HOST}:0", "--db-port", "1",
        *tls_flags(certs["us"]),
    ]  # fmt: skip
    processes: list[subprocess.Popen] = []
    try:
        for name, argv in commands.items():
            with (here / f"{name}.log").open("wb") as log:
                processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
            if name == "etcd":
                asyncio.run(until("etcd", lambda: asyncio.to_thread(_etcd_healthy, etcd_url), 30))
        status = asyncio.run(
            until("a leader that sees the agent", lambda: _agent_seen(coordinators, certs), 60)
        )
        yield certs, coordinators, status.leader.address
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _etcd_healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
        return b'"health":"true"' in answer.read()


async def _agent_seen(coordinators, certs: dict[str, CertFiles]):
    """A leader that sees the agent, named as leader by every coordinator: a follower still
    starting, or not yet knowing its leader, would answer the tests 'no leader'."""
    status = await cluster_status(coordinators, 1.0, tls=certs["reader"])
    regions = {r.region: r for r in status.regions}
    if not (regions.get("us-east-1") and regions["us-east-1"].agent_connected):
        return None
    for address in coordinators:
        try:
            each = await cluster_status([address], 1.0, tls=certs["reader"])
        except LatitudeError:
            return None
        if not each.leader.address or each.leader.address != status.leader.address:
            return None
    return status


async def test_a_reader_reads_and_may_change_nothing(cluster):
    certs, coordinators, leader = cluster
    status = await cluster_status(coordinators, 2.0, tls=certs["reader"])
    assert status.leader.address == leader
    request = admin_pb2.SetStrategyRequest(strategy=routing_pb2.STRATEGY_LATENCY)
    with pytest.raises(LatitudeError, match=r"reader \(latitude://role/reader\) may not call "):
        await call_leader(coordinators, "SetStrategy", request, 3.0, tls=certs["reader"])


async def test_an_operator_changes_the_cluster_through_a_follower(cluster):
    certs, coordinators, leader = cluster
    follower = next(a for a in coordinators if a != leader)
    request = admin_pb2.SetStrategyRequest(strategy=routing_pb2.STRATEGY_WEIGHTED)
    answer = await call_leader([follower], "SetStrategy", request, 3.0, tls=certs["operator"])
    assert answer.table_version > 0


async def test_a_follower_forwards_to_the_leader_over_tls(cluster):
    """CheckConsistency and ReportLatency: the follower calls the leader with its own
    coordinator certificate, the only way such a call is let in."""
    certs, coordinators, leader = cluster
    follower = next(a for a in coordinators if a != leader)
    request = admin_pb2.CheckConsistencyRequest(fresh=True)
    report = await call_any([follower], "CheckConsistency", request, 5.0, tls=certs["operator"])
    assert {r.region for r in report.regions} >= {"us-east-1"}
    # A forward that failed would fall back to the published readings, saying so.
    assert not [r.detail for r in report.regions if "could not be asked" in r.detail]
    async with open_channel(follower, certs["reader"]) as channel:
        answer = await routing_pb2_grpc.RoutingServiceStub(channel).ReportLatency(
            routing_pb2.LatencyReport(
                client_ip="10.1.2.3",
                samples=[routing_pb2.LatencySample(region="us-east-1", latency_seconds=0.01)],
            ),
            timeout=5.0,
        )
    assert answer.accepted_samples == 1


async def test_another_regions_agent_and_a_plaintext_client_are_refused(cluster):
    certs, coordinators, leader = cluster
    with pytest.raises(NoCoordinator):
        await cluster_status(coordinators, 2.0)  # plaintext against TLS ports
    request = admin_pb2.SwitchoverRequest(target_region="eu-west-1")
    with pytest.raises(LatitudeError, match=r"agent of eu-west-1 .* only operator may"):
        await call_leader([leader], "Switchover", request, 3.0, tls=certs["eu"])


async def test_refusals_are_events_with_the_callers_identity(cluster):
    """Recorded by the leader (a follower only logs): each try is refused by the current
    leader, in case leadership moved."""
    certs, coordinators, _ = cluster
    request = admin_pb2.SetMaintenanceRequest(region="eu-west-1", enabled=True)
    wanted = admin_pb2.ListEventsRequest(kinds=[admin_pb2.EVENT_KIND_ACCESS_REFUSED])

    async def recorded():
        leader = (await cluster_status(coordinators, 2.0, tls=certs["reader"])).leader.address
        with pytest.raises(LatitudeError, match="may not call"):
            await call_leader([leader], "SetMaintenance", request, 3.0, tls=certs["reader"])
        events = await call_any(coordinators, "ListEvents", wanted, 2.0, tls=certs["reader"])
        return [e for e in events.events if "SetMaintenance" in e.attributes["method"]]

    (event, *_) = await until("the refusal to be recorded", recorded, 15)
    assert event.attributes["identity"] == "latitude://role/reader"
    assert event.attributes["code"] == "PERMISSION_DENIED"
    assert event.severity == admin_pb2.SEVERITY_WARNING
