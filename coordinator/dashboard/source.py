"""Where the dashboard's figures come from, each read bounded in time.

The cluster view is AdminService.GetStatus itself, called in-process: the page shows exactly
what ``latitude status`` prints, on any replica (followers read it from etcd like the leader).
Reads that touch etcd are time-bounded, and concurrent callers share one read in flight, so a
page (or a hundred) costs the control loop at most one status read at a time. History is read
from this coordinator's memory; incidents from whatever provider is plugged in.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from coordinator import keys
from coordinator.dashboard import views
from coordinator.etcd import EtcdError
from latitude.errors import LatitudeError
from latitude.v1 import admin_pb2

log = logging.getLogger(__name__)

# The freshest view is reused for this long: a burst of page loads is one etcd read.
REUSE = 0.25
EVENTS = 30
HISTORY_SECONDS = 15 * 60

Incidents = Callable[[], Awaitable[list[Any]]]


class Unavailable(LatitudeError):
    """The cluster view cannot be read now (etcd slow or unreachable); the message says why."""


class UnknownRegion(LatitudeError):
    """A region the deployment does not have."""


class _InProcessCall:
    """The part of a grpc.aio servicer context AdminService's read calls use, for calling them
    in-process: an abort becomes Unavailable, metadata goes nowhere."""

    def __init__(self, budget: float) -> None:
        self._deadline = time.monotonic() + budget

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise Unavailable(details or code.name)

    def set_trailing_metadata(self, metadata) -> None:
        pass

    def invocation_metadata(self):
        return ()

    def time_remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())


class ClusterSource:
    """``admin`` is this coordinator's AdminService; ``incidents`` an optional coroutine
    function answering the open incidents (dicts or protobuf messages)."""

    def __init__(
        self,
        node,
        admin,
        *,
        incidents: Incidents | None = None,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._node = node
        self._admin = admin
        self._incidents = incidents
        self.timeout = timeout
        self._clock = clock
        self._reading: asyncio.Task | None = None
        self._latest: tuple[float, dict[str, Any]] | None = None

    @property
    def regions(self) -> list[str]:
        return list(self._node.config.regions)

    async def snapshot(self) -> dict[str, Any]:
        """The page's whole picture (views.status_view); Unavailable when it cannot be read
        within the timeout."""
        latest = self._latest
        if latest is not None and self._clock() - latest[0] < REUSE:
            return latest[1]
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read(), name="dashboard status")
            # Retrieved here too: every page that waited for it may have gone.
            self._reading.add_done_callback(lambda t: t.cancelled() or t.exception())
        # Shielded: a page that goes away must not cancel the read others wait for.
        return await asyncio.shield(self._reading)

    async def _read(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):
                status, failover = await asyncio.gather(
                    self._admin.GetStatus(
                        admin_pb2.GetStatusRequest(), _InProcessCall(self.timeout)
                    ),
                    self._node.store.read(keys.FAILOVER),
                )
        except TimeoutError as err:
            raise Unavailable(f"etcd did not answer within {self.timeout:.1f} s") from err
        except EtcdError as err:
            raise Unavailable(f"etcd unreachable: {err}") from err
        last = admin_pb2.FailoverStatus.FromString(failover) if failover else None
        view = views.status_view(status, last)
        self._latest = (self._clock(), view)
        return view

    async def events(self, limit: int = EVENTS) -> list[dict[str, Any]]:
        """The newest ``limit`` events, oldest first (the event history ListEvents serves)."""
        try:
            async with asyncio.timeout(self.timeout):
                page = await self._node.store.read_page(keys.EVENTS, limit=limit, newest_first=True)
        except TimeoutError as err:
            raise Unavailable(f"etcd did not answer within {self.timeout:.1f} s") from err
        except EtcdError as err:
            raise Unavailable(f"etcd unreachable: {err}") from err
        found = [views.event_view(admin_pb2.Event.FromString(value)) for _, value in page]
        found.reverse()
        return found

    async def history(self, region: str, seconds: float = HISTORY_SECONDS) -> dict[str, Any]:
        """The region's samples of the last ``seconds`` from this coordinator's history;
        UnknownRegion for a region the deployment does not have."""
        if region not in self._node.config.regions:
            known = ", ".join(self._node.config.regions)
            raise UnknownRegion(f"unknown region {region!r} (known: {known})")
        history = getattr(self._node, "history", None)
        if history is None:
            return views.history_view(region, None)
        samples = history.samples(region, time.time() - seconds)
        if inspect.isawaitable(samples):
            async with asyncio.timeout(self.timeout):
                samples = await samples
        return views.history_view(region, samples)

    async def incidents(self) -> dict[str, Any]:
        """The open incidents, or ``available: false`` when no provider is plugged in or it
        fails (the page says so rather than show "none")."""
        if self._incidents is None:
            return {"available": False, "incidents": []}
        try:
            async with asyncio.timeout(self.timeout):
                found = await self._incidents()
        except (TimeoutError, LatitudeError) as err:
            log.debug("incidents unavailable: %s", err)
            return {"available": False, "incidents": [], "error": str(err) or "timed out"}
        return {"available": True, "incidents": [_plain(i) for i in found]}


def _plain(incident: Any) -> dict[str, Any]:
    if isinstance(incident, Message):
        return json_format.MessageToDict(incident, preserving_proto_field_name=True)
    return dict(incident)
