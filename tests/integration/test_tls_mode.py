"""The whole stack in TLS mode (``latitude up --tls``): every process runs with its
certificate, the CLI speaks as the operator, clients route as readers, a kill -9 fails over,
a restart keeps identities, and ``latitude certs renew`` replaces every certificate one
process at a time.

The plaintext suite covers each behaviour in depth; this module runs the scenarios that prove
them over mutual TLS, on one stack (``tls_stack``), in the order a user would meet them."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from pathlib import Path

import pytest

from latitude import cli, pki
from latitude.admin_client import NoCoordinator, call_leader, cluster_status
from latitude.client import RoutingClient
from latitude.stack.stack import Stack
from latitude.stack.state import StackState
from latitude.v1 import admin_pb2, common_pb2, routing_pb2
from tests.integration.connections import eventually, streams_to

pytestmark = pytest.mark.stack

HEALTHY = common_pb2.REGION_STATE_HEALTHY


def _addresses(stack: Stack) -> list[str]:
    return stack.coordinator_addresses(stack.state())


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


async def _view(stack: Stack, role: str = "reader") -> admin_pb2.ClusterStatus | None:
    try:
        tls = stack.client_tls(stack.state(), role)
        return await cluster_status(_addresses(stack), 1.0, tls=tls)
    except NoCoordinator:
        return None


async def _ready(stack: Stack, timeout: float) -> None:
    async def ready() -> bool:
        return (await stack.status()).ready

    await eventually(ready, timeout, "the stack to be ready (every region HEALTHY)")


async def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = await asyncio.to_thread(cli.main, list(argv))
    out, err = capsys.readouterr()
    return code, out + err


async def test_every_component_runs_with_its_own_certificate(tls_stack: Stack):
    stack = tls_stack
    state = stack.state()
    assert state.tls is not None and (stack.dir / "tls" / "ca.crt").exists()
    status = await stack.status()
    assert status.ready and status.tls is not None and not status.tls.flagged
    names = [*stack.topology.coordinators, *(f"agent-{r.name}" for r in stack.topology.regions)]
    for name in names:
        argv = _cmdline(state.processes[name].pid)
        files = state.cert_files(name)
        assert argv[argv.index("--tls-cert") + 1] == str(files.cert), name
        assert argv[argv.index("--tls-ca") + 1] == str(files.ca), name
    assert pki.describe(state.cert_files("agent-eu-west-1").cert).identity == pki.Identity(
        "agent", "eu-west-1"
    )
    # A plaintext ``up`` of a TLS stack is refused, naming what to do.
    with pytest.raises(Exception, match="runs in TLS, not plaintext: run `latitude down`"):
        await Stack(type(stack.config)(dir=stack.dir, tls=False)).up()


async def test_the_cli_speaks_as_the_operator(tls_stack: Stack, capsys):
    stack = tls_stack
    directory = str(stack.dir)
    code, out = await _cli(capsys, "status", "--dir", directory)
    assert code == 0, out
    assert "security: mutual TLS, CA fingerprint SHA-256" in out
    code, out = await _cli(capsys, "status", "--dir", directory, "--json")
    security = json.loads(out)["security"]
    assert security["mode"] == "tls" and security["flagged"] == {}
    code, out = await _cli(capsys, "certs", "--dir", directory)
    assert code == 0 and "agent of us-east-1" in out and "operator" in out, out
    # A change needs the operator's certificate, which the CLI takes from the stack.
    code, out = await _cli(capsys, "strategy", "latency", "--dir", directory)
    assert code == 0 and "default strategy latency (was geographic)" in out, out
    code, out = await _cli(capsys, "strategy", "geographic", "--dir", directory)
    assert code == 0, out
    # Another cluster's way: explicit flags. A reader's certificate may look, not change.
    reader = stack.client_tls(stack.state(), "reader")
    as_reader = [
        "--tls-ca",
        str(reader.ca),
        "--tls-cert",
        str(reader.cert),
        "--tls-key",
        str(reader.key),
        "--coordinators",
        ",".join(_addresses(stack)),
    ]
    code, out = await _cli(capsys, "events", "--dir", "/nonexistent", "--limit", "3", *as_reader)
    assert code == 0, out
    code, out = await _cli(capsys, "strategy", "latency", "--dir", "/nonexistent", *as_reader)
    assert code == 1 and "latitude:" in out, out
    assert (await _view(stack)).strategy == routing_pb2.STRATEGY_GEOGRAPHIC


async def test_readers_route_over_tls(tls_stack: Stack):
    stack = tls_stack
    reader = stack.client_tls(stack.state(), "reader")
    async with RoutingClient(_addresses(stack), tls=reader) as routing:
        decision = routing.resolve(location=(51.5, -0.1), intent="read")
        assert decision.targets[0].region == "eu-west-1"
        assert routing.resolve(intent="write").targets[0].region == "us-east-1"
        # A change reaches the watching client: the operator sets a strategy.
        version = routing.version
        operator = stack.client_tls(stack.state(), "operator")
        request = admin_pb2.SetStrategyRequest(strategy=routing_pb2.STRATEGY_LATENCY)
        await call_leader(_addresses(stack), "SetStrategy", request, 5, tls=operator)
        table = await routing.wait_for(lambda t: t.version > version, 5)
        assert table.default_strategy == routing_pb2.STRATEGY_LATENCY
        request.strategy = routing_pb2.STRATEGY_GEOGRAPHIC
        await call_leader(_addresses(stack), "SetStrategy", request, 5, tls=operator)


async def test_switchover_as_operator_and_back(tls_stack: Stack, capsys):
    stack = tls_stack
    for target, old in (("eu-west-1", "us-east-1"), ("us-east-1", "eu-west-1")):
        code, out = await _cli(capsys, "switchover", "--to", target, "--dir", str(stack.dir))
        assert code == 0 and "COMPLETED" in out, out
        await streams_to(stack, target, old, timeout=30)
    await _ready(stack, 30)


async def test_a_kill_9_of_the_primary_region_fails_over_and_up_brings_it_back(
    tls_stack: Stack,
):
    stack = tls_stack
    await stack.status()  # an agent may have restarted its server: learn the postmaster
    killed_at = time.monotonic()
    await stack.kill("agent-us-east-1")
    await stack.kill("postgres-us-east-1")

    async def failed_over():
        view = await _view(stack)
        moved = view is not None and view.write_region not in ("", "us-east-1")
        return view if moved and not view.HasField("failover") else None

    view = await eventually(failed_over, 30, "a failover away from us-east-1")
    took = time.monotonic() - killed_at
    new_primary = view.write_region
    # ``up`` restarts the region with the certificates it had; it rejoins as a standby.
    serial = pki.describe(stack.state().cert_files("agent-us-east-1").cert).serial
    await stack.up()
    assert pki.describe(stack.state().cert_files("agent-us-east-1").cert).serial == serial
    await streams_to(stack, new_primary, "us-east-1", timeout=30)
    await _ready(stack, 30)
    assert took < 15, f"the failover took {took:.1f} s"


async def test_certs_renew_replaces_every_certificate_one_process_at_a_time(
    tls_stack: Stack, capsys
):
    stack = tls_stack
    state = stack.state()
    before = {n: pki.describe(state.cert_files(n).cert).serial for n in state.tls["certs"]}
    pids = {n: r.pid for n, r in state.processes.items()}
    code, out = await _cli(capsys, "certs", "renew", "--days", "90", "--dir", str(stack.dir))
    assert code == 0, out
    state = StackState.load(stack.dir)
    for name, serial in before.items():
        info = pki.describe(state.cert_files(name).cert)
        assert info.serial != serial, name
        assert info.not_after - info.not_before < datetime.timedelta(days=91)
    for name in [*stack.topology.coordinators, *(f"agent-{r}" for r in ("us-east-1",))]:
        assert state.processes[name].pid != pids[name], f"{name} was not restarted"
    # Never all at once: each process is back (answering, its region HEALTHY) before the
    # next one stops.
    steps = [
        (line.split()[2], "stopped" if "stopped (pid" in line else "back")
        for line in out.splitlines()
        if "stopped (pid" in line or "back, with its new certificate" in line
    ]
    restarted = [name for name, kind in steps if kind == "stopped"]
    assert steps == [(n, k) for n in restarted for k in ("stopped", "back")], out
    assert set(restarted) >= {*stack.topology.coordinators, "agent-us-east-1"}, out
    await _ready(stack, 30)
    assert (await _view(stack, "operator")).leader.leader_id
