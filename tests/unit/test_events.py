"""The event history's pure parts and its recorder, over an in-memory store."""

from __future__ import annotations

import asyncio

import pytest

from coordinator.etcd import EtcdUnavailable
from coordinator.events import (
    DEFAULT_LIMIT,
    EventFilter,
    EventLog,
    InvalidRequest,
    doomed,
    list_events,
)
from latitude.errors import LatitudeError
from latitude.operations_view import event_kind, format_events
from latitude.v1 import admin_pb2

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
K = admin_pb2


class MemoryStore:
    """The part of the Store contract the event history uses; writes may be made to fail."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.failing: Exception | bool | None = None  # raise it, or return False
        self.writes = 0

    async def write(self, puts: dict[str, bytes], deletes: list[str]) -> bool:
        self.writes += 1
        if isinstance(self.failing, Exception):
            raise self.failing
        if self.failing is False:
            return False
        self.data.update(puts)
        for name in deletes:
            self.data.pop(name, None)
        return True

    async def read_page(self, name, *, limit, before="", newest_first=False):
        base = name.rstrip("/") + "/"
        names = sorted(k[len(base) :] for k in self.data if k.startswith(base))
        names = [n for n in names if not before or n < before]
        if newest_first:
            names.reverse()
        return [(n, self.data[base + n]) for n in names[:limit]]


def stored(store: MemoryStore) -> list[admin_pb2.Event]:
    return [admin_pb2.Event.FromString(store.data[k]) for k in sorted(store.data)]


async def recording(log: EventLog, epoch: int, record) -> None:
    """Run a term of ``log``: ``record`` events, then let the flusher write them."""
    log.begin(epoch)
    task = asyncio.create_task(log.run())
    try:
        record()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not log._pending:
                break
        await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def event(sequence, kind=K.EVENT_KIND_ALERT, region="", seconds=0.0):
    e = admin_pb2.Event(sequence=sequence, kind=kind, region=region)
    e.time.FromNanoseconds(int(seconds * 1e9))
    return e


def test_the_request_is_validated_naming_the_field():
    with pytest.raises(InvalidRequest, match=r"^limit: at most 1000, got 1001$"):
        EventFilter.from_request(admin_pb2.ListEventsRequest(limit=1001), REGIONS)
    with pytest.raises(InvalidRequest, match=r"^region: unknown region 'mars-1'"):
        EventFilter.from_request(admin_pb2.ListEventsRequest(region="mars-1"), REGIONS)
    with pytest.raises(InvalidRequest, match=r"^kinds\[1\]: not an event kind: 0$"):
        EventFilter.from_request(
            admin_pb2.ListEventsRequest(kinds=[K.EVENT_KIND_ALERT, 0]), REGIONS
        )
    wanted, limit = EventFilter.from_request(admin_pb2.ListEventsRequest(), REGIONS)
    assert limit == DEFAULT_LIMIT == 100 and wanted == EventFilter()


def test_filters_combine():
    wanted = EventFilter(
        region="eu-west-1",
        kinds=frozenset({K.EVENT_KIND_ALERT}),
        since_ns=10 * 10**9,
        before_sequence=5,
    )
    assert wanted.matches(event(4, region="eu-west-1", seconds=10))
    assert not wanted.matches(event(5, region="eu-west-1", seconds=10))  # before_sequence
    assert not wanted.matches(event(4, region="us-east-1", seconds=10))
    assert not wanted.matches(event(4, K.EVENT_KIND_PROMOTED, "eu-west-1", 10))
    assert not wanted.matches(event(4, region="eu-west-1", seconds=9.9))
    assert EventFilter().matches(event(1))


def test_trimming_deletes_only_what_falls_out_of_the_newest():
    assert list(doomed(1, 11, keep=10, most=50)) == []
    assert list(doomed(1, 13, keep=10, most=50)) == [1, 2]
    assert list(doomed(1, 1000, keep=10, most=50)) == list(range(1, 51))  # bounded per txn
    assert list(doomed(990, 1000, keep=10, most=50)) == []


async def test_events_get_increasing_sequences_across_leaders_and_are_trimmed():
    store = MemoryStore()
    first = EventLog(store, store.write, keep=25, linger=0)

    def burst(n, epoch):
        return lambda log: [
            log.record(K.EVENT_KIND_ALERT, message=f"{epoch}-{i}") for i in range(n)
        ]

    await recording(first, 7, lambda: burst(20, 7)(first))
    assert [e.sequence for e in stored(store)] == list(range(1, 21))
    assert {e.epoch for e in stored(store)} == {7}
    # A new leader (another process) continues after the newest sequence in the store.
    second = EventLog(store, store.write, keep=25, linger=0)
    await recording(second, 9, lambda: burst(12, 9)(second))
    events = stored(store)
    assert [e.sequence for e in events] == list(range(8, 33))  # the newest 25
    assert events[-1].message == "9-11" and events[-1].epoch == 9


async def test_a_failed_write_drops_its_batch_and_the_next_rereads_the_sequence(caplog):
    store = MemoryStore()
    log = EventLog(store, store.write, linger=0)
    await recording(log, 3, lambda: log.record(K.EVENT_KIND_ALERT, message="kept"))
    store.failing = EtcdUnavailable("etcd did not answer")
    await recording(log, 3, lambda: log.record(K.EVENT_KIND_ALERT, message="lost"))
    assert "dropped 1 events (etcd did not answer)" in caplog.text
    store.failing = None
    await recording(log, 3, lambda: log.record(K.EVENT_KIND_ALERT, message="after"))
    assert [(e.sequence, e.message) for e in stored(store)] == [(1, "kept"), (2, "after")]


async def test_recording_never_waits_and_past_the_bound_drops(caplog):
    store = MemoryStore()
    log = EventLog(store, store.write, queue=5, linger=0)
    log.record(K.EVENT_KIND_ALERT)  # outside a term: nothing
    assert not log._pending
    log.begin(1)
    for i in range(8):
        log.record(K.EVENT_KIND_ALERT, message=str(i))
    assert len(log._pending) == 5
    assert "event queue full (5)" in caplog.text
    await recording(log, 1, lambda: None)
    assert [e.message for e in stored(store)] == []  # begin() starts the term afresh


async def test_attributes_are_strings_and_booleans_lowercase():
    store = MemoryStore()
    log = EventLog(store, store.write, linger=0, clock=lambda: 1_700_000_000.5)

    def record():
        log.record(
            K.EVENT_KIND_REJOINED,
            K.SEVERITY_INFO,
            region="us-east-1",
            message="rejoined",
            attributes={"rewound": True, "lsn": 42},
            failover_id="abc",
        )

    await recording(log, 4, record)
    (e,) = stored(store)
    assert dict(e.attributes) == {"rewound": "true", "lsn": "42"}
    assert (e.region, e.failover_id, e.epoch) == ("us-east-1", "abc", 4)
    assert e.time.ToNanoseconds() == 1_700_000_000_500_000_000


async def test_listing_pages_back_from_the_newest_and_answers_oldest_first(monkeypatch):
    monkeypatch.setattr("coordinator.events._PAGE", 7)
    store = MemoryStore()
    for s in range(1, 101):
        e = event(s, K.EVENT_KIND_PROMOTED if s % 10 == 0 else K.EVENT_KIND_ALERT, seconds=s)
        e.region = "eu-west-1" if s % 2 else "us-east-1"
        store.data[f"events/{s:020d}"] = e.SerializeToString()
    newest = await list_events(store, EventFilter(), 5)
    assert [e.sequence for e in newest] == [96, 97, 98, 99, 100]
    promoted = await list_events(store, EventFilter(kinds=frozenset({K.EVENT_KIND_PROMOTED})), 3)
    assert [e.sequence for e in promoted] == [80, 90, 100]
    page = await list_events(store, EventFilter(region="eu-west-1", before_sequence=50), 3)
    assert [e.sequence for e in page] == [45, 47, 49]
    recent = await list_events(store, EventFilter(since_ns=95 * 10**9), 100)
    assert [e.sequence for e in recent] == [95, 96, 97, 98, 99, 100]
    assert await list_events(MemoryStore(), EventFilter(), 10) == []


def test_the_cli_reads_kinds_as_people_type_them():
    assert event_kind("failover_started") == K.EVENT_KIND_FAILOVER_STARTED
    assert event_kind("REGION-STATE-CHANGED") == K.EVENT_KIND_REGION_STATE_CHANGED
    with pytest.raises(LatitudeError, match=r"--kind: unknown event kind 'nope' \(known: "):
        event_kind("nope")
    e = event(1, K.EVENT_KIND_MAINTENANCE_CHANGED, "eu-west-1")
    e.severity, e.message = K.SEVERITY_WARNING, "eu-west-1 in maintenance"
    row = format_events([e]).splitlines()[2]
    assert row.split()[2:] == [
        "warning",
        "eu-west-1",
        "maintenance_changed",
        "eu-west-1",
        "in",
        "maintenance",
    ]
    assert format_events([]) == "no events"
