"""The dashboard's HTTP side on a real aiohttp server: its JSON API, the event stream, and its
answers to bad input. The cluster view comes from the real AdminService.GetStatus over an
in-memory store, as on a follower (no registry: everything read from the store)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from coordinator import history, keys
from coordinator.admin_service import AdminService
from coordinator.dashboard import install
from coordinator.dashboard.source import SharedReads, Unavailable
from coordinator.dashboard.stream import Hub, Page
from coordinator.history import HealthHistory
from coordinator.store import LeaderInfo
from latitude.errors import LatitudeError
from latitude.v1 import admin_pb2, common_pb2, history_pb2, routing_pb2
from latitude.web import WebServer

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")


class MemoryStore:
    """The reads AdminService and the dashboard make; ``stalled`` makes every read hang."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.leader_info: LeaderInfo | None = LeaderInfo("coordinator-1", "10.0.0.1:7000", 3, 1.0)
        self.stalled = False
        self.reads = 0
        self.revision = 1
        self.watchers: list[asyncio.Queue] = []

    async def _read(self) -> None:
        self.reads += 1
        if self.stalled:
            await asyncio.Event().wait()

    async def leader(self):
        await self._read()
        return self.leader_info, 1

    async def read(self, name: str) -> bytes | None:
        await self._read()
        return self.data.get(name)

    async def read_prefix(self, name: str) -> dict[str, bytes]:
        await self._read()
        return {k.removeprefix(f"{name}/"): v for k, v in self.data.items() if k.startswith(name)}

    async def read_page(self, name: str, *, limit: int, before: str = "", newest_first=False):
        await self._read()
        found = sorted((k.removeprefix(f"{name}/"), v) for k, v in self.data.items()
                       if k.startswith(f"{name}/"))  # fmt: skip
        return (found[::-1] if newest_first else found)[:limit]

    async def read_at(self, name: str) -> tuple[bytes | None, int]:
        await self._read()
        return self.data.get(name), self.revision

    async def watch(self, name: str, start_revision: int):
        changes: asyncio.Queue = asyncio.Queue()
        self.watchers.append(changes)
        try:
            while True:
                changed, value = await changes.get()
                if changed == name:
                    yield value
        finally:
            self.watchers.remove(changes)

    def put(self, name: str, value: bytes) -> None:
        """A write that watchers see, as the leader's are."""
        self.data[name] = value
        self.revision += 1
        for changes in self.watchers:
            changes.put_nowait((name, value))

    def region(self, name: str, state: int, role: int = common_pb2.DATABASE_ROLE_STANDBY) -> None:
        status = admin_pb2.RegionStatus(region=name, state=state, state_reason="as set")
        status.database.role = role
        status.last_report_at.FromNanoseconds(time.time_ns())
        self.data[f"{keys.REGIONS}/{name}"] = status.SerializeToString()

    def event(self, sequence: int, message: str) -> None:
        event = admin_pb2.Event(sequence=sequence, kind=admin_pb2.EVENT_KIND_ALERT, message=message)
        event.time.FromNanoseconds(time.time_ns())
        self.data[f"{keys.EVENTS}/{sequence:020d}"] = event.SerializeToString()


class Members:
    async def statuses(self):
        return []


@dataclass
class Routing:
    table: routing_pb2.RoutingTable | None = None


@dataclass
class Config:
    regions: tuple[str, ...] = REGIONS


@dataclass
class Follower:
    """What the dashboard, GetStatus and GetHistory read of a CoordinatorNode that does not
    lead: everything comes from the store."""

    store: MemoryStore
    id: str = "coordinator-2"
    config: Config = field(default_factory=Config)
    routing: Routing = field(default_factory=Routing)
    history: HealthHistory = field(init=False)

    def __post_init__(self) -> None:
        self.history = HealthHistory(self.store, self.config.regions)


