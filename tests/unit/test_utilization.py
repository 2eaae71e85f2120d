"""Capacity utilisation from the operator's source: parsing, holding the last good figure on a
fake clock, real files, and a real HTTP server on an ephemeral port."""

from __future__ import annotations

import asyncio
import http.server
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import config as agent_config
from agent.utilization import HeldFigure, SourceError, Utilization, parse_utilization
from latitude.errors import ConfigError

HOST = "127.0.0.1"
INTERVAL = 0.5
LOGGER = "latitude.agent.utilization"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.42\n", 0.42),
        ("  0 ", 0.0),
        ("1.3", 1.3),  # overloaded
        ("7", 7.0),
        ('{"utilization": 0.6}', 0.6),
        ('{"utilization": 1, "other": "x"}', 1.0),
    ],
)
def test_parse_reads_a_number_or_json(text, value):
    assert parse_utilization(text) == value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not a number"),
        ("busy", "not a number"),
        ("42%", "not a number"),
        ("nan", "not a finite number"),
        ("inf", "not a finite number"),
        ("-0.1", "negative"),
        ("250", "over 100"),
        ('{"load": 0.5}', 'no "utilization" number'),
        ('{"utilization": "0.5"}', 'no "utilization" number'),
        ('{"utilization": true}', 'no "utilization" number'),
        ("[0.5]", 'no "utilization" number'),
        ('{"utilization": -1}', "negative"),
    ],
)
def test_parse_refuses_what_is_not_a_figure(text, reason):
    with pytest.raises(SourceError, match=reason):
        parse_utilization(text)


# --- holding the last good figure, pure ------------------------------------------------------


def test_nothing_read_yet_is_zero():
    assert HeldFigure().value(0.0, INTERVAL) == 0.0


def test_the_last_good_figure_stands_for_three_intervals_then_zero():
    figure = HeldFigure(hold_intervals=3)
    assert not figure.succeeded(10.0, 0.8)
    assert figure.failed()  # the streak starts
    assert not figure.failed()  # and goes on
    assert figure.value(10.0 + 3 * INTERVAL, INTERVAL) == 0.8
    assert figure.value(10.0 + 3 * INTERVAL + 0.01, INTERVAL) == 0.0
    assert figure.succeeded(12.0, 0.3)  # the streak ends
    assert figure.value(12.0, INTERVAL) == 0.3


# --- a file ----------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def from_file(path: Path, clock: FakeClock) -> Utilization:
    return Utilization(str(path), interval=lambda: INTERVAL, clock=clock)


async def test_without_a_source_the_figure_is_zero_and_nothing_runs(clock):
    utilization = Utilization("", interval=lambda: INTERVAL, clock=clock)
    async with asyncio.timeout(1):
        await utilization.run()  # returns at once
    assert utilization.value() == 0.0


async def test_the_file_is_read_again_each_time(tmp_path, clock):
    path = tmp_path / "utilization"
    path.write_text("0.42\n")
    utilization = from_file(path, clock)
    await utilization.read_once()
    assert utilization.value() == 0.42
    path.write_text("1.5\n")
    clock.now += INTERVAL
    await utilization.read_once()
    assert utilization.value() == 1.5


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (lambda path: path.unlink(), "does not exist"),
        (lambda path: path.write_text("n/a\n"), "not a number: 'n/a'"),
        (lambda path: path.write_text("NaN\n"), "not a finite number"),
        (lambda path: path.write_text("-0.2\n"), "negative: -0.2"),
        (lambda path: path.write_bytes(b"\xff\xfe"), "not text"),
    ],
)
async def test_a_failing_file_keeps_the_last_figure_a_while_and_logs_once(
    tmp_path, clock, caplog, break_it, reason
):
    caplog.set_level(logging.INFO, LOGGER)
    path = tmp_path / "utilization"
    path.write_text("0.7\n")
    utilization = from_file(path, clock)
    await utilization.read_once()
    break_it(path)
    for _ in range(3):
        clock.now += INTERVAL
        await utilization.read_once()
        assert utilization.value() == 0.7
    clock.now += INTERVAL
    await utilization.read_once()
    assert utilization.value() == 0.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert reason in warnings[0] and str(path) in warnings[0]

    path.write_text("0.25\n")
    clock.now += INTERVAL
    await utilization.read_once()
    assert utilization.value() == 0.25
    assert any("readable again" in r.getMessage() for r in caplog.records)
    # A new streak is logged again.
    path.write_text("x\n")
    await utilization.read_once()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2


