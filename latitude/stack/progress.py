"""Progress lines for long operations: what is happening, and how long it has taken so far."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, out: TextIO | None = sys.stderr) -> None:
        self._out = out
        self._start = time.monotonic()

    def __call__(self, subject: str, message: str) -> None:
        if self._out is None:
            return
        elapsed = time.monotonic() - self._start
        self._out.write(f"  [{elapsed:5.1f}s] {subject:<24} {message}\n")
        self._out.flush()


QUIET = Progress(None)
