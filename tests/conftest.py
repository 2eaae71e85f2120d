from __future__ import annotations

import pytest

from latitude.stack.harness import running_stack, tls_requested
from latitude.stack.stack import Stack


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The real local stack (etcd x3, PostgreSQL x3), started once for the whole session; in
    TLS mode (certificates for every component) when LATITUDE_TEST_TLS=1."""
    with running_stack() as running:
        yield running


def pytest_report_header() -> str:
    mode = "TLS (LATITUDE_TEST_TLS=1)" if tls_requested() else "plaintext"
    return f"latitude test stacks: {mode}"
