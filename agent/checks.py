"""Service health checks (HTTP, TCP, gRPC health) and the region figures derived from them.

Each check runs on its own interval in its own task, so a slow service delays only its own
next probe. A probe never raises: whatever goes wrong becomes a CheckResult with a short reason.
Error rate and response time are what the checks measured over a sliding window, not traffic
statistics: a region without checks reports 0 for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
import ssl
import statistics
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, fields

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent import metrics
from latitude.errors import ConfigError
from latitude.netaddr import parse_host_port
from latitude.v1 import common_pb2

log = logging.getLogger("latitude.agent.checks")

KINDS = ("http", "tcp", "grpc")
_ONLY_FOR = {"expect_status": "http", "expect_body": "http", "service": "grpc"}
_BODY_CAP = 64 * 1024
_MAX_FIRST_DELAY = 1.0  # jitter spreads checks configured together, without delaying them long
_CLOSE_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class CheckSpec:
    name: str
    kind: str  # one of KINDS
    target: str  # http: a URL; tcp and grpc: "host:port"
    timeout: float = 1.0
    interval: float = 1.0
    expect_status: int = 200
    expect_body: str | None = None  # a substring the HTTP body must contain
    service: str = ""  # grpc.health.v1 service name; "" is the server as a whole

    @classmethod
    def parse(cls, raw: Mapping[str, object], where: str) -> CheckSpec:
        """One ``[[agent.checks]]`` table; ConfigError naming ``where`` and the field."""

        def bad(field: str, problem: str) -> ConfigError:
            return ConfigError(f"{where}: {field}: {problem}")

        name, kind, target = raw.get("name"), raw.get("kind"), raw.get("target")
        if not isinstance(name, str) or not name:
            raise bad("name", "required (a non-empty string)")
        where = f"{where} ({name})"
        if unknown := set(raw) - {f.name for f in fields(cls)}:
            raise bad(min(unknown), "unknown setting")
        if kind not in KINDS:
            raise bad("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
        if misplaced := [key for key, only in _ONLY_FOR.items() if key in raw and kind != only]:
            raise bad(misplaced[0], f"applies only to {_ONLY_FOR[misplaced[0]]} checks")
        if not isinstance(target, str) or not target:
            raise bad("target", "required (a non-empty string)")
        if kind == "http":
            parse_url(target, f"{where}: target")
        elif "/" in target:  # parse_host_port would take "http://h:80" as host "http://h"
            raise bad("target", f"expected host:port, got {target!r}")
        else:
            parse_host_port(target, f"{where}: target")
        seconds = {}
        for key in ("timeout", "interval"):
            value = raw.get(key, 1.0)
            # bool is an int, and NaN is not <= 0: rule both out explicitly.
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value > 0):
                raise bad(key, f"must be a positive number of seconds, got {value!r}")
            seconds[key] = float(value)
        status = raw.get("expect_status", 200)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise bad("expect_status", f"must be an HTTP status code, got {status!r}")
        body = raw.get("expect_body")
        if body is not None and (not isinstance(body, str) or not body):
            raise bad("expect_body", f"must be a non-empty string, got {body!r}")
        service = raw.get("service", "")
        if not isinstance(service, str):
            raise bad("service", f"must be a string, got {service!r}")
        return cls(name, kind, target, seconds["timeout"], seconds["interval"], status, body,
                   service)  # fmt: skip


def parse_url(target: str, field: str) -> urllib.parse.SplitResult:
    url = urllib.parse.urlsplit(target)
    try:
        url.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError as err:
        raise ConfigError(f"{field}: bad port in {target!r}") from err
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"{field}: must be an http:// or https:// URL, got {target!r}")
    return url


class OutcomeWindow:
    """Probe outcomes of the last ``window`` seconds: an outcome added at ``t`` counts while
    ``now - t < window``. Pure: the caller passes ``now``."""

    def __init__(self, window: float) -> None:
        if not window > 0:
            raise ValueError(f"window must be positive, got {window!r}")
        self.window = window
        self._outcomes: deque[tuple[float, bool, float]] = deque()

    def add(self, now: float, ok: bool, latency: float) -> None:
        self._outcomes.append((now, ok, latency))
        self._expire(now)

    def error_rate(self, now: float) -> float:
        """Failed probes / probes, 0..1; 0 with no probes."""
        self._expire(now)
        if not self._outcomes:
            return 0.0
        return sum(not ok for _, ok, _ in self._outcomes) / len(self._outcomes)

    def median_latency(self, now: float) -> float:
        """Median latency of the successful probes; 0 with none (a failure's latency says
        nothing about how fast the service answers)."""
        self._expire(now)
        latencies = [latency for _, ok, latency in self._outcomes if ok]
        return statistics.median(latencies) if latencies else 0.0

    def _expire(self, now: float) -> None:
        while self._outcomes and now - self._outcomes[0][0] >= self.window:
            self._outcomes.popleft()


class ServiceCheck:
    """One configured check. Keeps its gRPC channel for its lifetime: a channel per probe would
    make every probe pay for a connection and leave the server a trail of closed ones."""

    def __init__(self, spec: CheckSpec) -> None:
        self.spec = spec
        self._channel: grpc.aio.Channel | None = None

    async def probe(self) -> common_pb2.CheckResult:
        spec = self.spec
        timed_out = f"timed out after {spec.timeout:g} s"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(spec.timeout):
                error = await self._attempt()
        except TimeoutError:
            error = timed_out
        except OSError as err:
            error = describe_os_error(err)
        except grpc.aio.AioRpcError as err:
            error = timed_out if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED else self._rpc(err)
        except Exception as err:  # a bug or a surprise must not end the check's loop
            log.warning("check %s failed unexpectedly", spec.name, exc_info=True)
            error = f"{type(err).__name__}: {err}"[:200]
        latency = spec.timeout if error == timed_out else time.perf_counter() - started
        return common_pb2.CheckResult(name=spec.name, ok=not error, latency_seconds=latency,
                                      error=error)  # fmt: skip

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    async def _attempt(self) -> str:
        """'' when healthy, else why not."""
        if self.spec.kind == "http":
            return await self._http()
        host, port = parse_host_port(self.spec.target, "target")
        if self.spec.kind == "tcp":
            transport, _ = await asyncio.get_running_loop().create_connection(
                asyncio.Protocol, host, port
            )
            transport.abort()  # nothing to say: a FIN handshake would only cost time
            return ""
        if self._channel is None:
            # gRPC backs off reconnecting up to 2 minutes by default; a health check must see a
            # recovered server by its next probe.
            backoff = max(100, int(self.spec.interval * 1000))
            self._channel = grpc.aio.insecure_channel(self.spec.target, options=[
                ("grpc.initial_reconnect_backoff_ms", backoff),
                ("grpc.min_reconnect_backoff_ms", backoff),
                ("grpc.max_reconnect_backoff_ms", backoff),
            ])  # fmt: skip
        stub = health_pb2_grpc.HealthStub(self._channel)
        request = health_pb2.HealthCheckRequest(service=self.spec.service)
        reply = await stub.Check(request, timeout=self.spec.timeout)
        serving = reply.status == health_pb2.HealthCheckResponse.SERVING
        return "" if serving else health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def _http(self) -> str:
        async with http_exchange(self.spec.target) as reader:
            return await self._response(reader)

    async def _response(self, reader: asyncio.StreamReader) -> str:
        try:
            status, headers = await read_head(reader)
        except HttpError as err:
            return str(err)
        expected = self.spec.expect_status
        if status != expected:
            return f"HTTP {status}" + (f" (expected {expected})" if expected != 200 else "")
        want = self.spec.expect_body
        if not want:
            return ""
        try:
            body = await read_body(reader, headers)
        except HttpError as err:
            return str(err)
        return "" if want.encode() in body else f"body does not contain {want!r}"

    def _rpc(self, err: grpc.aio.AioRpcError) -> str:
        code = err.code()
        if code == grpc.StatusCode.NOT_FOUND:
            return f"unknown service {self.spec.service!r}"
        if code == grpc.StatusCode.UNAVAILABLE and "refused" in (err.details() or "").lower():
            return "connection refused"
        return f"gRPC {code.name}"


class HttpError(Exception):
    """An answer that is not a usable HTTP response; the message says why, briefly."""


@contextlib.asynccontextmanager
async def http_exchange(target: str) -> AsyncIterator[asyncio.StreamReader]:
    """Send ``GET target`` (an http:// or https:// URL) with ``Connection: close`` and yield
    the stream the answer arrives on. The caller bounds the whole exchange with a timeout."""
    url = parse_url(target, "target")
    tls = ssl.create_default_context() if url.scheme == "https" else None
    port = url.port or (443 if tls else 80)
    reader, writer = await asyncio.open_connection(url.hostname, port, ssl=tls)
    try:
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        host = url.netloc.rpartition("@")[2]
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: latitude-agent\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n".encode("ascii")
        )
        await writer.drain()
        yield reader
    finally:
        # Aborted, not closed: a graceful (TLS) close could outlive the caller's timeout.
        writer.transport.abort()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status code and the headers (names in lower case); HttpError when there are none."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
        raise HttpError("no complete HTTP response head") from err
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HttpError(f"bad status line {lines[0][:40]!r}")
    headers = dict(
        (key.strip().lower(), value.strip())
        for key, _, value in (line.partition(":") for line in lines[1:] if line)
    )
    return int(parts[1]), headers


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    """The body, or its first _BODY_CAP bytes: enough to find a marker or read a figure,
    bounded in memory. HttpError when it is malformed or cut short."""
    try:
        return await _read_body(reader, headers)
    except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
        raise HttpError("bad response body") from err


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    body = bytearray()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while len(body) < _BODY_CAP:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                break
            if size > _BODY_CAP - len(body):
                return bytes(body + await reader.readexactly(_BODY_CAP - len(body)))
            body += await reader.readexactly(size)
            await reader.readline()
        return bytes(body)
    remaining = min(int(headers.get("content-length", _BODY_CAP)), _BODY_CAP)
    while remaining > 0 and (data := await reader.read(remaining)):
        body += data
        remaining -= len(data)
    return bytes(body)


def describe_os_error(err: OSError) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, socket.gaierror):
        return f"cannot resolve host: {err.strerror}"
    if isinstance(err, ssl.SSLError):  # its str() carries OpenSSL's file and line
        return f"TLS: {getattr(err, 'verify_message', None) or err.reason}"
    return (err.strerror or str(err) or type(err).__name__).lower()


class CheckRunner:
    """Runs every check on its own interval and keeps what they found."""

    def __init__(
        self,
        specs: Sequence[CheckSpec],
        clock: Callable[[], float] = time.monotonic,
        window: float = 30.0,
    ) -> None:
        names = [spec.name for spec in specs]
        if duplicate := next((n for n in names if names.count(n) > 1), None):
            raise ConfigError(f"[[agent.checks]]: name: {duplicate!r} is used more than once")
        self._checks = [ServiceCheck(spec) for spec in specs]
        self._clock = clock
        self._window = OutcomeWindow(window)
        self._latest = [
            common_pb2.CheckResult(name=name, ok=False, error="not yet run") for name in names
        ]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if self._tasks:
            raise RuntimeError("CheckRunner already started")
        self._tasks = [
            asyncio.create_task(self._run(i, check), name=f"check {check.spec.name}")
            for i, check in enumerate(self._checks)
        ]

    def latest(self) -> list[common_pb2.CheckResult]:
        """The newest result of every check, in configuration order."""
        return list(self._latest)

    def error_rate(self) -> float:
        return self._window.error_rate(self._clock())

    def response_time(self) -> float:
        return self._window.median_latency(self._clock())

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        # Shielded: a caller cancelled while closing must still not leave channels open.
        await asyncio.shield(self._finish(tasks))

    async def _finish(self, tasks: list[asyncio.Task[None]]) -> None:
        for waits in (tasks, [check.close() for check in self._checks]):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_GRACE):
                    await asyncio.gather(*waits, return_exceptions=True)

    async def _run(self, index: int, check: ServiceCheck) -> None:
        loop = asyncio.get_running_loop()
        interval = check.spec.interval
        await asyncio.sleep(random.uniform(0, min(interval, _MAX_FIRST_DELAY)))
        next_at = loop.time()
        while True:
            result = await check.probe()
            self._latest[index] = result
            metrics.checked(result)
            self._window.add(self._clock(), result.ok, result.latency_seconds)
            # A probe that outlasts its interval is followed at once, not by a burst to catch up.
            next_at = max(next_at + interval, loop.time())
            await asyncio.sleep(next_at - loop.time())
