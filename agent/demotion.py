"""The hard fence on files and processes: a fenced primary is demoted, whoever fences it.

A fence must hold whatever a client sets (``BEGIN READ WRITE``, ``SET
default_transaction_read_only = off``, a startup option, a role setting) and whether or not the
database answers SQL. So a fenced primary does not run as a primary at all:

1. ``mark_fenced`` writes the fence into the data directory first: ``latitude.fenced =
   '<cause>'`` in postgresql.auto.conf (a custom setting, readable with
   ``current_setting('latitude.fenced', true)``), no ``primary_conninfo`` (a demoted primary
   follows nobody until a REJOIN says whom), and ``standby.signal``. From then on whoever starts
   the server (the agent, the keeper, an operator, ``latitude up``) gets it in recovery, where
   no session can write;
2. ``stop_postmaster`` stops the running server: a fast shutdown (SIGINT) ends every client
   session at once and, given a moment, writes a shutdown checkpoint that connected standbys
   receive before it exits; past ``grace`` an immediate shutdown (SIGQUIT) ends it regardless.

Neither step needs a database connection, so the agent fences a database that cannot be
probed (no free connection slot, a hung server), and the fence keeper fences for an agent
that is gone. Starting the server again in recovery is the agent's (agent.rejoin.LocalServer).
Everything here is synchronous and cheap, usable from the keeper's plain loop.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

from agent.datadir import owner_of, read_or_empty, write_whole

SETTING = "latitude.fenced"
CAUSES = ("self", "command", "startup", "keeper")
# Settings a demotion removes or sets in postgresql.auto.conf.
_REPLACED = (SETTING, "primary_conninfo", "primary_slot_name", "default_transaction_read_only")
_IMMEDIATE = 1.0  # seconds for an immediate shutdown, and again for its processes to die
# pg_control's DBState, by value.
_STATES = dict(enumerate((
    "starting up", "shut down", "shut down in recovery", "shutting down",
    "in crash recovery", "in archive recovery", "in production",
)))  # fmt: skip
_LINE = re.compile(r"\s*([A-Za-z_][\w.]*)\s*(?:=|\s|$)")
_VALUE = re.compile(r"\s*latitude\.fenced\s*=?\s*'?([a-z]*)'?", re.IGNORECASE)


def mark_fenced(data: Path, cause: str) -> None:
    """Record the fence in ``data`` so that the server only ever starts in recovery."""
    if cause not in CAUSES:
        raise ValueError(f"fence cause must be one of {', '.join(CAUSES)}, not {cause!r}")
    owner = owner_of(data)
    auto = data / "postgresql.auto.conf"
    kept = [line for line in read_or_empty(auto).splitlines() if _setting(line) not in _REPLACED]
    kept.append(f"{SETTING} = '{cause}'")
    write_whole(auto, ("\n".join(kept) + "\n").encode(), owner)
    (data / "recovery.signal").unlink(missing_ok=True)
    write_whole(data / "standby.signal", b"", owner)


def fence_cause(data: Path) -> str | None:
    """The cause recorded by mark_fenced (None when the data directory is not fenced)."""
    return cause_in(read_or_empty(data / "postgresql.auto.conf"))


def cause_in(auto_conf: str) -> str | None:
    """The fence's cause in the text of a postgresql.auto.conf; None when it holds no fence.
    A fence whose cause cannot be read is still a fence: "startup" (no agent made it)."""
    for line in auto_conf.splitlines():
        if _setting(line) == SETTING:
            found = _VALUE.match(line)
            cause = found.group(1).lower() if found else ""
            return cause if cause in CAUSES else "startup"
    return None


def clear_fence(data: Path) -> None:
    """Remove the fence's setting (the server is promoted, or rejoins, next)."""
    auto = data / "postgresql.auto.conf"
    text = read_or_empty(auto)
    kept = [line for line in text.splitlines() if _setting(line) != SETTING]
    if len(kept) != len(text.splitlines()):
        write_whole(auto, ("\n".join(kept) + "\n").encode(), owner_of(data))


def in_recovery_when_started(data: Path) -> bool:
    """A server started on ``data`` comes up in recovery (standby.signal or recovery.signal)."""
    return (data / "standby.signal").exists() or (data / "recovery.signal").exists()


