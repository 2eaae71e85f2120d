"""The dashboard's HTTP routes on a coordinator's listener (latitude.web.WebServer):

- ``/``: the page, and ``/static/...``: its script and style (files in this package);
- ``/api/status``: the cluster as ``latitude status`` sees it, plus the last failover's steps;
- ``/api/events?limit=N``: the newest events (N at most 1000; default 30);
- ``/api/history/REGION?seconds=S``: the region's recent health, lag, weight, response time;
- ``/api/incidents``: the open incidents (``available: false`` when they cannot be listed);
- ``/api/stream``: all of it, live, as server-sent events (see coordinator.dashboard.stream).

Any other path, and an unknown region, answer 404 with a JSON ``{"error": ...}``; a bad
parameter 400, etcd too slow or unreachable 503, anything else that fails 500, all in JSON.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from aiohttp import web

from coordinator.dashboard.source import (
    HISTORY_SECONDS,
    BadRequest,
    ClusterSource,
    Incidents,
    Unavailable,
    UnknownRegion,
)
from coordinator.dashboard.stream import INTERVAL, Hub

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MAX_EVENTS = 1000
MAX_HISTORY_SECONDS = 7 * 24 * 3600


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler):
    """A path nobody serves, a method it does not take, or a failure answers JSON like the
    API does."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _error(404, f"no such page or API: {request.path}")
    except web.HTTPMethodNotAllowed:
        return _error(405, f"{request.method} is not allowed on {request.path} (use GET)")
    except web.HTTPException:
        raise
    except Exception as err:
        log.exception("dashboard request %s failed", request.path)
        return _error(500, f"{request.path} failed: {err!r} (see the coordinator's log)")


def _number(request: web.Request, name: str, default: float, most: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= most:  # NaN included
        problem = f"{name}: {raw!r} is not a number above 0, at most {most:g}"
        raise web.HTTPBadRequest(
            text=json.dumps({"error": problem}), content_type="application/json"
        )
    return value


class Dashboard:
    def __init__(self, source: ClusterSource, hub: Hub) -> None:
        self.source = source
        self.hub = hub
        self._files = {p.name for p in STATIC.iterdir() if p.is_file()}

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def static(self, request: web.Request) -> web.FileResponse:
        # Only the package's own files, by name: nothing else on disk is reachable.
        name = request.match_info["name"]
        if name not in self._files:
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    async def status(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(await self.source.snapshot())
        except Unavailable as err:
            return _error(503, str(err))

    async def events(self, request: web.Request) -> web.Response:
        limit = int(_number(request, "limit", 30, MAX_EVENTS))
        try:
            return web.json_response({"events": await self.source.events(limit)})
        except Unavailable as err:
            return _error(503, str(err))

    async def history(self, request: web.Request) -> web.Response:
        seconds = _number(request, "seconds", HISTORY_SECONDS, MAX_HISTORY_SECONDS)
        try:
            return web.json_response(
                await self.source.history(request.match_info["region"], seconds)
            )
        except UnknownRegion as err:
            return _error(404, str(err))
        except BadRequest as err:
            return _error(400, str(err))
        except Unavailable as err:
            return _error(503, str(err))

    async def incidents(self, request: web.Request) -> web.Response:
        return web.json_response(await self.source.incidents())


def install(
    app: web.Application,
    node,
    admin,
    *,
    incidents: Incidents | None = None,
    timeout: float = 2.0,
    interval: float = INTERVAL,
) -> Hub:
    """Serve the dashboard of ``node`` (a CoordinatorNode; ``admin`` its AdminService) on
    ``app``, before the listener starts. ``incidents``: a coroutine function answering the
    open incidents, when there is one; ``timeout`` bounds every read that touches etcd;
    ``interval``: how often open pages are updated."""
    source = ClusterSource(node, admin, incidents=incidents, timeout=timeout)
    hub = Hub(source, interval=interval)
    dashboard = Dashboard(source, hub)
    app.middlewares.append(json_errors)
    app.router.add_get("/", dashboard.index)
    app.router.add_get("/static/{name}", dashboard.static)
    app.router.add_get("/api/status", dashboard.status)
    app.router.add_get("/api/events", dashboard.events)
    app.router.add_get("/api/history/{region}", dashboard.history)
    app.router.add_get("/api/incidents", dashboard.incidents)
    app.router.add_get("/api/stream", hub.serve)

    async def close_streams(app: web.Application) -> None:
        await hub.close()

    # Before the listener waits for open requests to end: streams never end on their own.
    app.on_shutdown.append(close_streams)
    return hub
