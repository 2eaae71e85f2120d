from __future__ import annotations

import pytest

from latitude.stack.harness import log_tails, running_stack, tls_requested
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed test that used a stack shows what the stack's programs said last."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or call.when == "teardown":
        return
    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, Stack):
            report.sections.append((f"stack {name}: log tails", log_tails(value)))