def postmaster_pid(data: Path) -> int | None:
    """The live postmaster of ``data`` (from postmaster.pid, checked in /proc), or None."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError, PermissionError):
        return None
    return pid if _is_postgres(pid) else None


def cluster_state(control: bytes) -> str:
    """The cluster's state in the bytes of global/pg_control, named as pg_controldata names it;
    "" when they are too short. The state is the fourth field, at the same offset in every
    version since 9.0: a 64-bit system identifier, two 32-bit versions, then the state."""
    if len(control) < 20:
        return ""
    return _STATES.get(int.from_bytes(control[16:20], sys.byteorder), "")


def could_be_writable(data: Path) -> bool:
    """A postmaster runs on ``data`` and, as far as the files tell, it may be a primary taking
    writes. Not "a signal file exists": mark_fenced writes standby.signal into the directory
    of a server still running as a primary, and a standby promoted by hand keeps none. The
    control file says which it is: the startup process records "in archive recovery" when it
    begins recovery, and "in production" before the first write is allowed. While a server
    starts (the state still the one it stopped in), it is in recovery only if it was started
    with a signal file already there."""
    pid = postmaster_pid(data)
    if pid is None:
        return False
    try:
        state = cluster_state((data / "global" / "pg_control").read_bytes()[:20])
    except OSError:
        state = ""
    if state == "in archive recovery":
        return False
    if state == "in production":
        return True
    return not _signal_predates(data, pid)


def stop_postmaster(data: Path, *, grace: float, until: float | None = None) -> str:
    """Stop the server: a fast shutdown, immediate past ``grace`` seconds (or at ``until``, a
    time.monotonic() deadline, if sooner). "not running", "clean" or "immediate".

    After "clean" the server wrote its shutdown checkpoint: nothing was committed after it.
    After "immediate" no process of the server is left either: a postmaster that ignores
    SIGQUIT (stopped, hung) is killed with every backend it started, which would otherwise
    go on running (a backend between two statements notices its postmaster's death, one in
    the middle of a statement does not) and hold the shared memory a new server needs.

    Blocking (it polls every 10 ms): the agent runs it in a thread, the keeper in its loop."""
    pid = postmaster_pid(data)
    if pid is None:
        return "not running"
    _signal(pid, signal.SIGINT)
    give_up = time.monotonic() + grace
    if until is not None:
        give_up = min(give_up, until)
    while time.monotonic() < give_up:
        if postmaster_pid(data) is None:
            return "clean"
        time.sleep(0.01)
    children = _children(pid)
    _signal(pid, signal.SIGQUIT)
    _signal(pid, signal.SIGCONT)  # a stopped postmaster acts on nothing until it runs again
    stop = time.monotonic() + _IMMEDIATE
    while postmaster_pid(data) is not None and time.monotonic() < stop:
        time.sleep(0.01)
    children |= _children(pid)
    if postmaster_pid(data) is not None:
        _signal(pid, signal.SIGKILL)
    for child in children:
        if _is_postgres(child):  # not a pid reused since we listed it
            _signal(child, signal.SIGKILL)
    stop = time.monotonic() + _IMMEDIATE
    while any(_alive(p) for p in (pid, *children)) and time.monotonic() < stop:
        time.sleep(0.01)
    return "immediate"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (the postmaster's backends and helpers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def _is_postgres(pid: int) -> bool:
    """A live process running PostgreSQL (a pid file or a list may name a reused pid)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return _alive(pid) and (b"postgres" in command or b"postmaster" in command)


def _alive(pid: int) -> bool:
    """The process exists and is no zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def _signal_predates(data: Path, pid: int) -> bool:
    """A signal file was in ``data`` before the postmaster ``pid`` started (so it started
    in recovery). Its start time comes from /proc, to the clock tick."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return False  # unknown: assume the worst
    started = boot + ticks / os.sysconf("SC_CLK_TCK")
    for name in ("standby.signal", "recovery.signal"):
        try:
            if (data / name).stat().st_mtime < started:
                return True
        except FileNotFoundError:
            continue
    return False


def _setting(line: str) -> str | None:
    found = _LINE.match(line)
    return found.group(1).lower() if found and not line.lstrip().startswith("#") else None
