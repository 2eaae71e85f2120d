"""The gRPC server every latitude program runs: its services, grpc.health.v1, reflection, and
shutdown in a fixed order."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from latitude.errors import LatitudeError
from latitude.handler_guard import guarded

log = logging.getLogger(__name__)


class Server:
    def __init__(self, listen: str, *, max_message_bytes: int = 4 * 1024 * 1024) -> None:
        self.listen = listen
        self.grpc = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.so_reuseport", 0),
                # Notice a dead peer (kill -9, cut link) on idle streams within seconds.
                ("grpc.keepalive_time_ms", 2000),
                ("grpc.keepalive_timeout_ms", 2000),
                ("grpc.http2.min_ping_interval_without_data_ms", 1000),
                ("grpc.keepalive_permit_without_calls", 1),
            ]
        )
        self.health = HealthServicer()
        self._names: list[str] = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        self.port = 0

    def add(self, register: Callable[[object, grpc.aio.Server], None], servicer, name: str):
        # Undecodable requests are INVALID_ARGUMENT (not UNKNOWN); status details are bounded.
        register(servicer, guarded(self.grpc))
        self._names.append(name)

    async def start(self) -> None:
        reflection.enable_server_reflection([*self._names, reflection.SERVICE_NAME], self.grpc)
        try:
            self.port = self.grpc.add_insecure_port(self.listen)
        except RuntimeError as err:
            raise LatitudeError(
                f"cannot listen on {self.listen}: the address is in use or not local"
            ) from err
        await self.grpc.start()
        for name in self._names:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float, before: Sequence[Callable[[], Awaitable[None]]] = ()):
        """Health NOT_SERVING, then ``before`` steps, then stop with a bounded grace."""
        await self.health.enter_graceful_shutdown()
        for step in before:
            try:
                await asyncio.wait_for(step(), grace)
            except (TimeoutError, LatitudeError) as err:
                log.warning("shutdown step failed: %s", err)
        await self.grpc.stop(grace)


async def until_signalled() -> None:
    """Return on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
