"""Service health checks against real in-process servers on ephemeral ports, and the window
arithmetic on a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent.checks import CheckRunner, CheckSpec, OutcomeWindow, ServiceCheck
from latitude.errors import ConfigError

HOST = "127.0.0.1"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# --- OutcomeWindow, pure ----------------------------------------------------------------------


def test_an_empty_window_reports_zero():
    window = OutcomeWindow(10.0)
    assert window.error_rate(0.0) == 0.0
    assert window.median_latency(0.0) == 0.0


def test_error_rate_is_failed_over_all_probes():
    window = OutcomeWindow(10.0)
    for t, ok in enumerate([True, True, False, True]):
        window.add(float(t), ok, 0.1)
    assert window.error_rate(4.0) == 0.25


def test_outcomes_count_until_exactly_the_window_edge():
    window = OutcomeWindow(10.0)
    window.add(0.0, False, 1.0)
    window.add(5.0, True, 0.2)
    assert window.error_rate(9.999) == 0.5
    assert window.error_rate(10.0) == 0.0  # the t=0 failure is exactly `window` old: gone
    assert window.median_latency(14.999) == 0.2
    assert window.median_latency(15.0) == 0.0
    assert window.error_rate(15.0) == 0.0


def test_median_of_odd_and_even_counts_ignores_failures():
    window = OutcomeWindow(30.0)
    for latency in (0.3, 0.1, 0.2):
        window.add(1.0, True, latency)
    window.add(1.0, False, 5.0)  # a timeout's latency is not a response time
    assert window.median_latency(2.0) == pytest.approx(0.2)
    window.add(2.0, True, 0.4)
    assert window.median_latency(2.0) == pytest.approx(0.25)


def test_only_failures_give_full_error_rate_and_no_response_time():
    window = OutcomeWindow(30.0)
    window.add(0.0, False, 1.0)
    window.add(1.0, False, 1.0)
    assert window.error_rate(1.0) == 1.0
    assert window.median_latency(1.0) == 0.0


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="window"):
        OutcomeWindow(0.0)


# --- CheckSpec.parse ---------------------------------------------------------------------------

WHERE = "agent.toml: [[agent.checks]] #1"


def test_parse_fills_defaults_and_normalises_numbers():
    spec = CheckSpec.parse(
        {"name": "api", "kind": "http", "target": "http://h:8080/healthz"}, WHERE
    )
    assert spec == CheckSpec("api", "http", "http://h:8080/healthz", 1.0, 1.0, 200, None, "")
    grpc_spec = CheckSpec.parse(
        {
            "name": "rpc",
            "kind": "grpc",
            "target": "[::1]:50051",
            "service": "x",
            "timeout": 3,
            "interval": 2,
        },
        WHERE,
    )
    assert (grpc_spec.timeout, grpc_spec.interval, grpc_spec.service) == (3.0, 2.0, "x")
    assert isinstance(grpc_spec.timeout, float)


def test_a_timeout_longer_than_the_interval_is_allowed():
    spec = CheckSpec.parse(
        {"name": "db", "kind": "tcp", "target": "db:5432", "timeout": 5, "interval": 0.5}, WHERE
    )
    assert (spec.timeout, spec.interval) == (5.0, 0.5)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"kind": "icmp"}, "kind"),
        ({"target": None}, "target"),
        ({"target": "ftp://h/x"}, "target"),
        ({"target": "http://"}, "target"),
        ({"target": "http://h:99999/"}, "target"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"timeout": "1s"}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"interval": 0.0}, "interval"),
        ({"expect_status": 42}, "expect_status"),
        ({"expect_status": "200"}, "expect_status"),
        ({"expect_body": 7}, "expect_body"),
        ({"service": "x"}, "service"),
        ({"retries": 3}, "retries"),
    ],
)
def test_parse_rejects_invalid_http_settings_naming_the_field(change, field):
    raw = {"name": "api", "kind": "http", "target": "http://h/", **change}
    if change.get("target", "") is None:
        del raw["target"]
    with pytest.raises(ConfigError) as caught:
        CheckSpec.parse(raw, WHERE)
    assert WHERE in str(caught.value)
    assert f"{field}:" in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"name": "db", "kind": "tcp", "target": "db"}, "target"),
        ({"name": "db", "kind": "tcp", "target": "http://db:5432"}, "target"),
        ({"name": "db", "kind": "tcp", "target": "db:5432", "expect_body": "ok"}, "expect_body"),
        ({"name": "rpc", "kind": "grpc", "target": "h:1", "expect_status": 200}, "expect_status"),
        ({"name": "rpc", "kind": "grpc", "target": "h:1", "service": 5}, "service"),
        ({"kind": "tcp", "target": "db:5432"}, "name"),
    ],
)
def test_parse_rejects_invalid_tcp_and_grpc_settings(raw, field):
    with pytest.raises(ConfigError, match=f"{field}:") as caught:
        CheckSpec.parse(raw, WHERE)
    assert WHERE in str(caught.value)


def test_the_runner_refuses_duplicate_names():
    spec = CheckSpec("api", "tcp", "h:1")
    with pytest.raises(ConfigError, match="'api'"):
        CheckRunner([spec, spec])


# --- servers -----------------------------------------------------------------------------------


class HttpServer:
    """A tiny HTTP/1.1 responder: the path chooses the behaviour. Counts the requests it has
    received and answered, so tests wait for events rather than for time."""

    RESPONSES = {
        b"/health": b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nstatus=ok",
        b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"8\r\nstatus=o\r\n1\r\nk\r\n0\r\n\r\n",
        b"/down": b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        b"/garbage": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    }

    def __init__(self) -> None:
        self.port = 0
        self.handlers: set[asyncio.Task] = set()
        self.received: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self._changed = asyncio.Condition()

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    async def wait_for(self, counter: Counter[str], counts: dict[str, int]) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: all(counter[p] >= n for p, n in counts.items()))

    async def _count(self, counter: Counter[str], path: bytes) -> None:
        async with self._changed:
            counter[path.decode()] += 1
            self._changed.notify_all()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handlers.add(asyncio.current_task())
        try:
            path = (await reader.readuntil(b"\r\n\r\n")).split(b" ")[1]
            await self._count(self.received, path)
            if path == b"/slow":
                await reader.read()  # never answer; end when the client gives up
            else:
                writer.write(self.RESPONSES[path])
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self._count(self.answered, path)


@pytest.fixture
async def http_server() -> AsyncIterator[HttpServer]:
    responder = HttpServer()
    server = await asyncio.start_server(responder.handle, HOST, 0)
    responder.port = server.sockets[0].getsockname()[1]
    yield responder
    server.close()
    await server.wait_closed()
    async with asyncio.timeout(5):
        await asyncio.gather(*responder.handlers, return_exceptions=True)


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


async def probe_once(spec: CheckSpec):
    check = ServiceCheck(spec)
    try:
        return await check.probe()
    finally:
        await check.close()


def http_spec(url: str, **settings) -> CheckSpec:
    return CheckSpec("api", "http", url, **settings)


# --- HTTP --------------------------------------------------------------------------------------


async def test_http_ok_with_status_and_body(http_server):
    result = await probe_once(http_spec(http_server.url("/health"), expect_body="ok"))
    assert (result.name, result.ok, result.error) == ("api", True, "")
    assert 0 < result.latency_seconds < 1


async def test_http_body_is_read_through_chunked_encoding(http_server):
    result = await probe_once(http_spec(http_server.url("/chunked"), expect_body="status=ok"))
    assert (result.ok, result.error) == (True, "")


async def test_http_missing_body_text_is_named(http_server):
    result = await probe_once(http_spec(http_server.url("/health"), expect_body="ready"))
    assert (result.ok, result.error) == (False, "body does not contain 'ready'")


async def test_http_unexpected_status(http_server):
    result = await probe_once(http_spec(http_server.url("/down")))
    assert (result.ok, result.error) == (False, "HTTP 503")
    result = await probe_once(http_spec(http_server.url("/down"), expect_status=204))
    assert result.error == "HTTP 503 (expected 204)"


async def test_http_not_http(http_server):
    result = await probe_once(http_spec(http_server.url("/garbage")))
    assert not result.ok
    assert result.error.startswith("bad status line")


async def test_http_timeout_reports_the_timeout_as_latency(http_server):
    result = await probe_once(http_spec(http_server.url("/slow"), timeout=0.2))
    assert (result.ok, result.error) == (False, "timed out after 0.2 s")
    assert result.latency_seconds == 0.2


async def test_http_connection_refused(closed_port):
    result = await probe_once(http_spec(f"http://{HOST}:{closed_port}/"))
    assert (result.ok, result.error) == (False, "connection refused")


# --- TCP ---------------------------------------------------------------------------------------


async def test_tcp_connect(closed_port):
    accepted = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(accept, HOST, 0)
    try:
        port = server.sockets[0].getsockname()[1]
        result = await probe_once(CheckSpec("db", "tcp", f"{HOST}:{port}"))
        assert (result.ok, result.error) == (True, "")
        async with asyncio.timeout(5):
            await accepted.wait()
    finally:
        server.close()
        await server.wait_closed()
    refused = await probe_once(CheckSpec("db", "tcp", f"{HOST}:{closed_port}"))
    assert (refused.ok, refused.error) == (False, "connection refused")


# --- gRPC health -------------------------------------------------------------------------------


async def start_grpc(port: int = 0) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{HOST}:{port}")
    await server.start()
    return server, servicer, port


@pytest.fixture
async def grpc_server() -> AsyncIterator[tuple[health.aio.HealthServicer, int]]:
    server, servicer, port = await start_grpc()
    yield servicer, port
    await server.stop(None)


@pytest.fixture
def channels_opened(monkeypatch) -> list[int]:
    opened: list[int] = []
    real: Callable[..., grpc.aio.Channel] = grpc.aio.insecure_channel

    def counting(*args, **kwargs):
        opened.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(grpc.aio, "insecure_channel", counting)
    return opened


async def test_grpc_health_follows_serving_status_on_one_channel(grpc_server, channels_opened):
    servicer, port = grpc_server
    await servicer.set("api", SERVING)
    check = ServiceCheck(CheckSpec("rpc", "grpc", f"{HOST}:{port}", service="api"))
    try:
        assert (await check.probe()).ok
        await servicer.set("api", NOT_SERVING)
        result = await check.probe()
        assert (result.ok, result.error) == (False, "NOT_SERVING")
        await servicer.set("api", SERVING)
        assert (await check.probe()).ok
    finally:
        await check.close()
    assert len(channels_opened) == 1


async def test_grpc_unknown_service(grpc_server):
    _, port = grpc_server
    result = await probe_once(CheckSpec("rpc", "grpc", f"{HOST}:{port}", service="nope"))
    assert (result.ok, result.error) == (False, "unknown service 'nope'")


async def test_grpc_refused_then_recovered_on_the_same_channel(closed_port):
    check = ServiceCheck(CheckSpec("rpc", "grpc", f"{HOST}:{closed_port}", interval=0.1))
    try:
        refused = await check.probe()
        assert (refused.ok, refused.error) == (False, "connection refused")
        server, _, _ = await start_grpc(closed_port)
        try:
            async with asyncio.timeout(5):
                # Re-probing on an interval until the service answers is the behaviour tested.
                while not (result := await check.probe()).ok:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert result.error == ""
        finally:
            await server.stop(None)
    finally:
        await check.close()


# --- CheckRunner -------------------------------------------------------------------------------


async def test_runner_end_to_end(http_server):
    now = [1000.0]
    runner = CheckRunner(
        [
            http_spec(http_server.url("/health"), interval=0.02, expect_body="ok"),
            CheckSpec("web", "http", http_server.url("/down"), interval=0.02),
        ],
        clock=lambda: now[0],
        window=30.0,
    )
    assert [(r.name, r.ok, r.error) for r in runner.latest()] == [
        ("api", False, "not yet run"),
        ("web", False, "not yet run"),
    ]
    assert (runner.error_rate(), runner.response_time()) == (0.0, 0.0)
    runner.start()
    try:
        # A check probes again only after recording its previous result, so a second request
        # proves the first result is in.
        async with asyncio.timeout(5):
            await http_server.wait_for(http_server.answered, {"/health": 2, "/down": 2})
    finally:
        await runner.close()
    api, web = runner.latest()
    assert (api.name, api.ok, api.error) == ("api", True, "")
    assert (web.name, web.ok, web.error) == ("web", False, "HTTP 503")
    assert 0.0 < runner.error_rate() < 1.0
    assert 0.0 < runner.response_time() < 1.0
    now[0] += 30.0  # the injected clock drives the window: everything has now expired
    assert (runner.error_rate(), runner.response_time()) == (0.0, 0.0)
    await runner.close()  # idempotent


async def test_closing_the_runner_interrupts_a_probe_in_flight(http_server):
    runner = CheckRunner([http_spec(http_server.url("/slow"), timeout=30.0, interval=30.0)])
    runner.start()
    try:
        async with asyncio.timeout(5):
            await http_server.wait_for(http_server.received, {"/slow": 1})
    finally:
        async with asyncio.timeout(3):  # well inside the probe's own 30 s timeout
            await runner.close()
    # The interrupted probe left no socket behind: the server saw the connection end.
    async with asyncio.timeout(5):
        await http_server.wait_for(http_server.answered, {"/slow": 1})
    assert runner.latest()[0].error == "not yet run"