def healthy_store() -> MemoryStore:
    store = MemoryStore()
    store.region("us-east-1", common_pb2.REGION_STATE_HEALTHY, common_pb2.DATABASE_ROLE_PRIMARY)
    store.region("eu-west-1", common_pb2.REGION_STATE_HEALTHY)
    store.region("ap-southeast-1", common_pb2.REGION_STATE_HEALTHY)
    store.data[keys.WRITE_REGION] = b"us-east-1"
    return store


@pytest.fixture
async def dashboard():
    """(client, node, hub) of a dashboard on a WebServer's app, as coordinator/main wires it."""
    node = Follower(healthy_store())
    node.routing.table = routing_pb2.RoutingTable(
        version=7,
        default_strategy=routing_pb2.STRATEGY_GEOGRAPHIC,
        regions=[routing_pb2.RegionRoute(region=r, weight=w)
                 for r, w in (("us-east-1", 0.5), ("eu-west-1", 0.3), ("ap-southeast-1", 0.2))],
    )  # fmt: skip
    web = WebServer("127.0.0.1:0")
    hub = install(web.app, node, AdminService(node, Members()), timeout=0.3, interval=0.05)
    async with TestClient(TestServer(web.app)) as client:
        yield client, node, hub


async def test_status_is_what_getstatus_answers_on_a_follower(dashboard):
    client, _, _ = dashboard
    response = await client.get("/api/status")
    assert response.status == 200
    view = await response.json()
    assert view["responder"] == "coordinator-2"
    assert view["leader"]["id"] == "coordinator-1"
    assert (view["write_region"], view["strategy"], view["table_version"]) == (
        "us-east-1",
        "GEOGRAPHIC",
        7,
    )
    regions = {r["name"]: r for r in view["regions"]}
    assert set(regions) == set(REGIONS)
    assert {r["state"] for r in regions.values()} == {"HEALTHY"}
    assert regions["us-east-1"]["write"] and regions["us-east-1"]["role"] == "primary"
    assert regions["eu-west-1"]["weight"] == 0.3


async def test_a_finished_failover_stays_on_the_page_with_its_steps(dashboard):
    client, node, _ = dashboard
    record = admin_pb2.FailoverStatus(
        failover_id="abc",
        phase=admin_pb2.FAILOVER_PHASE_COMPLETED,
        from_region="us-east-1",
        to_region="eu-west-1",
    )
    for name in ("started_at", "finished_at"):
        getattr(record, name).FromNanoseconds(time.time_ns())
    record.steps["promoted"].FromNanoseconds(time.time_ns())
    node.store.data[keys.FAILOVER] = record.SerializeToString()
    view = await (await client.get("/api/status")).json()
    assert view["failover"]["id"] == "abc" and view["failover"]["phase"] == "COMPLETED"
    assert [s["name"] for s in view["failover"]["steps"]] == ["promoted"]


async def test_a_stalled_etcd_answers_503_in_time_rather_than_hang(dashboard):
    client, node, _ = dashboard
    node.store.stalled = True
    started = time.monotonic()
    response = await client.get("/api/status")
    assert response.status == 503
    assert "etcd did not answer" in (await response.json())["error"]
    assert time.monotonic() - started < 2.0
    response = await client.get("/api/events")
    assert response.status == 503


async def test_page_loads_at_once_share_one_read(dashboard):
    client, node, _ = dashboard
    before = node.store.reads
    answers = await asyncio.gather(*(client.get("/api/status") for _ in range(20)))
    assert {a.status for a in answers} == {200}
    # One GetStatus (leader, regions, write region, failover) plus the dashboard's failover
    # read: a handful, not twenty times as many.
    assert node.store.reads - before <= 5


async def test_an_unknown_region_or_path_answers_404_in_json(dashboard):
    client, _, _ = dashboard
    response = await client.get("/api/history/mars-north-1")
    assert response.status == 404
    error = (await response.json())["error"]
    assert "mars-north-1" in error and "us-east-1" in error
    for path in ("/api/nothing", "/nothing", "/static/nothing.js"):
        response = await client.get(path)
        assert response.status == 404, path
        assert path in (await response.json())["error"]
    response = await client.post("/api/status")
    assert response.status == 405
    assert "GET" in (await response.json())["error"]


