"""The ``lag=`` bound of the health endpoints: ``16MB``, ``1GB`` or plain bytes, or ``10s``,
``500ms``.

A load balancer's check line is all the configuration a bound gets, so its spelling follows
PostgreSQL's own settings (``kB``, ``MB``, ``GB``, ``TB`` are powers of 1024, as in
``max_wal_size``; ``ms``, ``s``, ``min``, ``h`` as in ``wal_sender_timeout``). Anything else
is refused with a message naming the value, never guessed at: a bound silently read as
something else would route reads to a standby further behind than the operator allowed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from latitude.errors import LatitudeError

_SIZES = {
    "": 1,
    "b": 1,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "gb": 1 << 30,
    "gib": 1 << 30,
    "tb": 1 << 40,
    "tib": 1 << 40,
}
_DURATIONS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0}
_NUMBER = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")
_EXAMPLES = "a size such as 16MB, 1GB or 1048576 (bytes), or a duration such as 10s or 500ms"


class BadLag(LatitudeError):
    """A ``lag=`` value that is neither a size nor a duration."""


@dataclass(frozen=True, slots=True)
class LagBound:
    """At most ``limit`` bytes (``in_bytes``) or seconds behind; ``text`` as it was given."""

    limit: float
    in_bytes: bool
    text: str

    def exceeded_by(self, lag_bytes: int, lag_seconds: float) -> str:
        """Why a standby this far behind is past the bound; "" when it is within it."""
        if self.in_bytes:
            if lag_bytes > self.limit:
                return f"replay lag {lag_bytes} bytes exceeds lag={self.text}"
            return ""
        if lag_seconds > self.limit:
            return f"replay lag {lag_seconds:.3f} s exceeds lag={self.text}"
        return ""


def parse_lag(text: str) -> LagBound:
    """``16MB`` -> 16 MiB in bytes, ``10s`` -> 10 seconds; BadLag naming ``text`` otherwise."""
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise BadLag(f"lag={text!r}: expected {_EXAMPLES}")
    number, unit = float(match[1]), match[2]
    if unit.lower() in _SIZES:
        size = number * _SIZES[unit.lower()]
        if not size.is_integer() or not math.isfinite(size):
            raise BadLag(f"lag={text!r}: a size must come to a whole number of bytes")
        return LagBound(size, True, text.strip())
    if unit in _DURATIONS:
        return LagBound(number * _DURATIONS[unit], False, text.strip())
    raise BadLag(f"lag={text!r}: unknown unit {unit!r}; expected {_EXAMPLES}")
