"""The keeper and its couriers over an in-memory store, posting to real local receivers."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from coordinator import keys
from coordinator.config import AlertTarget, CoordinatorConfig
from coordinator.events import name as event_name
from coordinator.incidents.keeper import IncidentKeeper
from coordinator.incidents.webhooks import DeliveryStats
from coordinator.leader import Deposed
from latitude.v1 import admin_pb2 as pb


class MemoryStore:
    """The reads the keeper makes, and the leader's commit (which may be made to depose)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.deposed = False
        self.commits = 0

    async def read(self, name):
        return self.data.get(name)

    async def read_prefix(self, name):
        base = name + "/"
        return {k[len(base) :]: v for k, v in self.data.items() if k.startswith(base)}

    async def read_page(self, name, *, limit, before="", newest_first=False):
        base = name + "/"
        names = sorted(k[len(base) :] for k in self.data if k.startswith(base))
        names = [n for n in names if not before or n < before]
        if newest_first:
            names.reverse()
        return [(n, self.data[base + n]) for n in names[:limit]]

    async def commit(self, puts, deletes=(), *, within=10.0):
        if self.deposed:
            raise Deposed("not ours")
        self.commits += 1
        self.data.update(puts)
        for name in deletes:
            self.data.pop(name, None)

    def record(self, sequence, kind, region="", **attributes):
        event = pb.Event(sequence=sequence, kind=kind, region=region, message=f"event {sequence}")
        event.severity = pb.SEVERITY_CRITICAL
        event.time.FromNanoseconds(int(time.time() * 1e9))
        event.attributes.update(attributes)
        self.data[f"{keys.EVENTS}/{event_name(sequence)}"] = event.SerializeToString()

    def incidents(self) -> list[pb.Incident]:
        prefix = keys.INCIDENTS + "/"
        return [pb.Incident.FromString(v) for k, v in self.data.items() if k.startswith(prefix)]


@pytest.fixture
async def receiver():
    received: list[tuple[float, str, dict]] = []
    hung: list[float] = []

    async def take(request):
        received.append(
            (time.monotonic(), request.headers["Idempotency-Key"], await request.json())
        )
        return web.Response(status=200)

    async def hang(request):
        hung.append(time.monotonic())
        await asyncio.sleep(60)
        return web.Response(status=200)

    async def fail(request):
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/take", take)
    app.router.add_post("/hang", hang)
    app.router.add_post("/fail", fail)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", received, hung
    finally:
        await runner.cleanup()


async def until(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def keeper(store, *targets, stats=None):
    config = CoordinatorConfig(alerts=targets, alert_update_interval=0.0, alert_hold=0.0)
    return IncidentKeeper(config, store, store, stats or DeliveryStats(), poll=0.02)


async def running(k: IncidentKeeper) -> asyncio.Task:
    return asyncio.create_task(k.run())


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_hanging_and_a_failing_target_hold_up_no_other(receiver):
    base, received, hung = receiver
    store = MemoryStore()
    store.data[keys.INCIDENT_LEDGER] = b'{"cursor": 0}'
    stats = DeliveryStats()
    task = await running(
        keeper(
            store,
            AlertTarget(url=f"{base}/hang", timeout=5.0),
            AlertTarget(url=f"{base}/fail", timeout=5.0),
            AlertTarget(url=f"{base}/take"),
            stats=stats,
        )
    )
    try:
        started = time.monotonic()
        store.record(1, pb.EVENT_KIND_REGION_STATE_CHANGED, "us-east-1", to="UNHEALTHY")
        await until(lambda: received and hung)
        assert received[0][0] - started < 1.0  # not after the hanging target's 5 s
        assert received[0][1] == "inc-1/1/opened"
        await until(lambda: stats.target(f"{base}/fail").failed >= 2, timeout=4.0)
        assert stats.target(f"{base}/take").sent == 1
        await until(lambda: any(d.failed_attempts for i in store.incidents() for d in i.deliveries))
        deliveries = {d.target: d for d in store.incidents()[0].deliveries}
        assert deliveries[f"{base}/fail"].last_error == "HTTP 503 Service Unavailable"
        assert deliveries[f"{base}/take"].delivered_kind == "opened"
    finally:
        await stop(task)


async def test_a_successor_sends_only_what_its_predecessor_had_not(receiver):
    base, received, _ = receiver
    target = AlertTarget(url=f"{base}/take")
    store = MemoryStore()
    store.data[keys.INCIDENT_LEDGER] = b'{"cursor": 0}'
    first = await running(keeper(store, target))
    try:
        store.record(1, pb.EVENT_KIND_REGION_STATE_CHANGED, "us-east-1", to="UNHEALTHY")
        await until(lambda: store.incidents() and store.incidents()[0].deliveries)
    finally:
        await stop(first)
    # A new leader, and the region healthy again meanwhile.
    store.record(2, pb.EVENT_KIND_REGION_STATE_CHANGED, "us-east-1", to="HEALTHY")
    second = await running(keeper(store, target))
    try:
        await until(lambda: len(received) >= 2)
        await asyncio.sleep(0.2)  # a duplicate, if any, would come now
    finally:
        await stop(second)
    assert [(key, body["notification"]) for _, key, body in received] == [
        ("inc-1/1/opened", "opened"),
        ("inc-1/2/resolved", "resolved"),
    ]
    assert store.incidents()[0].state == pb.INCIDENT_STATE_RESOLVED


async def test_the_first_term_ever_starts_with_the_newest_event():
    store = MemoryStore()
    store.record(7, pb.EVENT_KIND_REGION_STATE_CHANGED, "us-east-1", to="UNHEALTHY")
    task = await running(keeper(store))
    try:
        await until(lambda: keys.INCIDENT_LEDGER in store.data)
        store.record(8, pb.EVENT_KIND_REGION_STATE_CHANGED, "eu-west-1", to="UNHEALTHY")
        await until(lambda: store.incidents())
    finally:
        await stop(task)
    assert [i.id for i in store.incidents()] == ["inc-8"]


async def test_a_deposed_keeper_stops_writing_and_does_not_end():
    store = MemoryStore()
    store.deposed = True
    task = await running(keeper(store))
    try:
        store.record(1, pb.EVENT_KIND_REGION_STATE_CHANGED, "us-east-1", to="UNHEALTHY")
        await asyncio.sleep(0.2)
        assert not task.done()  # the node would take an ended duty for a crash
        assert store.commits == 0
    finally:
        await stop(task)
