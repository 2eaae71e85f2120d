"""Incidents and webhook alerts on a private stack whose coordinators post to real local
receivers: one that takes everything, one that refuses connections, one that never answers,
one that answers 500, and an escalation target.

A killed primary region must be ONE incident, opened, updated through its failover, and
resolved when the region is back, with no notification said twice in different words after
the leader is killed mid-incident, and the failing receivers must hold nothing up."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
from collections import Counter

import pytest
from aiohttp import web

from latitude import cli
from latitude.admin_client import NoCoordinator, call_any, cluster_status
from latitude.incidents_view import follow
from latitude.stack.harness import running_stack
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2
from tests.integration.connections import TLS, eventually, failover_record

pytestmark = pytest.mark.stack

ESCALATE_AFTER = 3.0
REOPEN_WINDOW = 3.0


class Receivers:
    """aiohttp servers on loopback, in a thread of their own so they outlive each test's
    event loop and serve the coordinators throughout the module."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []
        self.received: list[dict] = []  # path, key header, body, arrival
        self.hung = 0
        self.errored = 0

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def start(self) -> str:
        """Start the receivers; the base URL they answer on."""

        async def take(request: web.Request) -> web.Response:
            body = await request.json()
            self.received.append(
                {
                    "path": request.path,
                    "key": request.headers.get("Idempotency-Key"),
                    "authorization": request.headers.get("Authorization"),
                    "body": body,
                    "at": time.time(),
                }
            )
            return web.Response(status=204)

        async def hang(request: web.Request) -> web.Response:
            self.hung += 1
            await asyncio.sleep(3600)
            return web.Response(status=204)

        async def fail(request: web.Request) -> web.Response:
            self.errored += 1
            return web.Response(status=500, text="receiver broken")

        async def serve() -> int:
            app = web.Application()
            app.router.add_post("/take", take)
            app.router.add_post("/escalate", take)
            app.router.add_post("/hang", hang)
            app.router.add_post("/fail", fail)
            runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.runners.append(runner)
            return site._server.sockets[0].getsockname()[1]

        return f"http://127.0.0.1:{self._run(serve())}"

    def close(self) -> None:
        for runner in self.runners:
            self._run(runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def notifications(self, path: str = "/take", since: float = 0.0) -> list[dict]:
        return [r for r in list(self.received) if r["path"] == path and r["at"] >= since]


def refusing_url() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/refuse"


@pytest.fixture(scope="module")
def alerted():
    """A private stack whose coordinators post to the receivers (the stack's processes take
    the environment of whoever starts them, as with ``latitude up``)."""
    receivers = Receivers()
    base = receivers.start()
    alerts = [
        {"url": f"{base}/take", "min_severity": "warning", "bearer_token": "s3cret"},
        {"url": refusing_url(), "timeout": 1},
        {"url": f"{base}/hang", "timeout": 1},
        {"url": f"{base}/fail", "timeout": 1},
        {"url": f"{base}/escalate", "escalate_after": ESCALATE_AFTER, "name": "escalation"},
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LATITUDE_COORDINATOR_ALERTS", json.dumps(alerts))
        patch.setenv("LATITUDE_COORDINATOR_ALERT_UPDATE_INTERVAL", "1")
        # Short, so that the stack's start (a standby streaming a moment late) is over and
        # done with by the time the test begins.
        patch.setenv("LATITUDE_COORDINATOR_INCIDENT_REOPEN_WINDOW", str(REOPEN_WINDOW))
        try:
            with running_stack() as stack:
                yield stack, receivers
        finally:
            receivers.close()


async def incidents(stack: Stack, include_resolved=True) -> list[admin_pb2.Incident]:
    request = admin_pb2.ListIncidentsRequest(include_resolved=include_resolved)
    addresses = stack.coordinator_addresses(stack.state())
    return list((await call_any(addresses, "ListIncidents", request, 2.0, tls=TLS)).incidents)


async def leader_of(stack: Stack) -> str:
    try:
        view = await cluster_status(stack.coordinator_addresses(stack.state()), 1.0, tls=TLS)
    except NoCoordinator:
        return ""
    return view.leader.leader_id


async def test_a_killed_primary_region_is_one_incident_from_opening_to_resolution(alerted, capsys):
    stack, receivers = alerted
    await eventually(lambda: _quiet(stack), 30, "no incident open or just resolved")
    await stack.status()  # learn the postmaster an agent may have restarted
    followed = io.StringIO()
    following = asyncio.create_task(
        follow(
            stack.coordinator_addresses(stack.state()),
            admin_pb2.ListEventsRequest(limit=1),
            as_json=True,
            timeout=1.0,
            interval=0.2,
            out=followed,
            tls=TLS,
        )
    )
    killed_at = time.time()
    await stack.kill("agent-us-east-1")
    await stack.kill("postgres-us-east-1")

    # The failover goes ahead whatever the refusing, hanging and failing receivers do.
    async def completed():
        record = await failover_record(stack)
        return (
            record
            if record is not None
            and record.started_at.ToNanoseconds() / 1e9 >= killed_at
            and record.phase == admin_pb2.FAILOVER_PHASE_COMPLETED
            else None
        )

    record = await eventually(completed, 20, "the failover away from us-east-1 to complete")
    redirected_in = record.steps["redirected"].ToNanoseconds() / 1e9 - killed_at
    assert redirected_in < 12, f"failover took {redirected_in:.1f} s"

    # One incident: opened for the region, updated with its failover.
    def told(kind: str, path: str = "/take") -> list[dict]:
        """What ``path`` was told since the kill about regions (a leader change storm, should
        the kill make one with the stack's own elections, is the cluster's own incident)."""
        return [
            r
            for r in receivers.notifications(path, killed_at)
            if r["body"]["notification"] == kind
            and r["body"]["incident"]["cause"] != "leader_storm"
        ]

    await eventually(lambda: told("opened"), 10, "an opened notification")
    incident_id = told("opened")[0]["body"]["incident"]["id"]

    def updated_with_failover():
        return [
            r
            for r in told("updated")
            if record.failover_id in r["body"]["incident"]["failover_ids"]
            and "PROMOTED" in json.dumps(r["body"]).upper()
        ]

    await eventually(updated_with_failover, 10, "an update carrying the failover")
    await eventually(lambda: told("escalated", "/escalate"), 10, "the escalation")

    async def with_completion():
        found = {i.id: i for i in await incidents(stack)}[incident_id]
        done = admin_pb2.EVENT_KIND_FAILOVER_COMPLETED in {e.kind for e in found.timeline}
        return found if done else None

    incident = await eventually(with_completion, 10, "the failover's completion on the incident")
    # latitude events --follow saw it live, each event once, in order.
    await eventually(
        lambda: "EVENT_KIND_FAILOVER_COMPLETED" in followed.getvalue(), 5, "--follow to see it"
    )
    following.cancel()
    await asyncio.gather(following, return_exceptions=True)
    seen = [json.loads(line) for line in followed.getvalue().splitlines()]
    sequences = [int(e["sequence"]) for e in seen]
    assert sequences == sorted(set(sequences)), sequences
    assert record.failover_id in {e.get("failover_id") for e in seen}
    assert {"EVENT_KIND_FAILOVER_STARTED", "EVENT_KIND_FAILOVER_COMPLETED"} <= {
        e["kind"] for e in seen
    }
    assert incident.state == admin_pb2.INCIDENT_STATE_OPEN
    assert incident.severity == admin_pb2.SEVERITY_CRITICAL
    assert incident.cause == "region_unhealthy"
    assert "us-east-1" in incident.regions and record.to_region in incident.regions
    assert list(incident.failover_ids) == [record.failover_id]
    assert "us-east-1 healthy" in incident.awaiting
    kinds = {e.kind for e in incident.timeline}
    assert {
        admin_pb2.EVENT_KIND_REGION_STATE_CHANGED,
        admin_pb2.EVENT_KIND_FAILOVER_STARTED,
        admin_pb2.EVENT_KIND_PROMOTED,
        admin_pb2.EVENT_KIND_FAILOVER_COMPLETED,
    } <= kinds
    # The failing receivers were tried, and the incident says how they fail.
    deliveries = {d.target: d for d in incident.deliveries}
    assert receivers.hung and receivers.errored
    failing = [d for d in deliveries.values() if d.failed_attempts]
    errors = " | ".join(d.last_error for d in failing)
    assert len(failing) == 3, deliveries
    assert "HTTP 500" in errors and "no answer within 1 s" in errors
    assert "ClientConnectorError" in errors, errors
    assert told("opened")[0]["authorization"] == "Bearer s3cret"
    # latitude status names it under the cluster's table.
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, ["status", "--dir", str(stack.dir), "--json"])
    shown = json.loads(capsys.readouterr().out)["open_incidents"]
    assert code != 0 and incident_id in [i["id"] for i in shown]

    # The leader killed mid-incident: its successor continues the same incident.
    leader = await leader_of(stack)
    assert leader
    await stack.kill(leader)
    await eventually(
        lambda: _new_leader(stack, leader), 15, f"a leader other than {leader} to be elected"
    )

    # The region back (as a user brings it back): the incident resolves, said once.
    await stack.up()
    try:
        await eventually(lambda: told("resolved"), 30, "the resolved notification")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{await _dump(stack)}") from err
    await eventually(lambda: told("resolved", "/escalate"), 10, "the escalation's resolution")
    resolved = told("resolved")
    assert [r["body"]["incident"]["id"] for r in resolved] == [incident_id]

    # Everything said since the kill was about that one incident ...
    since_kill = [
        r
        for r in receivers.notifications("/take", killed_at)
        if r["body"]["incident"]["cause"] != "leader_storm"
    ]
    assert {r["body"]["incident"]["id"] for r in since_kill} == {incident_id}, [
        (r["body"]["incident"]["id"], r["body"]["incident"]["cause"]) for r in since_kill
    ]
    # ... each notification under its own key, in the payload and the header alike; the
    # successor said nothing its predecessor had said under another key.
    keys = [r["key"] for r in since_kill]
    assert all(r["key"] == r["body"]["idempotency_key"] for r in since_kill)
    revisions = Counter(r["body"]["incident"]["revision"] for r in since_kill)
    assert len(set(keys)) == len(revisions), f"one revision told under two keys: {keys}"
    assert Counter(r["body"]["notification"] for r in since_kill)["opened"] == 1
    # A notification sent again keeps its key (at most the one in flight at the kill).
    copies = sum(n - 1 for n in Counter(keys).values())
    assert copies <= 1, Counter(keys)
    final = {i.id: i for i in await incidents(stack)}[incident_id]
    # Updates came at most every alert_update_interval, not one per event.
    assert len(set(keys)) < len(final.timeline), (keys, len(final.timeline))
    assert final.state == admin_pb2.INCIDENT_STATE_RESOLVED
    assert not final.awaiting
    # Nothing is open any more once the region is healthy.
    await eventually(lambda: _none_open(stack), 15, "no open incident once every region is healthy")


async def _new_leader(stack: Stack, old: str) -> bool:
    leader = await leader_of(stack)
    return bool(leader) and leader != old


async def _dump(stack: Stack) -> str:
    """Every incident and its timeline, for a failure's message."""
    lines = []
    for i in await incidents(stack):
        state = admin_pb2.IncidentState.Name(i.state)
        lines.append(f"{i.id} {state} {i.cause} {list(i.regions)} awaiting {list(i.awaiting)}")
        lines += [f"    {e.sequence} {e.region} {e.message}" for e in i.timeline]
    return "\n".join(lines)


async def _quiet(stack: Stack) -> bool:
    now = time.time()
    return all(
        i.state == admin_pb2.INCIDENT_STATE_RESOLVED
        and now - i.resolved_at.ToNanoseconds() / 1e9 > REOPEN_WINDOW
        for i in await incidents(stack)
    )


async def _none_open(stack: Stack) -> bool:
    found = await incidents(stack, include_resolved=False)
    return not [i for i in found if i.cause != "leader_storm"]
