"""``latitude up / status / down`` as a person runs them, including the ways they go wrong."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latitude.stack import processes
from latitude.stack.harness import traversable_tempdir
from latitude.stack.processes import ProcessRecord

pytestmark = pytest.mark.lifecycle


def latitude(
    *args: str, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "latitude.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def stack_dir():
    parent = traversable_tempdir("latitude-lifecycle-")
    directory = parent / "stack"
    yield directory
    if (directory / "state.json").exists():
        latitude("down", "--dir", str(directory))
    leftovers = processes.find_by_cmdline(str(directory) + "/")
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(parent, ignore_errors=True)
    assert not leftovers, f"processes left behind: {leftovers}"


def recorded(directory: Path) -> dict[str, ProcessRecord]:
    data = json.loads((directory / "state.json").read_text())
    return {name: ProcessRecord.from_json(rec) for name, rec in data["processes"].items()}


def assert_nothing_running(directory: Path, records: dict[str, ProcessRecord]) -> None:
    alive = [name for name, rec in records.items() if processes.is_alive(rec)]
    assert not alive, f"still running after down: {alive}"
    assert processes.find_by_cmdline(str(directory) + "/") == []


def test_up_status_up_again_down(stack_dir: Path):
    up = latitude("up", "--dir", str(stack_dir))
    assert up.returncode == 0, up.stderr
    assert "ready" in up.stdout and "NOT READY" not in up.stdout
    assert "base backup from us-east-1" in up.stderr  # progress is shown
    for region in ("us-east-1", "eu-west-1", "ap-southeast-1"):
        assert region in up.stdout

    status = latitude("status", "--dir", str(stack_dir), "--json")
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert view["ready"] is True
    assert sorted(r["region"] for r in view["databases"] if r["streaming"]) == [
        "ap-southeast-1",
        "eu-west-1",
    ]
    assert [m["healthy"] for m in view["etcd"]] == [True, True, True]
    cluster = view["cluster"]
    assert cluster["leader"]["leader_id"].startswith("coordinator-")
    assert {r["region"]: r["state"] for r in cluster["regions"]} == dict.fromkeys(
        ["ap-southeast-1", "eu-west-1", "us-east-1"], "REGION_STATE_HEALTHY"
    )

    before = recorded(stack_dir)
    again = latitude("up", "--dir", str(stack_dir))
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    assert recorded(stack_dir) == before, "a second up must not start a second stack"

    down = latitude("down", "--dir", str(stack_dir))
    assert down.returncode == 0, down.stderr
    # etcd x3, PostgreSQL x3, coordinators x3, and per region a fence keeper and an agent
    assert "stopped 15 processes" in down.stdout
    assert not stack_dir.exists()
    assert_nothing_running(stack_dir, before)


def test_up_recovers_a_stack_whose_processes_were_killed(stack_dir: Path):
    assert latitude("up", "--dir", str(stack_dir)).returncode == 0
    killed = recorded(stack_dir)
    for record in killed.values():
        os.kill(record.pid, signal.SIGKILL)

    status = latitude("status", "--dir", str(stack_dir))
    assert status.returncode == 3, status.stdout
    assert "NOT READY" in status.stdout

    recovered = latitude("up", "--dir", str(stack_dir))
    assert recovered.returncode == 0, recovered.stderr
    assert "initdb" not in recovered.stderr, "recovery must reuse the data, not recreate it"
    # The primary came back fenced, and the leader lifted the fence: it is the write region.
    assert re.search(
        r"postgres-us-east-1 +primary accepting connections on \S+; fenced until the leader "
        "lifts it",
        recovered.stderr,
    ), recovered.stderr
    now = recorded(stack_dir)
    assert set(now) == set(killed)
    assert all(now[n].pid != killed[n].pid for n in now)
    # Ready when up answered; a moment later the standbys may still be switching to the
    # timeline the unfenced primary's promotion began, so ready again within seconds.
    deadline = time.monotonic() + 15
    while not (view := json.loads(latitude("status", "--dir", str(stack_dir), "--json").stdout))[
        "ready"
    ]:
        assert time.monotonic() < deadline, f"not ready again after up: {view}"
        time.sleep(0.5)
    primary = next(d for d in view["databases"] if d["role"] == "primary")
    assert primary["region"] == "us-east-1" and not primary["fenced"]


def test_up_killed_part_way_is_recovered_by_the_next_up(stack_dir: Path):
    first = subprocess.Popen(
        [sys.executable, "-m", "latitude.cli", "up", "--dir", str(stack_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in first.stderr:
        if "base backup" in line:
            first.kill()
            break
    first.wait()
    first.stderr.close()

    second = latitude("up", "--dir", str(stack_dir))
    assert second.returncode == 0, second.stderr
    assert json.loads(latitude("status", "--dir", str(stack_dir), "--json").stdout)["ready"]
    records = recorded(stack_dir)
    assert latitude("down", "--dir", str(stack_dir)).returncode == 0
    assert_nothing_running(stack_dir, records)


def test_a_port_taken_while_a_region_was_down_is_named(stack_dir: Path):
    assert latitude("up", "--dir", str(stack_dir)).returncode == 0
    state = json.loads((stack_dir / "state.json").read_text())
    victim = recorded(stack_dir)["postgres-eu-west-1"]
    os.kill(victim.pid, signal.SIGKILL)
    assert asyncio_wait_gone(victim)
    port = state["ports"]["postgres-eu-west-1"]
    with socket.create_server((state["host"], port)):
        blocked = latitude("up", "--dir", str(stack_dir))
    assert blocked.returncode == 1
    assert f"port {port}" in blocked.stderr and "postgres-eu-west-1" in blocked.stderr
    survivors = {n: r for n, r in recorded(stack_dir).items() if n != "postgres-eu-west-1"}
    assert all(processes.is_alive(r) for r in survivors.values()), "nothing else is torn down"
    assert latitude("up", "--dir", str(stack_dir)).returncode == 0


def asyncio_wait_gone(record: ProcessRecord, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while processes.is_alive(record):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _taken_port_after_two_free() -> socket.socket:
    """A listening socket whose port P has P-2 and P-1 free, for a run starting at P-2."""
    for _ in range(50):
        taken = socket.create_server(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        try:
            for free in (port - 2, port - 1):
                socket.create_server(("127.0.0.1", free)).close()
            return taken
        except OSError:
            taken.close()
    raise AssertionError("no run of three ports found")


def test_fresh_up_on_ports_in_use_fails_cleanly(stack_dir: Path):
    with _taken_port_after_two_free() as taken:
        port = taken.getsockname()[1]
        # The run is etcd-1 client, etcd-1 peer, etcd-2 client, ...: the taken one is the third.
        result = latitude("up", "--dir", str(stack_dir), "--port-base", str(port - 2))
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 (for etcd-2.client) is in use" in result.stderr
    assert not stack_dir.exists(), "a failed fresh up leaves no directory behind"


def test_missing_etcd_names_the_package(stack_dir: Path):
    result = latitude("up", "--dir", str(stack_dir), env={"LATITUDE_STACK_ETCD_BIN": "no-etcd"})
    assert result.returncode == 1
    assert "etcd-server" in result.stderr
    assert not stack_dir.exists()


def test_missing_postgres_names_the_package(stack_dir: Path):
    result = latitude(
        "up", "--dir", str(stack_dir), env={"LATITUDE_STACK_PG_BINDIR": "/nonexistent/bin"}
    )
    assert result.returncode == 1
    assert "postgresql-15" in result.stderr and "/nonexistent/bin" in result.stderr
    assert not stack_dir.exists()


def test_a_corrupt_state_file_says_what_to_remove(stack_dir: Path):
    stack_dir.mkdir()
    (stack_dir / "state.json").write_text("{not json")
    for command in ("up", "down"):
        result = latitude(command, "--dir", str(stack_dir))
        assert result.returncode == 1, command
        assert "state.json is unreadable" in result.stderr
        assert f"rm -rf {stack_dir}" in result.stderr


def test_a_directory_that_is_not_a_stack_is_left_alone(stack_dir: Path):
    stack_dir.mkdir()
    (stack_dir / "precious.txt").write_text("keep me")
    result = latitude("up", "--dir", str(stack_dir))
    assert result.returncode == 1
    assert "precious.txt" in result.stderr and "no state file" in result.stderr
    assert (stack_dir / "precious.txt").read_text() == "keep me"


def test_down_with_nothing_running(stack_dir: Path):
    result = latitude("down", "--dir", str(stack_dir))
    assert result.returncode == 1
    assert "nothing to stop" in result.stderr


def test_an_unknown_region_is_named(stack_dir: Path):
    result = latitude("status", "--dir", str(stack_dir), "--region", "mars-1")
    assert result.returncode == 1
    assert "unknown region 'mars-1'" in result.stderr and "eu-west-1" in result.stderr


def test_a_malformed_setting_names_its_source(stack_dir: Path):
    result = latitude("up", "--dir", str(stack_dir), env={"LATITUDE_STACK_PORT_BASE": "lots"})
    assert result.returncode == 1
    assert "LATITUDE_STACK_PORT_BASE: expected an integer, got 'lots'" in result.stderr
