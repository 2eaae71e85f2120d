"""Partition tests need root (network namespaces, nftables): elsewhere they are skipped."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from latitude.stack.harness import running_stack
from latitude.stack.stack import Stack


def _missing() -> str:
    if os.geteuid() != 0:
        return "partition tests need root (network namespaces and nftables)"
    for program in ("ip", "nft"):
        if shutil.which(program) is None:
            return f"partition tests need {program} (scripts/bootstrap installs it as root)"
    return ""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _missing()
    for item in items:
        if "tests/chaos/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.chaos)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def netns_stack() -> Stack:
    """A stack whose regions and control plane each have a network namespace; removed,
    namespaces and bridge included, whatever the tests did."""
    with running_stack(netns=True) as stack:
        yield stack


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """With LATITUDE_CHAOS_RESULTS set (bench/chaos.py), note each scenario's outcome beside
    its figures: passed, failed, xfailed (it waits for a capability) or xpassed."""
    report = yield
    path = os.environ.get("LATITUDE_CHAOS_RESULTS")
    if path and report.when == "call":
        if hasattr(report, "wasxfail"):
            outcome = "xpassed" if report.passed else "xfailed"
        else:
            outcome = report.outcome
        with open(path, "a") as out:
            out.write(json.dumps({"outcome_of": item.nodeid, "outcome": outcome}) + "\n")
    return report
