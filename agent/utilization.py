"""The region's capacity utilisation, as the operator's own tooling measures it.

The agent does not estimate load itself: it reads one figure (the fraction of capacity in use)
from a configured source, either a file that the operator's tooling rewrites (one number, e.g.
``0.42``) or an http:// or https:// URL that answers with a number or ``{"utilization": 0.42}``.
The source is read in its own loop every report interval, so a slow source never delays a
report. When it fails, the last good figure stands for a few intervals (a tool in the middle of
rewriting the file, a metrics server restarting) and then the agent reports 0, the figure of a
region without a source; the reason is logged once per streak of failures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from agent.checks import (
    HttpError,
    describe_os_error,
    http_exchange,
    parse_url,
    read_body,
    read_head,
)

log = logging.getLogger("latitude.agent.utilization")

# The coordinator refuses a report above this as a unit mistake (coordinator/validation.py); a
# source saying more is treated as failing rather than letting it end the agent's stream.
MAX_UTILIZATION = 100.0
# How many report intervals the last good figure outlives a failing source.
HOLD_INTERVALS = 3
FETCH_TIMEOUT = 1.0
_READ_CAP = 64 * 1024


class SourceError(Exception):
    """The source answered, but not with a usable figure; the message says why."""


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def check_source(source: str, field: str = "utilization_source") -> None:
    """ConfigError naming ``field`` for a URL that cannot be fetched; any other text is a path."""
    if is_url(source):
        parse_url(source, field)


def parse_utilization(text: str) -> float:
    """A figure from a source's content: a number, or a JSON object with a "utilization"
    number. SourceError when it is neither, or not a finite number within 0..MAX_UTILIZATION."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            document = json.loads(text)
        except ValueError:
            raise SourceError(f"not a number: {text[:40]!r}") from None
        figure = document.get("utilization") if isinstance(document, dict) else None
        if isinstance(figure, bool) or not isinstance(figure, int | float):
            raise SourceError(f'no "utilization" number in {text[:60]!r}') from None
        value = float(figure)
    if not math.isfinite(value):
        raise SourceError(f"not a finite number: {text[:40]!r}")
    if value < 0:
        raise SourceError(f"negative: {value:g}")
    if value > MAX_UTILIZATION:
        raise SourceError(f"{value:g} is over {MAX_UTILIZATION:g} (a percentage, not a fraction?)")
    return value


class HeldFigure:
    """The figure to report, from the source's successes and failures. Pure: the caller passes
    ``now`` and the current report interval."""

    def __init__(self, hold_intervals: int = HOLD_INTERVALS) -> None:
        self.hold_intervals = hold_intervals
        self.last_good = 0.0
        self.last_good_at: float | None = None
        self.failing = False

    def succeeded(self, now: float, value: float) -> bool:
        """Record a good reading; True when it ends a streak of failures."""
        ended, self.failing = self.failing, False
        self.last_good, self.last_good_at = value, now
        return ended

    def failed(self) -> bool:
        """Record a failed reading; True when it starts a streak of failures."""
        started, self.failing = not self.failing, True
        return started

    def value(self, now: float, interval: float) -> float:
        if self.last_good_at is None or now - self.last_good_at > self.hold_intervals * interval:
            return 0.0
        return self.last_good


class Utilization:
    """Reads the configured source every interval and says what figure to report."""

    def __init__(
        self,
        source: str,
        *,
        interval: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
        timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self.source = source
        self._interval = interval
        self._clock = clock
        self._timeout = timeout
        self._figure = HeldFigure()

    def value(self) -> float:
        """What the next report says: the newest good figure, held for a few intervals while
        the source fails; 0 without a source."""
        return self._figure.value(self._clock(), self._interval())

    async def run(self) -> None:
        """Read the source every interval, until cancelled; returns at once without one."""
        if not self.source:
            return
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self.read_once()
            # A read that outlasts its interval is followed at once, not by a burst.
            next_at = max(next_at + self._interval(), loop.time())
            await asyncio.sleep(next_at - loop.time())

    async def read_once(self) -> None:
        """One reading of the source, recorded; never raises (but for cancellation)."""
        try:
            value = await self._read()
        except Exception as err:
            if self._figure.failed():
                if self._figure.last_good_at is None:
                    then = "reporting 0 until it answers"
                else:
                    hold = self._figure.hold_intervals
                    then = f"keeping the last good figure for {hold} intervals, then 0"
                reason = self._describe(err)
                log.warning("utilization source %s failing: %s; %s", self.source, reason, then)
            return
        if self._figure.succeeded(self._clock(), value):
            log.info("utilization source %s readable again: %g", self.source, value)

    async def _read(self) -> float:
        if not is_url(self.source):
            with open(self.source, "rb") as file:  # noqa: ASYNC230 -- a small local file
                return parse_utilization(file.read(_READ_CAP).decode())
        async with asyncio.timeout(self._timeout), http_exchange(self.source) as reader:
            status, headers = await read_head(reader)
            if status != 200:
                raise SourceError(f"HTTP {status}")
            return parse_utilization((await read_body(reader, headers)).decode())

    def _describe(self, err: Exception) -> str:
        if isinstance(err, SourceError | HttpError):
            return str(err)
        if isinstance(err, TimeoutError):
            return f"timed out after {self._timeout:g} s"
        if isinstance(err, FileNotFoundError):
            return f"{Path(self.source)} does not exist"
        if isinstance(err, OSError):
            return describe_os_error(err)
        if isinstance(err, UnicodeDecodeError):
            return "not text"
        log.warning("reading utilization source %s failed unexpectedly", self.source,
                    exc_info=True)  # fmt: skip
        return f"{type(err).__name__}: {err}"[:200]
