"""Daemon start, identification and stop, with real (harmless) processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from latitude.errors import StackError
from latitude.stack import ports, processes


async def test_a_daemon_is_detached_recorded_and_stopped(tmp_path: Path):
    log = tmp_path / "sleep.log"
    record = await processes.spawn_daemon("sleeper", ["sleep", "60"], log=log)
    try:
        assert processes.is_alive(record)
        # Detached: its own session, and not our child.
        assert os.getsid(record.pid) != os.getsid(0)
        assert record.pid not in _children()
        assert await processes.stop(record, grace=5) is False  # SIGTERM was enough
        assert not processes.is_alive(record)
    finally:
        if processes.is_alive(record):
            os.kill(record.pid, signal.SIGKILL)


async def test_stop_escalates_to_sigkill(tmp_path: Path):
    script = "trap '' TERM; echo ignoring; while :; do sleep 0.05; done"
    log = tmp_path / "l"
    record = await processes.spawn_daemon("stubborn", ["sh", "-c", script], log=log)
    deadline = asyncio.get_running_loop().time() + 5
    while "ignoring" not in log.read_text():  # the trap is set before the echo
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    assert await processes.stop(record, grace=0.3) is True
    assert not processes.is_alive(record)


async def test_a_reused_pid_is_not_taken_for_ours(tmp_path: Path):
    record = await processes.spawn_daemon("sleeper", ["sleep", "60"], log=tmp_path / "l")
    impostor = processes.ProcessRecord("sleeper", record.pid, record.start_ticks + 1)
    try:
        assert not processes.is_alive(impostor)
        assert await processes.stop(impostor) is False
        assert processes.is_alive(record), "stop must not touch a process that is not ours"
    finally:
        await processes.stop(record)


async def test_leftovers_are_found_by_their_command_line(tmp_path: Path):
    marker = tmp_path / "data-dir"
    record = await processes.spawn_daemon(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(60)", f"{marker}/x"],
        log=tmp_path / "l",
    )
    try:
        assert processes.find_by_cmdline(str(marker) + "/") == [record.pid]
    finally:
        await processes.stop(record)
    assert processes.find_by_cmdline(str(marker) + "/") == []


# The main thread exits while another keeps a listening socket: what a multi-threaded server
# (HAProxy, etcd, a coordinator) looks like for a moment after kill -9, while its threads exit.
_MAIN_THREAD_EXITS = """
import ctypes, socket, sys, threading, time
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
print(sock.getsockname()[1], flush=True)
threading.Thread(target=time.sleep, args=(60,)).start()
ctypes.CDLL(None).pthread_exit(None)
"""


async def test_a_zombie_main_thread_with_threads_left_is_not_gone(tmp_path: Path):
    log = tmp_path / "l"
    record = await processes.spawn_daemon(
        "half-dead", [sys.executable, "-c", _MAIN_THREAD_EXITS], log=log
    )
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while _state(record.pid) != "Z":  # the main thread has exited
            assert asyncio.get_running_loop().time() < deadline, log.read_text()
            await asyncio.sleep(0.01)
        port = int(log.read_text().split()[0])
        # Its socket is still bound, so it is not gone: a restart would find the port taken.
        assert processes.is_alive(record)
        assert await processes.wait_gone(record, 0.1) is False
        with pytest.raises(StackError, match=f"port {port} .* in use"):
            ports.check_free("127.0.0.1", {"server": port})
        os.kill(record.pid, signal.SIGKILL)
        assert await processes.wait_gone(record, 5)
        ports.check_free("127.0.0.1", {"server": port})  # gone means its ports are free
    finally:
        if processes.is_alive(record):
            os.kill(record.pid, signal.SIGKILL)


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()[0]


async def test_run_reports_the_failing_command():
    with pytest.raises(StackError, match=r"listing failed \(exit 2\).*nonexistent"):
        await processes.run(["ls", "/nonexistent"], what="listing")
    with pytest.raises(StackError, match="probe: no-such-program not found"):
        await processes.run(["no-such-program"], what="probe")
    with pytest.raises(StackError, match="did not finish within"):
        await processes.run(["sleep", "5"], what="sleeping", timeout=0.2)


def _children() -> set[int]:
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == me:
                found.add(int(entry.name))
    return found