async def test_bad_query_numbers_answer_400_naming_the_field(dashboard):
    client, _, _ = dashboard
    for query in ("limit=abc", "limit=0", "limit=5000", "limit=nan"):
        response = await client.get(f"/api/events?{query}")
        assert response.status == 400, query
        assert "limit" in (await response.json())["error"]
    response = await client.get("/api/history/us-east-1?seconds=-1")
    assert response.status == 400


async def test_metrics_and_the_page_are_served_beside_the_api(dashboard):
    client, _, _ = dashboard
    response = await client.get("/metrics")
    assert response.status == 200
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    assert "/api/stream" not in await page.text()  # the script holds it
    script = await client.get("/static/dashboard.js")
    assert script.status == 200 and "EventSource" in await script.text()


async def test_events_are_the_newest_oldest_first(dashboard):
    client, node, _ = dashboard
    for sequence in range(1, 8):
        node.store.event(sequence, f"event {sequence}")
    body = await (await client.get("/api/events?limit=3")).json()
    assert [e["sequence"] for e in body["events"]] == [5, 6, 7]
    assert body["events"][-1]["message"] == "event 7"


async def test_history_is_what_gethistory_reads_from_etcd_on_any_replica(dashboard):
    client, node, _ = dashboard
    body = await (await client.get("/api/history/eu-west-1")).json()
    assert body["region"] == "eu-west-1" and body["samples"] == []
    now_ms = time.time_ns() // 1_000_000
    healthy, unhealthy = common_pb2.REGION_STATE_HEALTHY, common_pb2.REGION_STATE_UNHEALTHY
    for ago, state in ((120, healthy), (5, unhealthy)):
        at_ms = now_ms - ago * 1000
        start = history.bucket_start(at_ms, history.RAW_BUCKET)
        name = history.bucket_name("eu-west-1", history.RAW, start)
        bucket = history_pb2.HealthSamples.FromString(node.store.data.get(name, b""))
        bucket.samples.add(at_ms=at_ms, state=state, replay_lag_seconds=ago / 100)
        node.store.data[name] = bucket.SerializeToString()
    # The first answer (no samples) is reused for a moment; a page asks again every 5 s.
    body = await (await client.get("/api/history/eu-west-1?seconds=600")).json()
    assert [s["state"] for s in body["samples"]] == ["HEALTHY", "UNHEALTHY"]
    assert body["samples"][1]["lag_seconds"] == 0.05
    body = await (await client.get("/api/history/eu-west-1?seconds=60")).json()
    assert [s["state"] for s in body["samples"]] == ["UNHEALTHY"], "older than asked"
    node.store.stalled = True
    response = await client.get("/api/history/us-east-1")
    assert response.status == 503


async def test_a_failure_inside_answers_500_in_json_and_the_rest_goes_on(dashboard):
    client, node, _ = dashboard

    async def broken(*args):
        raise RuntimeError("bucket unreadable")

    node.history = SimpleNamespace(read=broken)
    response = await client.get("/api/history/eu-west-1")
    assert response.status == 500
    assert "bucket unreadable" in (await response.json())["error"]
    assert (await client.get("/api/status")).status == 200


