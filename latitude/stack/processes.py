"""Starting, recognising and stopping the stack's processes.

Daemons are started detached (their own session, reparented to init) so that they outlive
``latitude up`` and leave no zombie in the process that started them. Each is recorded by pid
*and* kernel start time: a pid alone may be reused by an unrelated process after a crash, and
``latitude down`` must stop exactly what the stack started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from latitude.errors import StackError

_LOG_TAIL_LINES = 12


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """A process the stack started: enough to find it again, and only it."""

    name: str
    pid: int
    start_ticks: int

    def to_json(self) -> dict:
        return {"name": self.name, "pid": self.pid, "start_ticks": self.start_ticks}

    @classmethod
    def from_json(cls, data: Mapping) -> ProcessRecord:
        return cls(str(data["name"]), int(data["pid"]), int(data["start_ticks"]))


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if there is no such process.

    Zombies count as gone: they hold a pid but nothing else. A process whose main thread is a
    zombie while other threads are still exiting is not gone yet: the threads share its open
    files, so its listening sockets stay bound until the last one has exited.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X") and not _other_threads(pid):
        return None
    return int(fields[19])


def _other_threads(pid: int) -> bool:
    """Whether the process has threads besides its main one (exiting ones included)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def record_for(name: str, pid: int) -> ProcessRecord:
    ticks = start_ticks(pid)
    if ticks is None:
        raise StackError(f"{name} (pid {pid}) exited as soon as it started")
    return ProcessRecord(name, pid, ticks)


def is_alive(record: ProcessRecord) -> bool:
    return start_ticks(record.pid) == record.start_ticks


def tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


async def run(
    argv: Sequence[str],
    *,
    what: str,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    netns: str | None = None,
) -> str:
    """Run a short command to completion; its stdout on success, a StackError naming it if not.

    ``user`` runs it as that system user, through runuser rather than Popen(user=): changing
    user makes Python fork instead of vfork, and a fork runs gRPC's at-fork handlers, which
    crash the child of a process that has gRPC channels open.

    ``netns`` runs it in that network namespace (``ip netns exec``, as root, before any
    change of user).
    """
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_environment(env),
            start_new_session=True,
        )
    except FileNotFoundError as err:
        raise StackError(f"{what}: {argv[0]} not found") from err
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise StackError(f"{what} did not finish within {timeout:.0f} s ({argv[0]})") from exc
    except asyncio.CancelledError:
        proc.kill()
        await asyncio.shield(proc.wait())
        raise
    if proc.returncode != 0:
        detail = (err or out).decode(errors="replace").strip()
        raise StackError(f"{what} failed (exit {proc.returncode}): {detail}")
    return out.decode(errors="replace")


async def spawn_daemon(
    name: str,
    argv: Sequence[str],
    *,
    log: Path,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    netns: str | None = None,
) -> ProcessRecord:
    """Start ``argv`` detached, appending its output to ``log``; return its record at once.

    A small shell backgrounds the program and prints its pid, then exits, so the daemon is
    reparented to init and never becomes a zombie of ours.
    """
    script = 'exec "$@" >>"$LATITUDE_LOG" 2>&1 </dev/null & echo $!'
    environment = _environment(env)
    environment["LATITUDE_LOG"] = str(log)
    output = await run(
        ["/bin/sh", "-c", script, "sh", *argv],
        what=f"starting {name}",
        user=user,
        env=environment,
        netns=netns,
    )
    pid = int(output.strip())
    try:
        return record_for(name, pid)
    except StackError as err:
        raise StackError(f"{err}; its log {log} ends with:\n{tail(log)}") from err


async def stop(record: ProcessRecord, *, sig: int = signal.SIGTERM, grace: float = 10.0) -> bool:
    """Stop the process if it is still the one we started; SIGKILL after ``grace`` seconds.

    Returns True if the process had to be killed.
    """
    if not is_alive(record):
        return False
    try:
        os.kill(record.pid, sig)
    except ProcessLookupError:
        return False
    if await wait_gone(record, grace):
        return False
    try:
        os.kill(record.pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    await wait_gone(record, 5.0)
    return True


async def wait_gone(record: ProcessRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while is_alive(record):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
    return True


def find_by_cmdline(fragment: str) -> list[int]:
    """Pids whose command line mentions ``fragment`` (used to name leftovers after a crash)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment in cmdline and start_ticks(int(entry.name)) is not None:
            found.append(int(entry.name))
    return sorted(found)


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    environment = dict(os.environ)
    if extra:
        environment.update(extra)
    return environment
