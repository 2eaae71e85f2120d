"""The event history: what the leader saw and did, kept in etcd for every replica to list.

Recording is for the leader only and never waits: ``record`` stamps the event and queues it
(a bounded queue; past the bound events are dropped, with a log line), and the term's
``run`` task writes queued events in batches, each batch one transaction guarded by the
leader key like every leader write. When etcd does not answer, the batch is dropped with a
log line rather than held: a failover must never wait for its own history.

Events live under ``events/<sequence>`` (zero-padded, so name order is sequence order). A
sequence is assigned when its batch is written, following the newest one in etcd, which a new
leader (or a leader after a failed write) reads first: sequences increase strictly across
leaders, without gaps. The same transaction deletes the events that fell out of the newest
``keep``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from coordinator import keys
from coordinator.etcd import EtcdError
from coordinator.store import Store
from latitude.errors import LatitudeError
from latitude.v1 import admin_pb2

log = logging.getLogger(__name__)

PREFIX = keys.EVENTS
KEEP = 10_000
QUEUE = 1_000
# Events per transaction; with as many deletions it stays within etcd's --max-txn-ops (128).
BATCH = 50
DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000
_PAGE = 500
_MAX_TEXT = 1_000

Write = Callable[[dict[str, bytes], list[str]], Awaitable[bool]]


def name(sequence: int) -> str:
    return f"{sequence:020d}"


class InvalidRequest(LatitudeError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a ListEvents request asks for (the filters combine with AND)."""

    region: str = ""
    kinds: frozenset[int] = frozenset()
    since_ns: int = 0  # 0: no bound
    before_sequence: int = 0  # 0: no bound

    @classmethod
    def from_request(
        cls, request: admin_pb2.ListEventsRequest, regions: Collection[str]
    ) -> tuple[EventFilter, int]:
        """The filter and the limit; InvalidRequest naming the field when one is bad."""
        if request.limit > MAX_LIMIT:
            raise InvalidRequest("limit", f"at most {MAX_LIMIT}, got {request.limit}")
        if request.region and request.region not in regions:
            known = ", ".join(sorted(regions))
            raise InvalidRequest("region", f"unknown region {request.region!r} (known: {known})")
        for i, kind in enumerate(request.kinds):
            if kind == admin_pb2.EVENT_KIND_UNSPECIFIED or kind not in admin_pb2.EventKind.values():
                raise InvalidRequest(f"kinds[{i}]", f"not an event kind: {kind}")
        since = request.since.ToNanoseconds() if request.HasField("since") else 0
        wanted = cls(request.region, frozenset(request.kinds), since, request.before_sequence)
        return wanted, request.limit or DEFAULT_LIMIT

    def matches(self, event: admin_pb2.Event) -> bool:
        return (
            (not self.region or event.region == self.region)
            and (not self.kinds or event.kind in self.kinds)
            and (not self.since_ns or event.time.ToNanoseconds() >= self.since_ns)
            and (not self.before_sequence or event.sequence < self.before_sequence)
        )


async def list_events(store: Store, wanted: EventFilter, limit: int) -> list[admin_pb2.Event]:
    """The newest ``limit`` events that match, oldest first: read back from the newest a page
    at a time, until enough match or the events are older than ``since``."""
    found: list[admin_pb2.Event] = []
    before = name(wanted.before_sequence) if wanted.before_sequence else ""
    while len(found) < limit:
        page = await store.read_page(PREFIX, limit=_PAGE, before=before, newest_first=True)
        events = [admin_pb2.Event.FromString(value) for _, value in page]
        found += [e for e in events if wanted.matches(e)][: limit - len(found)]
        if len(page) < _PAGE or (
            # Sequence order is time order up to clock skew between leaders: a page older
            # than ``since`` throughout ends the search.
            wanted.since_ns and all(e.time.ToNanoseconds() < wanted.since_ns for e in events)
        ):
            break
        before = page[-1][0]
    found.reverse()
    return found


