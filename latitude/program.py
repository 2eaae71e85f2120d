"""What every latitude program does the same way: logging, running, and failing plainly."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

from latitude.errors import LatitudeError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run(name: str, start: Callable[[], Awaitable[None]]) -> int:
    """Run ``start()`` to completion; a LatitudeError is printed, not a traceback."""
    try:
        asyncio.run(start())
    except LatitudeError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


async def all_or_none(*steps: Awaitable[None]) -> None:
    """Run ``steps`` concurrently until all finish; on the first failure (or cancellation)
    cancel the rest, wait for them, and raise."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
