"""A coordinator's memory stays flat under fuzzed calls: 10,000 of them (bench/fuzz_memory.py
sends 100,000), after a warm-up that fills what may legitimately fill (Resolve's answer cache,
latency prefixes, grpc's and the allocator's pools).

The process measured is the one called: the private coordinator this test session started
(tests/fuzz/targets.py), checked by its command line and by the responder id it answers with.
The calls go round a pool drawn up front, so after the warm-up every request has been seen
once: what grows from then on is what calls leave behind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from latitude.v1 import admin_pb2, admin_pb2_grpc
from tests.fuzz import load, targets
from tests.fuzz.targets import Target, serving

pytestmark = [pytest.mark.fuzz, pytest.mark.stack]

POOL = 1500
WARMUP = 3000  # two rounds of the pool
CALLS = 10_000
# A leak of 1 KiB a call would add about 10 MiB over CALLS; the allocator's and grpc's own
# noise over this many calls stays within a few MiB.
MAX_GROWTH = 8 * 1024 * 1024


def _responder(target: Target) -> str:
    with targets.channel(target.address) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        return stub.GetStatus(admin_pb2.GetStatusRequest(), timeout=5).responder_id


def test_memory_stays_flat_over_ten_thousand_fuzzed_calls(private: Target):
    command = Path(f"/proc/{private.pid}/cmdline").read_bytes().split(b"\0")
    assert b"coordinator.main" in command and private.name.encode() in command
    assert _responder(private) == private.name  # the process measured is the one called

    pool = load.request_pool(POOL)
    warm = asyncio.run(load.send(private.address, pool, WARMUP))
    before = private.rss_bytes()
    tally = asyncio.run(load.send(private.address, pool, CALLS, start=WARMUP))
    after = private.rss_bytes()

    print(f"RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB; {dict(tally.codes)}")
    assert tally.calls == CALLS and warm.calls == WARMUP
    assert not tally.bugs and not warm.bugs, (tally.bugs or warm.bugs)[:3]
    # The calls were answered, not all refused at the door: the pool reaches the handlers.
    assert tally.codes["OK"] > CALLS // 10, tally.codes
    assert tally.codes["INVALID_ARGUMENT"] > CALLS // 10, tally.codes
    assert after - before < MAX_GROWTH, (
        f"RSS grew {(after - before) / 2**20:.1f} MiB over {CALLS} calls "
        f"({before / 2**20:.1f} -> {after / 2**20:.1f} MiB); codes {dict(tally.codes)}"
    )
    assert serving(private)
