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
import time
from pathlib import Path

from agent.datadir import owner_of, read_or_empty, write_whole

SETTING = "latitude.fenced"
CAUSES = ("self", "command", "startup", "keeper")
# Settings a demotion removes or sets in postgresql.auto.conf.
_REPLACED = (SETTING, "primary_conninfo", "primary_slot_name", "default_transaction_read_only")
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
    for line in read_or_empty(data / "postgresql.auto.conf").splitlines():
        if _setting(line) == SETTING:
            found = _VALUE.match(line)
            return found.group(1) if found and found.group(1) else "startup"
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
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if stat[stat.rindex(")") + 2 :].split()[0] in ("Z", "X"):
        return None
    return pid if (b"postgres" in command or b"postmaster" in command) else None


def could_be_writable(data: Path) -> bool:
    """A postmaster runs on ``data`` and it was not started in recovery as far as the files
    tell: it may be a primary taking writes."""
    return postmaster_pid(data) is not None and not in_recovery_when_started(data)


def stop_postmaster(data: Path, *, grace: float, until: float | None = None) -> str:
    """Stop the server: a fast shutdown, immediate past ``grace`` seconds (or at ``until``, a
    time.monotonic() deadline, if sooner). "not running", "clean" or "immediate".

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
    _signal(pid, signal.SIGQUIT)
    stop = time.monotonic() + 5.0
    while postmaster_pid(data) is not None and time.monotonic() < stop:
        time.sleep(0.01)
    if postmaster_pid(data) is not None:
        _signal(pid, signal.SIGKILL)
    return "immediate"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _setting(line: str) -> str | None:
    found = _LINE.match(line)
    return found.group(1).lower() if found and not line.lstrip().startswith("#") else None
