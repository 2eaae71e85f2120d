"""Limits that keep a coordinator's memory and work bounded whatever its callers send: rates
(token buckets) and concurrent streams, per caller, with the number of callers tracked bounded
too. Pure: time is an argument (monotonic seconds), so the tests drive a fake clock.

A caller is a string key (coordinator/callers.py: the certificate's identity and the peer's
host, or the host alone in plaintext). Refusals are LimitExceeded, whose message says what was
exceeded and by how much; the gRPC handlers answer it with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator

from latitude.errors import LatitudeError

# Callers tracked by a RateLimits; the least recently seen is forgotten beyond it.
MAX_CALLERS = 4096


class LimitExceeded(LatitudeError):
    """A caller went past a limit (RESOURCE_EXHAUSTED); the message names it."""


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; a take costs one."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not rate > 0 or not burst >= 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        """Whether a token was there to take (one is taken if so)."""
        if now > self._at:  # a clock that steps back earns nothing, and takes nothing back
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class RateLimits:
    """A TokenBucket per caller. At most ``max_callers`` are tracked, the least recently seen
    forgotten first: a forgotten caller starts again with a full bucket, so the bound is on
    memory; a caller needs as many identities or hosts as ``max_callers`` to gain from it."""

    def __init__(
        self, rate: float, burst: float, *, what: str, max_callers: int = MAX_CALLERS
    ) -> None:
        TokenBucket(rate, burst, 0.0)  # checks the numbers
        self.rate, self.burst, self.what = rate, burst, what
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, caller: str, now: float) -> None:
        """LimitExceeded when ``caller`` is over its rate; otherwise counts the call."""
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = TokenBucket(self.rate, self.burst, now)
            while len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(caller)
        if not bucket.take(now):
            raise LimitExceeded(
                f"more than {self.rate:g} {self.what} a second (bursts of {self.burst:g}) "
                "from this caller: slow down"
            )


class ReportRate:
    """One agent stream's reports. An agent reports every ``interval`` (0.5 s), plus one per
    REPORT_NOW: allowed are ``factor`` times that rate, with bursts of ``burst``. A report
    past it is dropped (``admit`` is False: not believed, not acknowledged); ``burst`` dropped
    in a row end the stream (LimitExceeded), since an agent that keeps flooding is broken
    or not an agent, and dropping alone would still cost a parse per message."""

    def __init__(self, interval: float, *, factor: float = 4.0, burst: int = 20) -> None:
        if not interval > 0:
            raise ValueError(f"report interval must be positive, got {interval}")
        self.rate = factor / interval
        self.burst = burst
        self._bucket: TokenBucket | None = None
        self.dropped = 0  # in a row

    def admit(self, now: float) -> bool:
        if self._bucket is None:
            self._bucket = TokenBucket(self.rate, self.burst, now)
        if self._bucket.take(now):
            self.dropped = 0
            return True
        self.dropped += 1
        if self.dropped >= self.burst:
            raise LimitExceeded(
                f"report: more than {self.rate:g} reports a second (bursts of {self.burst}); "
                f"{self.dropped} dropped in a row, ending the stream"
            )
        return False


class StreamSlots:
    """Concurrent streams of one kind: at most ``per_caller`` per caller and ``total`` in all.
    A caller is tracked only while it holds a stream, so the callers tracked are bounded by
    ``total``."""

    def __init__(self, per_caller: int, total: int, *, what: str) -> None:
        if per_caller < 1 or total < per_caller:
            raise ValueError(
                f"stream limits need 1 <= per_caller <= total, got {per_caller}, {total}"
            )
        self.per_caller, self.total, self.what = per_caller, total, what
        self._held: dict[str, int] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def held(self, caller: str) -> int:
        return self._held.get(caller, 0)

    def acquire(self, caller: str) -> None:
        """Take a slot for ``caller``; LimitExceeded when it holds ``per_caller`` or all
        ``total`` are taken."""
        held = self._held.get(caller, 0)
        if held >= self.per_caller:
            raise LimitExceeded(
                f"at most {self.per_caller} {self.what} streams per caller, and this caller "
                f"has {held} open: close one first"
            )
        if self._count >= self.total:
            raise LimitExceeded(f"at most {self.total} {self.what} streams in all: try later")
        self._held[caller] = held + 1
        self._count += 1

    def release(self, caller: str) -> None:
        held = self._held.get(caller, 0)
        if held <= 0:
            raise ValueError(f"{caller!r} holds no {self.what} stream to release")
        if held == 1:
            del self._held[caller]
        else:
            self._held[caller] = held - 1
        self._count -= 1

    @contextlib.contextmanager
    def hold(self, caller: str) -> Iterator[None]:
        """A slot for the ``with`` block; LimitExceeded on entry when there is none."""
        self.acquire(caller)
        try:
            yield
        finally:
            self.release(caller)
