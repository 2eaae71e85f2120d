"""The local stack as a test harness: the suite runs exactly what ``latitude up`` runs."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from latitude.stack.config import StackConfig
from latitude.stack.stack import Stack


def traversable_tempdir(prefix: str) -> Path:
    """A fresh directory PostgreSQL's system user can reach (pytest's own tmp is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def tls_requested() -> bool:
    """Whether the test suite runs its stacks in TLS mode (LATITUDE_TEST_TLS=1)."""
    return os.environ.get("LATITUDE_TEST_TLS", "") in ("1", "true", "yes")


@contextmanager
def running_stack(**settings) -> Iterator[Stack]:
    """A stack started in a temporary directory, stopped and removed afterwards; in TLS mode
    when ``tls=True`` is given, or by default when LATITUDE_TEST_TLS=1."""
    settings.setdefault("tls", tls_requested())
    parent = traversable_tempdir("latitude-stack-")
    stack = Stack(StackConfig(dir=parent / "stack", **settings))
    try:
        asyncio.run(stack.up())
        yield stack
    finally:
        keep = os.environ.get("LATITUDE_KEEP_LOGS")
        if keep and (stack.dir / "logs").is_dir():  # for a post-mortem of a failed run
            shutil.copytree(stack.dir / "logs", Path(keep) / parent.name, dirs_exist_ok=True)
        if (stack.dir / "state.json").exists():
            asyncio.run(stack.down())
        shutil.rmtree(parent, ignore_errors=True)
