"""Posting notifications to one alert target: a courier per target, on the leader only.

Each courier works through what its target is owed (``dispatch.owed``), one POST at a time,
each bounded by the target's timeout; a failure (refused, timed out, an answer other than
2xx) costs a log line, a counter and a back-off for that incident (1 s doubling to 60 s),
never a wait for anyone else: the couriers of other targets, the correlation and the
control loop go on. Outcomes are recorded in the incident (``dispatch.delivered`` /
``dispatch.failed``) and handed to the keeper, which writes them to etcd.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from coordinator.config import AlertTarget
from coordinator.incidents import dispatch
from latitude.v1 import admin_pb2

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDLE = 0.5


@dataclass(slots=True)
class TargetStats:
    sent: int = 0
    failed: int = 0
    timeouts: int = 0
    last_error: str = ""


@dataclass(slots=True)
class DeliveryStats:
    """Counters for whoever exports metrics: notifications per target, and correlation work.
    They live as long as the coordinator (across leadership terms)."""

    targets: dict[str, TargetStats] = field(default_factory=dict)
    events_correlated: int = 0
    incidents_opened: int = 0
    writes_failed: int = 0

    def target(self, label: str) -> TargetStats:
        return self.targets.setdefault(label, TargetStats())


class Courier:
    """Delivers to one target what it is owed, until cancelled."""

    def __init__(
        self,
        target: AlertTarget,
        incidents: Callable[[], list[admin_pb2.Incident]],
        recorded: Callable[[str], None],
        stats: DeliveryStats,
        *,
        update_interval: float,
        hold: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self._incidents = incidents
        self._recorded = recorded
        self._stats = stats.target(target.label)
        self._update_interval = update_interval
        self._hold = hold
        self._clock = clock
        self._not_before: dict[str, float] = {}  # incident id -> back-off until
        self.wake = asyncio.Event()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.target.timeout)
        headers = {"User-Agent": "latitude-coordinator", "Content-Type": "application/json"}
        if self.target.bearer_token:
            headers["Authorization"] = f"Bearer {self.target.bearer_token}"
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            while True:
                await self._round(session)
                try:
                    async with asyncio.timeout(_IDLE):
                        await self.wake.wait()
                except TimeoutError:
                    pass
                self.wake.clear()

    async def _round(self, session: aiohttp.ClientSession) -> None:
        label = self.target.label
        for incident in self._incidents():
            now = self._clock()
            if now < self._not_before.get(incident.id, 0.0):
                continue
            kind = dispatch.owed(
                incident,
                self.target,
                dispatch.delivery_for(incident, label),
                now,
                self._update_interval,
                self._hold,
            )
            if not kind:
                continue
            revision = incident.revision
            body = dispatch.payload(incident, kind, now)
            error = await self._post(session, body)
            if error:
                failures = dispatch.failed(incident, label, error)
                wait = dispatch.retry_after(failures)
                self._not_before[incident.id] = self._clock() + wait
                self._stats.failed += 1
                self._stats.last_error = error
                log.warning(
                    "alert %s of %s to %s failed (attempt %d, next in %.0f s): %s",
                    kind, incident.id, label, failures, wait, error,
                )  # fmt: skip
            else:
                dispatch.delivered(incident, label, kind, revision, self._clock())
                self._not_before.pop(incident.id, None)
                self._stats.sent += 1
                log.info("alert %s of %s (r%d) delivered to %s", kind, incident.id, revision, label)
            self._recorded(incident.id)

    async def _post(self, session: aiohttp.ClientSession, body: dict) -> str:
        """'' when the target took it (2xx); else why not."""
        headers = {IDEMPOTENCY_HEADER: body["idempotency_key"]}
        try:
            async with session.post(
                self.target.url, data=json.dumps(body), headers=headers
            ) as response:
                if 200 <= response.status < 300:
                    return ""
                return f"HTTP {response.status} {response.reason or ''}".strip()
        except TimeoutError:
            self._stats.timeouts += 1
            return f"no answer within {self.target.timeout:g} s"
        except aiohttp.ClientError as err:
            return f"{type(err).__name__}: {err}"[:300]
