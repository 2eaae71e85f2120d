"""The health endpoints on the agent's HTTP listener (latitude.web): ``/primary``,
``/replica``, ``/read-only``, ``/health``, ``/liveness``, ``/readiness``.

A check gets 200 (yes) or 503 (no), always with a JSON body saying why and what the answer rests
on (agent.health decides). GET and HEAD answer; OPTIONS answers the same status too, because
load balancers commonly check with ``OPTIONS /primary``; any other method gets 405. A path the
agent does not serve gets a JSON 404, a bad query a JSON 400 naming the value.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from agent import health
from agent.failsafe import FRESH_INTERVALS
from agent.health_lag import BadLag, LagBound, parse_lag

if TYPE_CHECKING:
    from agent.main import Agent

ALLOWED = "GET, HEAD, OPTIONS"
_LAGGED = {"/replica": health.replica, "/read-only": health.read_only}
_PLAIN = {
    "/primary": health.primary,
    "/health": health.health,
    "/liveness": health.liveness,
    "/readiness": health.readiness,
}
PATHS = ("/primary", "/replica", "/read-only", "/health", "/liveness", "/readiness")
# A loop is stuck when it has not gone round for this many of its longest iterations (an
# interval plus a probe's two timeouts), and never sooner than this many seconds.
STALL_ITERATIONS = 4
MIN_STALL = 10.0


def snapshot_of(agent: Agent, now: float | None = None) -> health.Snapshot:
    """What the agent knows now, for one answer."""
    now = time.monotonic() if now is None else now
    database, observed_at = agent.observation()
    interval = agent.interval
    longest = interval + 2 * agent.config.probe_timeout
    welcome = agent.link.welcome
    ack_period = max(1, welcome.ack_every if welcome is not None else 1) * interval
    return health.Snapshot(
        region=agent.config.region,
        database=database,
        observed_age=now - observed_at if observed_at > -math.inf else math.inf,
        fresh_for=FRESH_INTERVALS * interval,
        word=agent.failsafe.word,
        lease_remaining=agent.lease.deadline - now,
        lease_margin=health.drain_margin(
            fence_after=agent.fence_after, ack_period=ack_period, interval=interval
        ),
        draining=agent.marks.draining,
        promoted=agent.marks.promoted,
        loop_ages={loop: now - at for loop, at in agent.marks.ticks.items()},
        stall_after=max(MIN_STALL, STALL_ITERATIONS * longest),
    )


def _json(status: int, payload: dict, **headers: str) -> web.Response:
    response = web.json_response(payload, status=status, headers=headers or None)
    response.headers["Cache-Control"] = "no-store"
    return response


def _error(status: int, message: str, **headers: str) -> web.Response:
    return _json(status, {"status": status, "error": message}, **headers)


def _lag(request: web.Request) -> LagBound | None:
    """The ``lag=`` bound of a /replica or /read-only request; BadLag for a bad one."""
    unknown = sorted(set(request.query) - {"lag"})
    if unknown:
        raise BadLag(f"unknown query parameter {unknown[0]!r} (only lag= is understood)")
    values = request.query.getall("lag", [])
    if len(values) > 1:
        raise BadLag("lag= given more than once")
    return parse_lag(values[0]) if values else None


def install(app: web.Application, snapshot: Callable[[], health.Snapshot]) -> None:
    """Add the endpoints to ``app`` (before it starts), answering from ``snapshot()``."""

    async def answer(request: web.Request) -> web.Response:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            return _error(405, f"{request.method} is not allowed here", Allow=ALLOWED)
        path = request.path
        try:
            if path in _LAGGED:
                lag = _lag(request)
                decide = functools.partial(_LAGGED[path], lag=lag)
            else:
                if request.query:
                    name = sorted(request.query)[0]
                    raise BadLag(f"{path} takes no query parameters (got {name!r})")
                decide = _PLAIN[path]
        except BadLag as err:
            return _error(400, str(err))
        now = snapshot()
        verdict = decide(now)
        headers = {"Allow": ALLOWED} if request.method == "OPTIONS" else {}
        return _json(verdict.status, health.body(now, verdict), **headers)

    for path in PATHS:
        app.router.add_route("*", path, answer)
    app.middlewares.append(_json_not_found)


@web.middleware
async def _json_not_found(request: web.Request, handler) -> web.StreamResponse:
    """Unknown paths get a JSON 404 listing the health paths, like every other answer."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _error(404, f"no such path {request.path!r} (health: {', '.join(PATHS)})")
    except web.HTTPMethodNotAllowed as err:
        allowed = ", ".join(sorted(err.allowed_methods))
        return _error(405, f"{request.method} is not allowed here", Allow=allowed)
