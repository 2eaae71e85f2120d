"""The gRPC server every latitude program runs: its services, grpc.health.v1, reflection, and
shutdown in a fixed order.

With ``tls`` (latitude.pki.CertFiles) the port is mutual TLS: the server proves itself with
the certificate, requires every client to present one signed by the same CA (grpc's Python
API offers no "ask but do not require": a client without one fails the handshake), and
``authorize`` (latitude.authz.Authorizer, by default one without a callback) refuses each call
whose caller's role may not make it. Without ``tls`` the port is plaintext and nothing is
checked. Messages are bounded both ways whichever it is."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from latitude.authz import Authorizer
from latitude.channels import MAX_MESSAGE_BYTES
from latitude.errors import LatitudeError
from latitude.handler_guard import guarded
from latitude.pki import CertFiles

log = logging.getLogger(__name__)


class Server:
    def __init__(
        self,
        listen: str,
        *,
        tls: CertFiles | None = None,
        authorize: Authorizer | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.listen = listen
        self.tls = tls
        interceptors = [authorize or Authorizer()] if tls is not None else []
        self.grpc = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                # Notice a dead peer (kill -9, cut link) on idle streams within seconds.
                ("grpc.keepalive_time_ms", 2000),
                ("grpc.keepalive_timeout_ms", 2000),
                ("grpc.http2.min_ping_interval_without_data_ms", 1000),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
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
            if self.tls is None:
                self.port = self.grpc.add_insecure_port(self.listen)
            else:
                self.port = self.grpc.add_secure_port(self.listen, server_credentials(self.tls))
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


def server_credentials(tls: CertFiles) -> grpc.ServerCredentials:
    """Our certificate, and the CA every client's certificate must chain to."""
    cert, key, ca = tls.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


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
