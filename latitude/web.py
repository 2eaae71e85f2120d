"""The HTTP listener every latitude program can run (its ``http_address`` setting): Prometheus
metrics at ``/metrics`` on every process, the dashboard and its API on coordinators, the health
checks for load balancers on agents (agent.health_http).

One HTTP stack (aiohttp) for all of it. The listener serves beside the gRPC server and never
shares its event-loop work with the control loop beyond answering requests: handlers read
state, they do not wait on etcd or agents.
"""

from __future__ import annotations

import errno
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from latitude.errors import LatitudeError
from latitude.netaddr import parse_host_port

log = logging.getLogger(__name__)


class WebServer:
    """An aiohttp application on one ``host:port``, with ``/metrics`` from ``registry``."""

    def __init__(self, address: str, *, registry: CollectorRegistry = REGISTRY) -> None:
        self.address = address
        self.host, self._port = parse_host_port(address, "http_address", any_port=True)
        self.app = web.Application()
        self._registry = registry
        self.app.router.add_get("/metrics", self._metrics)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port, reuse_address=True)
        try:
            await site.start()
        except OSError as err:
            await self._runner.cleanup()
            self._runner = None
            if err.errno == errno.EADDRINUSE:
                raise LatitudeError(
                    f"cannot serve HTTP on {self.address}: the port is in use by another process "
                    "(choose another http_address, or an empty one to turn the listener off)"
                ) from err
            raise LatitudeError(f"cannot serve HTTP on {self.address}: {err.strerror}") from err
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        log.info("serving HTTP (metrics%s) on %s:%d", self._extra(), self.host, self.port)

    def _extra(self) -> str:
        routes = {r.resource.canonical for r in self.app.router.routes() if r.resource}
        health = ", health checks" if "/primary" in routes else ""  # agent.health_http
        return (", dashboard" if "/" in routes else "") + health

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
