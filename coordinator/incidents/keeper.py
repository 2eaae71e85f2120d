"""The leader's incident duty: read new events, correlate them, keep the incidents in etcd, and
run a courier per alert target.

The keeper follows the event history in etcd rather than the recorder in memory: what it
correlates is exactly what every replica can list, a new leader continues from the sequence
its predecessor wrote last (the ledger, committed in the same transaction as the incidents it
changed), and nothing in the control loop waits for it. It polls every half second: events are
written in batches anyway, and one range read is all an idle poll costs.

Everything it writes goes through the leader's guarded commit. It never ends on its own (the
node treats a duty that ends as a crash): an etcd error leaves the changes to write for the
next round; a deposed leader stops writing and waits to be cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from coordinator import keys
from coordinator.config import CoordinatorConfig
from coordinator.etcd import EtcdError
from coordinator.incidents.correlate import CorrelationSettings, Correlator, Ledger
from coordinator.incidents.webhooks import Courier, DeliveryStats
from coordinator.leader import Deposed, OutcomeUnknown, Writes
from coordinator.store import Store
from latitude.v1 import admin_pb2

log = logging.getLogger(__name__)

POLL = 0.5
# Resolved incidents kept (the oldest beyond are deleted).
KEEP_RESOLVED = 200
_PAGE = 200
# Keys per transaction, within etcd's --max-txn-ops (128).
_TXN_KEYS = 60


class IncidentKeeper:
    def __init__(
        self,
        config: CoordinatorConfig,
        store: Store,
        writes: Writes,
        stats: DeliveryStats,
        *,
        poll: float = POLL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._writes = writes
        self._stats = stats
        self._poll = poll
        self._clock = clock
        self._settings = CorrelationSettings(reopen_window=config.incident_reopen_window)
        self.correlator: Correlator | None = None
        self._dirty: set[str] = set()
        self._forgotten: set[str] = set()
        self._ledger_dirty = False
        self._wake = asyncio.Event()
        self._couriers: list[Courier] = []

    async def run(self) -> None:
        tasks: list[asyncio.Task] = []
        try:
            self.correlator = await self._load()
            for target in self._config.alerts:
                courier = Courier(
                    target,
                    self.incidents,
                    self._recorded,
                    self._stats,
                    update_interval=self._config.alert_update_interval,
                    hold=self._config.alert_hold,
                    clock=self._clock,
                )
                self._couriers.append(courier)
                tasks.append(asyncio.create_task(courier.run(), name=f"alerts {target.label}"))
            while True:
                try:
                    await self._round()
                except Deposed:
                    log.info("incidents: no longer the leader; nothing more is written")
                    await asyncio.Event().wait()  # until the term's end cancels us
                except (EtcdError, OutcomeUnknown) as err:
                    self._stats.writes_failed += 1
                    log.warning("incidents: etcd: %s (tried again in the next round)", err)
                except Exception:  # a bug here must not take the leader down
                    log.exception("incidents: correlation round failed")
                for task in tasks:
                    if task.done() and not task.cancelled():
                        # A courier that ended crashed: say so, and start it again.
                        log.error("incidents: %s ended", task.get_name(), exc_info=task.exception())
                        index = tasks.index(task)
                        tasks[index] = asyncio.create_task(
                            self._couriers[index].run(), name=task.get_name()
                        )
                try:
                    async with asyncio.timeout(self._poll):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def incidents(self) -> list[admin_pb2.Incident]:
        """Every incident held, oldest first (what couriers work through)."""
        if self.correlator is None:
            return []
        found = list(self.correlator.incidents.values())
        return sorted(found, key=lambda i: (i.opened_at.ToNanoseconds(), i.id))

    def _recorded(self, incident_id: str) -> None:
        """A courier changed an incident's delivery state: written in the next round."""
        self._dirty.add(incident_id)
        self._wake.set()

    async def _load(self) -> Correlator:
        """What the previous leader left, retried until etcd answers."""
        delay = 0.1
        while True:
            try:
                stored = await self._store.read_prefix(keys.INCIDENTS)
                raw = await self._store.read(keys.INCIDENT_LEDGER)
                if raw is None:
                    # The first term ever: incidents begin now, not with the whole history.
                    ledger = Ledger(cursor=await self._newest_sequence())
                    self._ledger_dirty = True
                else:
                    ledger = Ledger.decode(raw)
                incidents = [admin_pb2.Incident.FromString(v) for v in stored.values()]
                log.info("incidents: %d kept, from event %d on", len(incidents), ledger.cursor)
                return Correlator(self._settings, incidents, ledger)
            except EtcdError as err:
                log.warning("incidents: cannot read what was kept: %s", err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _newest_sequence(self) -> int:
        newest = await self._store.read_page(keys.EVENTS, limit=1, newest_first=True)
        return int(newest[0][0]) if newest else 0

    async def _new_events(self, cursor: int) -> list[admin_pb2.Event]:
        """Events after ``cursor``, oldest first."""
        found: list[admin_pb2.Event] = []
        before = ""
        while True:
            page = await self._store.read_page(
                keys.EVENTS, limit=_PAGE, before=before, newest_first=True
            )
            fresh = [(n, v) for n, v in page if int(n) > cursor]
            found += [admin_pb2.Event.FromString(v) for _, v in fresh]
            if len(fresh) < len(page) or len(page) < _PAGE:
                break
            before = page[-1][0]
        found.sort(key=lambda e: e.sequence)
        return found

    async def _round(self) -> None:
        correlator = self.correlator
        assert correlator is not None
        events = await self._new_events(correlator.ledger.cursor)
        for event in events:
            changed = correlator.observe(event)
            self._stats.events_correlated += 1
            self._stats.incidents_opened += sum(1 for i in changed if i == f"inc-{event.sequence}")
            self._dirty |= changed
        self._dirty |= correlator.tick(self._clock())
        self._forgotten |= set(correlator.forget(KEEP_RESOLVED))
        self._ledger_dirty |= bool(events)
        if self._dirty or self._forgotten or self._ledger_dirty:
            await self._save(correlator)
            for courier in self._couriers:
                courier.wake.set()

    async def _save(self, correlator: Correlator) -> None:
        # Taken before writing: what couriers record meanwhile is written in the next round.
        dirty = sorted(i for i in self._dirty if i in correlator.incidents)
        forgotten = sorted(self._forgotten)
        self._dirty.clear()
        self._forgotten.clear()
        self._ledger_dirty = False
        try:
            # Incidents first, the ledger with the last chunk: a successor never skips an
            # event whose changes were not written.
            chunks = [dirty[i : i + _TXN_KEYS] for i in range(0, len(dirty), _TXN_KEYS)] or [[]]
            for index, chunk in enumerate(chunks):
                puts = {
                    keys.under(keys.INCIDENTS, n): correlator.incidents[n].SerializeToString()
                    for n in chunk
                    if n in correlator.incidents
                }
                deletes: list[str] = []
                if index == len(chunks) - 1:
                    puts[keys.INCIDENT_LEDGER] = correlator.ledger.encode()
                    deletes = [keys.under(keys.INCIDENTS, n) for n in forgotten]
                await self._writes.commit(puts, deletes)
        except BaseException:
            self._dirty.update(dirty)
            self._forgotten.update(forgotten)
            self._ledger_dirty = True
            raise