def doomed(oldest: int, end: int, keep: int, most: int) -> range:
    """The sequences to delete once events up to ``end`` (excluded) are written, so that only
    the newest ``keep`` remain: at most ``most`` of them, from ``oldest`` on."""
    return range(oldest, max(oldest, min(end - keep, oldest + most)))


class EventLog:
    """The leader's recorder. ``record`` may be called from anywhere in the leader's loop;
    outside a term (between ``begin`` and the end of ``run``) it does nothing."""

    def __init__(
        self,
        store: Store,
        write: Write,
        *,
        keep: int = KEEP,
        queue: int = QUEUE,
        linger: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._write = write
        self._keep = keep
        self._bound = queue
        self._linger = linger
        self._clock = clock
        self._pending: deque[admin_pb2.Event] = deque()
        self._wake = asyncio.Event()
        self._epoch = 0
        self._next: int | None = None  # the next sequence; None: read it from etcd first
        self._oldest = 1
        self._dropped = 0

    def begin(self, epoch: int) -> None:
        """A term starts: events recorded from now on carry ``epoch``."""
        self._epoch = epoch
        self._next = None
        self._pending.clear()

    def record(
        self,
        kind: int,
        severity: int = admin_pb2.SEVERITY_INFO,
        *,
        region: str = "",
        message: str = "",
        attributes: Mapping[str, object] | None = None,
        failover_id: str = "",
    ) -> None:
        """Queue an event (``admin_pb2.EVENT_KIND_*``, ``admin_pb2.SEVERITY_*``); returns at
        once. Attribute values are written as strings ("true"/"false" for booleans)."""
        if not self._epoch:
            return
        if len(self._pending) >= self._bound:
            if not self._dropped:
                log.warning("event queue full (%d): dropping events until it drains", self._bound)
            self._dropped += 1
            return
        event = admin_pb2.Event(
            kind=kind,
            severity=severity,
            region=region,
            message=message[:_MAX_TEXT],
            failover_id=failover_id,
            epoch=self._epoch,
        )
        event.time.FromNanoseconds(int(self._clock() * 1e9))
        for key, value in (attributes or {}).items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            event.attributes[key] = text[:_MAX_TEXT]
        self._pending.append(event)
        self._wake.set()

    async def run(self) -> None:
        """Write what is recorded, until cancelled; the term's events end with it."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await asyncio.sleep(self._linger)  # a burst goes out as one transaction
                while self._pending:
                    batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
                    await self._flush(batch)
                if self._dropped:
                    log.warning("%d events were dropped while the queue was full", self._dropped)
                    self._dropped = 0
        finally:
            self._epoch = 0
            self._pending.clear()

    async def _flush(self, batch: Sequence[admin_pb2.Event]) -> None:
        try:
            if self._next is None:
                self._next, self._oldest = await self._bounds()
            first, end = self._next, self._next + len(batch)
            puts = {}
            for sequence, event in enumerate(batch, start=first):
                event.sequence = sequence
                puts[f"{PREFIX}/{name(sequence)}"] = event.SerializeToString()
            trimmed = doomed(self._oldest, end, self._keep, BATCH)
            if await self._write(puts, [f"{PREFIX}/{name(s)}" for s in trimmed]):
                self._next = end
                self._oldest = max(self._oldest, trimmed.stop)
                return
            why = "the guarded write failed"
        except EtcdError as err:
            why = str(err)
        # Whether it was applied is unknown: read the newest sequence again before the next.
        self._next = None
        log.warning("dropped %d events (%s)", len(batch), why)

    async def _bounds(self) -> tuple[int, int]:
        """(next sequence, oldest sequence kept) as etcd has them."""
        newest = await self._store.read_page(PREFIX, limit=1, newest_first=True)
        if not newest:
            return 1, 1
        oldest = await self._store.read_page(PREFIX, limit=1)
        last = int(newest[0][0])
        return last + 1, int(oldest[0][0]) if oldest else last
