from __future__ import annotations

import pytest

from latitude.stack.harness import running_stack
from latitude.stack.stack import Stack


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The real local stack (etcd x3, PostgreSQL x3), started once for the whole session."""
    with running_stack() as running:
        yield running
