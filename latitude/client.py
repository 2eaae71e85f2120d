"""The routing client library: follow the routing table, answer routing questions locally.

``RoutingClient`` keeps a Watch stream open to one coordinator (any of them serves the table),
moves to another when that one fails, and answers ``resolve()`` from its copy of the table
without a network call. While no coordinator is reachable it keeps answering from the last
good table (static stability) and says how old that table is (``staleness``, and
``RoutingDecision.table_age_seconds``)::

    async with RoutingClient(["10.0.0.1:50051", "10.0.1.1:50051"]) as client:
        decision = client.resolve(ip="81.2.69.160")
        decision.targets[0].region   # "eu-west-1"

With ``tls`` (latitude.pki.CertFiles: a reader's certificate, its key and the cluster's CA)
the client speaks mutual TLS, as a cluster that runs TLS requires.

``SyncRoutingClient`` is the same for code without an event loop: it follows the table on a
background thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence

import grpc

from latitude.channels import open_channel
from latitude.errors import LatitudeError
from latitude.pki import CertFiles
from latitude.routing import Resolver
from latitude.routing.locating import TableLocator
from latitude.v1 import common_pb2, routing_pb2, routing_pb2_grpc

log = logging.getLogger(__name__)

_INTENTS = {"read": routing_pb2.INTENT_READ, "write": routing_pb2.INTENT_WRITE}


class NoRoutingTable(LatitudeError):
    """No routing table has been received yet, so no question can be answered."""


def strategy_value(strategy: str | int | None) -> int:
    """A strategy given by name ("geographic", ...) or enum value, checked."""
    if strategy is None:
        return routing_pb2.STRATEGY_UNSPECIFIED
    if isinstance(strategy, str):
        name = "STRATEGY_" + strategy.upper().replace("-", "_")
        if name not in routing_pb2.Strategy.keys() or name == "STRATEGY_UNSPECIFIED":
            names = [n[9:].lower() for n in routing_pb2.Strategy.keys()[1:]]
            raise ValueError(
                f"strategy: unknown strategy {strategy!r} (one of: {', '.join(names)})"
            )
        return routing_pb2.Strategy.Value(name)
    return int(strategy)


class RoutingClient:
    def __init__(
        self,
        coordinators: Sequence[str],
        *,
        geoip_city_database: str | None = None,
        reconnect_max: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        tls: CertFiles | None = None,
    ) -> None:
        if not coordinators:
            raise ValueError("coordinators: at least one address is needed")
        self.coordinators = list(coordinators)
        self._reconnect_max = reconnect_max
        self._tls = tls
        self._clock = clock
        self._locator = TableLocator(geoip_city_database)
        self._resolver: Resolver | None = None
        self.table: routing_pb2.RoutingTable | None = None
        self.connected_to: str | None = None  # the coordinator whose stream is open
        self._heard_at = -math.inf  # when the table was last known current
        self._changed = asyncio.Condition()
        self._follower: asyncio.Task | None = None

    async def __aenter__(self) -> RoutingClient:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def start(self, *, timeout: float | None = 10.0) -> None:
        """Start following; wait up to ``timeout`` for a first table (NoRoutingTable if none).

        The client keeps trying in the background either way.
        """
        if self._follower is None:
            self._follower = asyncio.create_task(self._follow(), name="routing client")
        if timeout is not None:
            try:
                await self.wait_for(lambda table: True, timeout)
            except TimeoutError as err:
                raise NoRoutingTable(
                    f"no routing table from any of {', '.join(self.coordinators)} "
                    f"within {timeout:g} s"
                ) from err

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        self._locator.close()

    @property
    def version(self) -> int:
        return self.table.version if self.table is not None else 0

    @property
    def staleness(self) -> float:
        """Seconds since the table was last known current; 0 while a stream is open."""
        if self.connected_to is not None:
            return 0.0
        return max(0.0, self._clock() - self._heard_at)

    def resolve(
        self,
        *,
        ip: str | None = None,
        location: tuple[float, float] | common_pb2.Location | None = None,
        intent: str | int = "read",
        strategy: str | int | None = None,
        max_replica_lag_seconds: float | None = None,
        max_targets: int = 0,
    ) -> routing_pb2.RoutingDecision:
        """Where this request should go, decided locally from the table.

        Raises NoRoutingTable before the first table, and the same InvalidLocation /
        InvalidRequest errors (naming the field) that a coordinator answers INVALID_ARGUMENT.
        """
        resolver, table = self._resolver, self.table
        if resolver is None:
            raise NoRoutingTable("no routing table received yet")
        if isinstance(location, common_pb2.Location):
            location = (location.latitude, location.longitude)
        located = self._locator.locate(table, ip, location)
        decision = resolver.resolve(
            client=located,
            strategy=strategy_value(strategy),
            intent=_INTENTS[intent] if isinstance(intent, str) else intent,
            max_replica_lag_seconds=max_replica_lag_seconds,
            max_targets=max_targets,
        )
        decision.table_age_seconds = self.staleness
        return decision

    async def wait_for(
        self, predicate: Callable[[routing_pb2.RoutingTable], bool], timeout: float
    ) -> routing_pb2.RoutingTable:
        """The table once ``predicate(table)`` holds (TimeoutError after ``timeout``)."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self.table is not None and predicate(self.table)),
                timeout,
            )
            return self.table

    def _apply(self, table: routing_pb2.RoutingTable) -> None:
        if table.version < self.version:
            return  # a coordinator behind the one we left: keep the newer table
        self._resolver = Resolver(table, succeeding=self._resolver)
        self.table = table

    async def _follow(self) -> None:
        backoff = 0.05
        start = random.randrange(len(self.coordinators))
        attempt = 0
        while True:
            address = self.coordinators[(start + attempt) % len(self.coordinators)]
            attempt += 1
            try:
                await self._watch(address)
                backoff = 0.05
            except grpc.aio.AioRpcError as err:
                log.info("routing table stream from %s ended: %s", address, err.code().name)
            finally:
                if self.connected_to == address:
                    self.connected_to = None
                    self._heard_at = self._clock()
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self._reconnect_max)

    async def _watch(self, address: str) -> None:
        options = [
            # Notice a dead coordinator on an idle stream within seconds.
            ("grpc.keepalive_time_ms", 2000),
            ("grpc.keepalive_timeout_ms", 2000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.initial_reconnect_backoff_ms", 100),
        ]
        async with open_channel(address, self._tls, options=options) as channel:
            stub = routing_pb2_grpc.RoutingServiceStub(channel)
            # Ask only for something newer than ours: a restarted stream sends nothing stale.
            call = stub.Watch(routing_pb2.WatchRequest(known_version=self.version))
            await call.initial_metadata()  # returns (empty) for a call that failed, too
            if self.table is not None and not call.done():
                self.connected_to = address  # what we hold is current until told otherwise
            async for table in call:
                self.connected_to = address
                self._heard_at = self._clock()
                async with self._changed:
                    self._apply(table)
                    self._changed.notify_all()


class SyncRoutingClient:
    """RoutingClient for code without an event loop; the table is followed on a thread."""

    def __init__(self, coordinators: Sequence[str], **settings) -> None:
        self._coordinators = coordinators
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="latitude routing client")  # fmt: skip
        self._client: RoutingClient | None = None

    def start(self, timeout: float | None = 10.0) -> SyncRoutingClient:
        self._thread.start()

        async def begin() -> RoutingClient:
            client = RoutingClient(self._coordinators, **self._settings)
            self._client = client
            await client.start(timeout=timeout)
            return client

        asyncio.run_coroutine_threadsafe(begin(), self._loop).result()
        return self

    def __enter__(self) -> SyncRoutingClient:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def resolve(self, **question) -> routing_pb2.RoutingDecision:
        if self._client is None:
            raise NoRoutingTable("the client has not been started")
        return self._client.resolve(**question)

    @property
    def staleness(self) -> float:
        return self._client.staleness if self._client else math.inf

    @property
    def table(self) -> routing_pb2.RoutingTable | None:
        return self._client.table if self._client else None

    def close(self) -> None:
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