async def test_a_source_that_never_worked_reports_zero(tmp_path, clock, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    utilization = from_file(tmp_path / "absent", clock)
    await utilization.read_once()
    assert utilization.value() == 0.0
    assert "reporting 0 until it answers" in caplog.text


async def reported(utilization: Utilization, value: float) -> None:
    async with asyncio.timeout(5):
        while True:
            if utilization.value() == value:
                return
            await asyncio.sleep(0.005)


async def test_the_loop_follows_the_file(tmp_path):
    path = tmp_path / "utilization"
    path.write_text("0.1\n")
    utilization = Utilization(str(path), interval=lambda: 0.01)
    task = asyncio.create_task(utilization.run())
    try:
        await reported(utilization, 0.1)
        path.write_text("0.9\n")
        await reported(utilization, 0.9)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# --- a URL -----------------------------------------------------------------------------------


class MetricsServer(http.server.ThreadingHTTPServer):
    """Answers by path; /slow holds its answer until the test ends."""

    BODIES = {
        "/number": (200, "0.42\n"),
        "/json": (200, '{"utilization": 0.6, "window": "1m"}'),
        "/missing-field": (200, '{"load": 0.6}'),
        "/error": (503, "unavailable"),
    }

    def __init__(self) -> None:
        super().__init__((HOST, 0), MetricsHandler)
        self.release = threading.Event()

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.server_address[1]}{path}"


class MetricsHandler(http.server.BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        if self.path == "/slow":
            self.server.release.wait(10)
            return
        status, body = self.server.BODIES[self.path]
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def metrics() -> Iterator[MetricsServer]:
    server = MetricsServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def from_url(url: str, clock: FakeClock, timeout: float = 1.0) -> Utilization:
    return Utilization(url, interval=lambda: INTERVAL, clock=clock, timeout=timeout)


@pytest.mark.parametrize(("path", "value"), [("/number", 0.42), ("/json", 0.6)])
async def test_a_url_answers_a_number_or_json(metrics, clock, path, value):
    utilization = from_url(metrics.url(path), clock)
    await utilization.read_once()
    assert utilization.value() == value


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/error", "HTTP 503"),
        ("/missing-field", 'no "utilization" number'),
        ("/slow", "timed out after 0.2 s"),
    ],
)
async def test_a_failing_url_keeps_the_last_figure_then_zero(metrics, clock, caplog, path, reason):
    caplog.set_level(logging.INFO, LOGGER)
    good = from_url(metrics.url("/number"), clock, timeout=0.2)
    await good.read_once()
    good.source = metrics.url(path)  # the same reader, now pointed at a failing source
    clock.now += INTERVAL
    await good.read_once()
    assert good.value() == 0.42
    clock.now += 3 * INTERVAL
    await good.read_once()
    assert good.value() == 0.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and reason in warnings[0], warnings


async def test_a_refused_url_is_a_failure_not_a_crash(closed_port, clock, caplog):
    utilization = from_url(f"http://{HOST}:{closed_port}/utilization", clock)
    await utilization.read_once()
    assert utilization.value() == 0.0
    assert "connection refused" in caplog.text


async def test_a_slow_url_does_not_hold_up_the_figure(metrics):
    """The fetch runs in its own loop: asking for the figure never waits for it."""
    utilization = Utilization(metrics.url("/slow"), interval=lambda: INTERVAL, timeout=5.0)
    task = asyncio.create_task(utilization.run())
    try:
        await asyncio.sleep(0.05)  # the fetch is under way, and hangs
        assert not task.done()
        assert utilization.value() == 0.0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# --- settings --------------------------------------------------------------------------------


def test_the_setting_takes_a_path_or_a_url(tmp_path):
    for source in (str(tmp_path / "u"), "http://metrics.internal:9100/utilization"):
        config, _ = agent_config.load(
            None, {"region": "r", "coordinators": "c:1", "utilization_source": source}
        )
        assert config.utilization_source == source
    with pytest.raises(ConfigError, match="utilization_source"):
        agent_config.load(
            None, {"region": "r", "coordinators": "c:1", "utilization_source": "http://:x/"}
        )


def test_a_json_nan_is_refused():
    # JSON has no NaN literal, but Python's json module reads one.
    with pytest.raises(SourceError, match="not a finite number"):
        parse_utilization('{"utilization": NaN}')
