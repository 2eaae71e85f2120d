from __future__ import annotations

import pytest

from latitude.stack.harness import running_stack
from latitude.stack.stack import Stack


@pytest.fixture(scope="session")
def tls_stack() -> Stack:
    """A stack in TLS mode whatever LATITUDE_TEST_TLS says, for the TLS-mode and attacker
    tests: started once, shared by them (they leave it HEALTHY or wait until it is)."""
    with running_stack(tls=True) as running:
        yield running