async def test_incidents_say_when_no_provider_answers():
    node = Follower(healthy_store())
    service = AdminService(node, Members())
    # A service without ListIncidents, and no provider: nothing to list incidents with.
    admin = SimpleNamespace(GetStatus=service.GetStatus, GetHistory=service.GetHistory)

    async def some():
        return [{"id": "i1", "severity": "CRITICAL", "title": "us-east-1 unhealthy"}]

    async def broken():
        raise LatitudeError("incidents unreadable")

    for provider, expected in (
        (None, {"available": False, "incidents": []}),
        (some, {"available": True, "incidents": [{"id": "i1", "severity": "CRITICAL",
                                                   "title": "us-east-1 unhealthy"}]}),
        (broken, {"available": False, "incidents": [], "error": "incidents unreadable"}),
    ):  # fmt: skip
        web = WebServer("127.0.0.1:0")
        install(web.app, node, admin, incidents=provider, timeout=0.3)
        async with TestClient(TestServer(web.app)) as client:
            assert await (await client.get("/api/incidents")).json() == expected


@pytest.mark.skipif(
    not hasattr(admin_pb2, "ListIncidentsRequest"), reason="AdminService has no ListIncidents yet"
)
async def test_open_incidents_come_from_list_incidents_when_the_service_has_it():
    node = Follower(healthy_store())
    incident = admin_pb2.Incident(
        id="inc-7", cause="failover", severity=admin_pb2.SEVERITY_WARNING, summary="promoted"
    )
    incident.opened_at.FromNanoseconds(time.time_ns())
    asked = []

    class Admin(AdminService):
        async def ListIncidents(self, request, context):
            asked.append(request)
            return admin_pb2.ListIncidentsResponse(incidents=[incident])

    web = WebServer("127.0.0.1:0")
    install(web.app, node, Admin(node, Members()), timeout=0.3)
    async with TestClient(TestServer(web.app)) as client:
        body = await (await client.get("/api/incidents")).json()
    assert body["available"]
    assert [(i["id"], i["severity"], i["summary"]) for i in body["incidents"]] == [
        ("inc-7", "WARNING", "promoted")
    ]
    assert not asked[0].include_resolved, "only open incidents"


async def next_event(response, kind: str, timeout: float = 5.0) -> dict:
    """The data of the next server-sent event of ``kind`` on ``response``."""
    async with asyncio.timeout(timeout):
        current = None
        while True:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                current = line.removeprefix("event: ")
            elif line.startswith("data: ") and current == kind:
                return json.loads(line.removeprefix("data: "))


async def test_the_stream_pushes_each_change_as_it_is_published(dashboard):
    client, node, hub = dashboard
    response = await client.get("/api/stream")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    first = await next_event(response, "status")
    assert {r["state"] for r in first["regions"]} == {"HEALTHY"}
    assert await next_event(response, "events") == [], "no event yet"
    node.store.event(1, "us-east-1 went quiet")
    events = await next_event(response, "events")
    assert [e["message"] for e in events] == ["us-east-1 went quiet"]

    node.store.region("us-east-1", common_pb2.REGION_STATE_UNHEALTHY)
    deadline = time.monotonic() + 5
    while True:
        view = await next_event(response, "status")
        states = {r["name"]: r["state"] for r in view["regions"]}
        if states["us-east-1"] == "UNHEALTHY":
            break
        assert time.monotonic() < deadline, f"never saw us-east-1 UNHEALTHY: {states}"
    assert hub.pages == 1
    response.close()


async def test_every_phase_of_a_failover_is_pushed_as_it_is_written_however_quick():
    node = Follower(healthy_store())
    web = WebServer("127.0.0.1:0")
    # Status read once a minute: only the watch can bring the phases in time.
    install(web.app, node, AdminService(node, Members()), timeout=0.3, interval=60)
    record = admin_pb2.FailoverStatus(failover_id="f1", from_region="us-east-1")
    record.started_at.FromNanoseconds(time.time_ns())
    async with TestClient(TestServer(web.app)) as client:
        response = await client.get("/api/stream")
        assert await next_event(response, "failover") is None, "no failover on record yet"
        phases = (
            admin_pb2.FAILOVER_PHASE_FENCING,
            admin_pb2.FAILOVER_PHASE_SELECTING,
            admin_pb2.FAILOVER_PHASE_PROMOTING,
            admin_pb2.FAILOVER_PHASE_REPOINTING,
            admin_pb2.FAILOVER_PHASE_COMPLETED,
        )
        for phase in phases:
            record.phase = phase
            record.updated_at.FromNanoseconds(time.time_ns())
            node.store.put(keys.FAILOVER, record.SerializeToString())
        seen = [(await next_event(response, "failover"))["phase"] for _ in phases]
        assert seen == ["FENCING", "SELECTING", "PROMOTING", "REPOINTING", "COMPLETED"]
        # And the status is read again at once, not a minute later.
        async with asyncio.timeout(5):
            while True:
                view = await next_event(response, "status")
                if view["failover"] and view["failover"]["phase"] == "COMPLETED":
                    break
        response.close()


