"""PostgreSQL's server programs (pg_ctl, pg_rewind, ...) run as the database's system user, each
bounded by the command's deadline; and whether a postmaster runs on a data directory.

REJOIN stops, rewinds, copies and starts the server with these programs. They must run as the
user that owns the data directory (the agent may run as root), must not outlive the command that
started them (at the deadline the program and everything it started is killed), and their
output is parsed, so it is asked for in the C locale.

No password reaches them through their command line (anyone can read it in /proc) or their
environment (inherited by whatever they run, and read in /proc by their user): a program that
must log in gets a libpq passfile (``passfile``) written for its run only, and the agent's own
environment is passed on without the variables that may hold one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from latitude.errors import LatitudeError, describe_error

# Debian installs PostgreSQL's server programs here, outside PATH.
_BINDIR_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")
_PROGRAMS = ("pg_ctl", "pg_controldata", "pg_rewind", "pg_basebackup", "postgres")
_TAIL = 12  # lines of a program's output or a log quoted in an error
# Environment variables that may carry a password: never passed on to a program.
_SECRET_ENV = ("PGPASSWORD", "LATITUDE_AGENT_DB_PASSWORD")


class ProgramError(LatitudeError):
    """A program could not be run, failed, or did not finish by the deadline."""


class Programs:
    """PostgreSQL's programs, found in ``bindir`` (or where Debian puts them), run as
    ``os_user`` (default: postgres when the agent runs as root, else the agent's own user)."""

    def __init__(self, bindir: Path | None, os_user: str) -> None:
        self._bindir_setting = bindir
        self._bindir: Path | None = None
        self._os_user = _run_as(os_user)

    def path(self, name: str) -> str:
        if self._bindir is None:
            candidates = ([self._bindir_setting] if self._bindir_setting
                          else [Path(c) for c in _BINDIR_CANDIDATES])  # fmt: skip
            for bindir in candidates:
                if all(os.access(bindir / p, os.X_OK) for p in _PROGRAMS):
                    self._bindir = bindir
                    break
            else:
                raise ProgramError(
                    f"PostgreSQL's programs ({', '.join(_PROGRAMS)}) are not in "
                    f"{', '.join(map(str, candidates))}: set pg_bindir"
                )
        return str(self._bindir / name)

    async def run(
        self, program: str, *args: str, until: float, what: str,
        env: dict[str, str] | None = None, check: bool = True,
    ) -> tuple[int, str]:  # fmt: skip
        """(exit status, stdout and stderr) of a PostgreSQL program run as the database's user,
        killed at the deadline. Through runuser rather than Popen(user=): changing user makes
        Python fork instead of vfork, and a fork runs gRPC's at-fork handlers."""
        argv = [self.path(program), *args]
        if self._os_user is not None:
            argv = ["runuser", "-u", self._os_user, "--", *argv]
        budget = seconds_left(until, what)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, cwd="/", start_new_session=True,
                env={**inherited_env(), "LC_ALL": "C", **(env or {})},  # messages are parsed
            )  # fmt: skip
        except OSError as err:
            raise ProgramError(f"{what}: cannot run {argv[0]}: {describe_error(err)}") from err
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), budget)
        except TimeoutError as err:
            await _kill(proc)
            raise ProgramError(f"{what} did not finish by the command's deadline") from err
        except asyncio.CancelledError:
            await asyncio.shield(_kill(proc))
            raise
        said = out.decode(errors="replace").strip()
        if check and proc.returncode != 0:
            raise ProgramError(f"{what} failed (exit {proc.returncode}): {tail(said)}")
        return proc.returncode or 0, said


def inherited_env() -> dict[str, str]:
    """The agent's environment as its programs get it: without a password."""
    return {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}


@contextmanager
def passfile(path: Path, user: str, password: str, owner: tuple[int, int] | None) -> Iterator[Path]:
    """A libpq passfile at ``path`` giving ``password`` for ``user`` on any server, for one
    program's run (name it in the conninfo: ``passfile=``), removed afterwards. Readable only
    by ``owner`` (the database's system user the program runs as; None: ours): created 0600,
    exclusively and never through a link someone planted at ``path``."""
    path.unlink(missing_ok=True)  # left by a run that was killed; unlink never follows a link
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            if owner is not None:
                os.fchown(fd, *owner)
            os.write(fd, f"*:*:*:{pgpass_field(user)}:{pgpass_field(password)}\n".encode())
        finally:
            os.close(fd)
        yield path
    finally:
        path.unlink(missing_ok=True)


def pgpass_field(value: str) -> str:
    """A passfile's field: ``:`` and ``\\`` escaped with a backslash."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def postmaster(data: Path) -> int | None:
    """The pid of the postmaster running on ``data``, from postmaster.pid; None when none runs."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None
    return pid if _is_postgres(pid) else None


def seconds_left(until: float, what: str) -> float:
    left = until - time.monotonic()
    if left <= 0:
        raise ProgramError(f"the command's deadline passed before {what}")
    return left


def wait_seconds(until: float) -> str:
    """pg_ctl's -t: whole seconds, leaving a moment for pg_ctl to report back."""
    return str(max(1, int(until - time.monotonic() - 0.5)))


def tail(text: str, lines: int = _TAIL) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(no output)"


def _run_as(setting: str) -> str | None:
    """The system user for PostgreSQL's programs; None: this process's own."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    user = setting or ("postgres" if os.geteuid() == 0 else me)
    return None if user == me else user


def _is_postgres(pid: int) -> bool:
    """A live (not zombie) process running PostgreSQL: a pid file may name a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if stat[stat.rindex(")") + 2 :].split()[0] in ("Z", "X"):
        return False
    return b"postgres" in command or b"postmaster" in command


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # runuser and its child: a session of their own
    await proc.wait()
