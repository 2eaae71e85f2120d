"""The health endpoints' HTTP side on a real aiohttp server (latitude.web's, as the agent runs
it): statuses, JSON bodies, methods, unknown paths and bad queries. The snapshot is made up:
what it means is agent.health's, tested in test_health."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent import health_http
from agent.failsafe import Word
from agent.health import Marks, Snapshot
from latitude.v1 import common_pb2
from latitude.web import WebServer

STANDBY = common_pb2.DatabaseStatus(
    role=common_pb2.DATABASE_ROLE_STANDBY,
    timeline_id=1,
    replayed_lsn=0x3000000,
    replay_lag_bytes=20 << 20,
    replay_lag_seconds=0.5,
    wal_receiver_streaming=True,
    upstream_region="us-east-1",
)


@pytest.fixture
async def client():
    """A web server whose agent has a standby 20 MB behind."""
    current = Snapshot(
        region="eu-west-1",
        database=STANDBY,
        observed_age=0.1,
        fresh_for=1.5,
        word=Word("us-east-1", False, 4),
        lease_remaining=100.0,
        lease_margin=2.0,
        loop_ages={"probe": 0.1},
    )
    web = WebServer("127.0.0.1:0")
    health_http.install(web.app, lambda: current)
    async with TestClient(TestServer(web.app)) as client:
        yield client


async def test_each_path_answers_with_its_status_and_a_json_body(client):
    expected = {
        "/primary": 503,
        "/replica": 200,
        "/read-only": 200,
        "/health": 200,
        "/liveness": 200,
        "/readiness": 200,
    }
    seen = {}
    for path in expected:
        response = await client.get(path)
        body = await response.json()
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.headers["Cache-Control"] == "no-store"
        assert body["region"] == "eu-west-1" and body["status"] == response.status
        assert body["write_region"] == "us-east-1" and body["leader_epoch"] == 4
        seen[path] = response.status
    assert seen == expected
    body = await (await client.get("/primary")).json()
    assert body["reason"] == "the database is a standby"


async def test_the_lag_bound_decides_the_replica(client):
    assert (await client.get("/replica?lag=32MB")).status == 200
    response = await client.get("/replica", params={"lag": "16MB"})
    assert response.status == 503
    assert (await response.json())["reason"] == f"replay lag {20 << 20} bytes exceeds lag=16MB"
    assert (await client.get("/read-only?lag=1s")).status == 200
    assert (await client.get("/read-only?lag=100ms")).status == 503


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("/replica?lag=16XB", "lag='16XB': unknown unit 'XB'"),
        ("/replica?lag=", "lag='': expected a size"),
        ("/replica?lag=1s&lag=2s", "lag= given more than once"),
        ("/replica?max_lag=1s", "unknown query parameter 'max_lag' (only lag= is understood)"),
        ("/primary?lag=1s", "/primary takes no query parameters (got 'lag')"),
    ],
)
async def test_a_bad_query_is_a_400_naming_it(client, url, error):
    response = await client.get(url)
    assert response.status == 400
    body = await response.json()
    assert body["status"] == 400 and body["error"].startswith(error), body


async def test_head_answers_the_status_without_a_body(client):
    response = await client.head("/replica")
    assert response.status == 200 and await response.read() == b""
    assert (await client.head("/primary")).status == 503


async def test_options_answers_the_status_too_for_load_balancers_that_check_with_it(client):
    response = await client.options("/primary")
    assert response.status == 503
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert (await response.json())["reason"] == "the database is a standby"
    assert (await client.options("/replica")).status == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(client, method):
    response = await client.request(method, "/primary")
    assert response.status == 405
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert (await response.json())["error"] == f"{method} is not allowed here"


async def test_unknown_paths_are_a_json_404(client):
    response = await client.get("/master")
    assert response.status == 404
    assert (await response.json())["error"] == (
        "no such path '/master' (health: /primary, /replica, /read-only, /health, /liveness, "
        "/readiness)"
    )
    assert (await client.get("/primary/")).status == 404


async def test_metrics_are_still_served_beside_them(client):
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    response = await client.post("/metrics")
    assert response.status == 405 and "error" in await response.json()


def test_a_snapshot_reads_the_agent_as_it_is_now():
    """The margin and the stall limit come from the agent's own timing (and the leader's
    ack_every); an agent that has not probed yet has no observation age."""
    marks = Marks(clock=lambda: 99.0)
    marks.tick("probe")
    marks.fence_coming("FENCE f1")
    agent = SimpleNamespace(
        config=SimpleNamespace(region="us-east-1", probe_timeout=3.0),
        interval=0.5,
        fence_after=6.0,
        link=SimpleNamespace(welcome=SimpleNamespace(ack_every=2)),
        failsafe=SimpleNamespace(word=Word("us-east-1", False, 2)),
        lease=SimpleNamespace(deadline=104.0),
        marks=marks,
        observation=lambda: (STANDBY, -math.inf),
    )
    s = health_http.snapshot_of(agent, now=100.0)
    assert (s.region, s.lease_remaining, s.lease_margin) == ("us-east-1", 4.0, 3.0)
    assert (s.observed_age, s.fresh_for, s.stall_after) == (math.inf, 1.5, 26.0)
    assert (s.loop_ages, s.draining, s.promoted) == ({"probe": 1.0}, "FENCE f1", False)
    agent.observation = lambda: (STANDBY, 99.75)
    agent.config.probe_timeout = 0.1
    agent.link.welcome = None  # none yet: every report counts as acknowledged
    s = health_http.snapshot_of(agent, now=100.0)
    assert (s.observed_age, s.stall_after, s.lease_margin) == (0.25, health_http.MIN_STALL, 3.0)
    agent.link.welcome = SimpleNamespace(ack_every=4)
    assert health_http.snapshot_of(agent, now=100.0).lease_margin == 2.0