async def test_the_stream_says_when_the_view_cannot_be_read(dashboard):
    client, node, _ = dashboard
    node.store.stalled = True
    response = await client.get("/api/stream")
    problem = await next_event(response, "unavailable")
    assert "etcd did not answer" in problem["error"]
    response.close()


async def test_shutting_the_listener_down_ends_every_stream(dashboard):
    client, _, hub = dashboard
    response = await client.get("/api/stream")
    await next_event(response, "status")
    await hub.close()
    async with asyncio.timeout(5):
        while await response.content.readline():
            pass  # the rest of what was queued, then the end
    assert hub.pages == 0
    assert (await client.get("/api/stream")).status == 503


async def test_shared_reads_are_one_in_flight_reused_for_a_while_and_forgotten_after():
    now = [0.0]
    reads = SharedReads(reuse=1.0, timeout=1.0, clock=lambda: now[0])
    calls = []

    async def read(value):
        calls.append(value)
        await asyncio.sleep(0.01)
        return value

    first = await asyncio.gather(*(reads.get("a", lambda: read(1)) for _ in range(5)))
    assert first == [1] * 5 and calls == [1], "one read for callers at once"
    assert await reads.get("a", lambda: read(2)) == 1, "reused"
    now[0] = 1.5
    assert await reads.get("a", lambda: read(3)) == 3, "read again once stale"
    for window in range(100):  # windows asked for by pages, each its own key
        await reads.get(("history", window), lambda w=window: read(w))
    now[0] = 3.0
    await reads.get("b", lambda: read(4))
    assert len(reads._answers) == 1, "stale answers are not kept"

    async def hang():
        await asyncio.Event().wait()

    slow = SharedReads(reuse=1.0, timeout=0.05)
    with pytest.raises(Unavailable, match="did not answer within"):
        await slow.get("x", hang)


def test_a_page_too_far_behind_is_dropped_and_the_others_keep_going():
    slow, quick = Page(bound=2), Page(bound=2)
    assert slow.offer(b"1") and slow.offer(b"2")
    assert not slow.offer(b"3")
    assert slow.dropped
    assert not slow.offer(b"4"), "a dropped page takes nothing more"
    assert quick.offer(b"1")


async def test_the_hub_drops_a_slow_page_reads_nothing_without_pages_and_has_a_limit():
    class Source:
        reads = 0

        async def snapshot(self, fresh=False):
            Source.reads += 1
            return {"n": Source.reads}

        async def failovers(self):
            yield None
            await asyncio.Event().wait()

        async def events(self):
            return []

        async def incidents(self):
            return {"available": False, "incidents": []}

    hub = Hub(Source(), interval=0.01, buffer=8, max_pages=2)
    slow, quick = hub.join(), hub.join()
    assert hub.join() is None, "past max_pages"
    deadline = time.monotonic() + 5
    while not slow.dropped:  # nobody takes from slow; quick is drained
        await quick.take(0.1)
        assert time.monotonic() < deadline
    assert hub.pages == 1 and not quick.dropped
    hub.leave(quick)
    await asyncio.sleep(0.1)  # a round or two for the poll to notice
    reads = Source.reads
    await asyncio.sleep(0.1)
    assert Source.reads == reads, "the hub still reads with no page listening"
    await hub.close()
