"""The fence keeper's decision on a fake clock, its files, and one step on a temporary data
directory (no server runs there: it may not take writes, so nothing is fenced)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import keeper
from agent.keeper import Keeper, LeaseFile, Watch, keeper_problem, read_lease, write_lease

PM = 4242  # the postmaster's pid


def test_without_a_lease_the_deadline_counts_from_the_keepers_start():
    watch = Watch(started_at=10.0, fence_after=4.0)
    watch.see(None, PM, 10.0)
    assert not watch.due(13.9, writable=True)
    assert watch.due(14.0, writable=True)
    assert not watch.due(99.0, writable=False)  # nothing that could take writes


def test_the_lease_sets_the_deadline_and_a_lost_lease_keeps_the_last_one():
    watch = Watch(started_at=10.0, fence_after=4.0)
    watch.see(LeaseFile("us-east-1", 30.0, 123), PM, 10.0)
    assert not watch.due(29.9, writable=True)
    watch.see(None, PM, 29.9)  # unreadable for a moment
    assert not watch.due(29.9, writable=True)
    assert watch.due(30.0, writable=True)


def test_a_live_agent_that_vouches_for_its_database_fences_it_itself():
    watch = Watch(started_at=10.0, fence_after=4.0, agent_grace=1.0)
    watch.see(LeaseFile("us-east-1", 30.0, 123, vouched_at=29.9), PM, 10.0)
    assert not watch.due(30.2, writable=True)  # the agent saw it 0.3 s ago: its fence to make
    # Never later than DEFER_AT_MOST past the deadline, though it vouched within agent_grace:
    # the leader promotes at the deadline plus its margin.
    assert watch.due(30.25, writable=True)


def test_an_agent_that_stopped_vouching_is_overtaken_at_the_deadline():
    watch = Watch(started_at=10.0, fence_after=4.0, agent_grace=1.0)
    watch.see(LeaseFile("us-east-1", 30.0, 123, vouched_at=28.9), PM, 10.0)
    assert watch.due(30.0, writable=True)  # silent for agent_grace: gone, frozen or blind


def test_an_agent_gone_long_before_the_deadline_is_fenced_for_at_the_deadline():
    watch = Watch(started_at=10.0, fence_after=4.0, agent_grace=1.0)
    watch.see(LeaseFile("us-east-1", 30.0, 123, vouched_at=26.5), PM, 10.0)
    assert not watch.due(29.99, writable=True)
    assert watch.due(30.0, writable=True)


def test_a_postmaster_started_after_the_deadline_gets_fence_after_for_its_agent():
    watch = Watch(started_at=10.0, fence_after=4.0)
    watch.see(LeaseFile("us-east-1", 30.0, 123, vouched_at=26.0), PM, 10.0)
    watch.see(None, None, 40.0)  # stopped (the region was killed)
    assert not watch.due(41.0, writable=False)
    watch.see(None, PM + 1, 50.0)  # `latitude up` starts it again, fenced, before the agent
    assert not watch.due(53.9, writable=True)
    assert watch.due(54.0, writable=True)  # no agent took over


def test_a_lease_file_is_read_back_only_for_its_region(tmp_path: Path):
    path = tmp_path / "fence.lease"
    write_lease(path, LeaseFile("us-east-1", 12.5, 77, vouched_at=11.0))
    assert read_lease(path, "us-east-1") == LeaseFile("us-east-1", 12.5, 77, 11.0)
    assert read_lease(path, "eu-west-1") is None
    assert [p.name for p in tmp_path.iterdir()] == ["fence.lease"]  # nothing left beside it


@pytest.mark.parametrize(
    "content",
    ["", "{", "[]", '{"region": "us-east-1"}', '{"region": "us-east-1", "deadline": "x"}'],
)
def test_a_broken_lease_file_is_no_lease(tmp_path: Path, content: str):
    path = tmp_path / "fence.lease"
    path.write_text(content)
    assert read_lease(path, "us-east-1") is None


def test_a_lease_from_before_a_reboot_is_no_lease(tmp_path: Path):
    path = tmp_path / "fence.lease"
    path.write_text(json.dumps({"region": "us-east-1", "deadline": 1e9, "pid": 1, "boot": "old"}))
    assert read_lease(path, "us-east-1") is None


def test_the_agent_tells_a_live_keeper_from_a_stale_or_missing_one(tmp_path: Path):
    lease = tmp_path / "fence.lease"
    assert "no heartbeat" in keeper_problem(lease, "us-east-1", 100.0)
    keeper.write_heartbeat(keeper.heartbeat_path(lease), region="us-east-1", at=100.0)
    assert keeper_problem(lease, "us-east-1", 101.0) == ""
    assert "2.5 s old" in keeper_problem(lease, "us-east-1", 102.5)
    assert "not this region's" in keeper_problem(lease, "eu-west-1", 101.0)


def test_a_step_with_no_server_running_fences_nothing_and_beats(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    lease = tmp_path / "fence.lease"
    write_lease(lease, LeaseFile("us-east-1", 0.0, 1))  # long expired
    step = Keeper(region="us-east-1", pg_data=data, lease=lease, fence_after=4.0, now=0.0)
    assert not step.tick(time.monotonic())
    assert not (data / "standby.signal").exists()
    assert keeper_problem(lease, "us-east-1", time.monotonic()) == ""


def test_the_program_stops_cleanly_on_sigterm(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    lease = tmp_path / "fence.lease"
    argv = [sys.executable, "-m", "agent.keeper", "--region", "us-east-1", "--pg-data", str(data),
            "--lease", str(lease), "--interval", "0.01"]  # fmt: skip
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while keeper_problem(lease, "us-east-1", time.monotonic()):
            assert time.monotonic() < deadline, "the keeper never beat"
            time.sleep(0.02)
        process.terminate()
        _, errors = process.communicate(timeout=5)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "stopped" in errors


def test_the_keeper_imports_neither_grpc_nor_asyncpg():
    code = "import sys, agent.keeper; print(sorted(m for m in ('grpc', 'asyncpg', "
    code += "'google.protobuf') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"
