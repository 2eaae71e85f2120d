"""What every latitude program does the same way: logging, running, and failing plainly."""

from __future__ import annotations

import asyncio
import logging
import signal
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
    """Run ``start()`` to completion; a LatitudeError is printed, not a traceback.

    SIGUSR1 writes every asyncio task and where it waits to the log: what an operator needs
    when a program is alive but stuck.
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
        await start()

    try:
        asyncio.run(main())
    except LatitudeError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


def dump_tasks() -> None:
    log = logging.getLogger("latitude.tasks")
    for task in asyncio.all_tasks():
        frames = "".join(
            f"\n  {f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}"
            for f in task.get_stack()
        )
        log.warning("%r%s", task, frames)


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
