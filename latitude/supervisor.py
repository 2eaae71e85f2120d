"""A small init for a container that runs several programs: PID 1 of a region's container
(latitude.region_container), where PostgreSQL, its fence keeper and its agent run together.

Why PID 1 needs one: the kernel makes it the parent of every orphan, and PostgreSQL's
postmaster is one as soon as the agent restarts it (``pg_ctl start`` forks it and exits), so
PID 1 must reap what it never started or zombies pile up; and PID 1 gets no default signal
handling, so a SIGTERM from ``docker stop`` would do nothing unless it acts on it.

What it does, tini-like:

- reaps every child that exits, its own or adopted;
- on SIGTERM (or SIGINT) stops its programs one by one in the order it was given, each with
  its own signal and grace period, SIGKILL past it;
- when a program it must keep (``essential``) exits on its own, stops the others the same way
  and exits non-zero, so that the container's restart policy acts: a container whose agent is
  gone would otherwise hold a database that nobody fences or rejoins.

A program that is not essential may come and go: the postmaster is stopped by a fence and
started again by a REJOIN without ending the container. Its stop is a callable, not a pid,
because the postmaster that runs at the end may not be the one started here.

``exit_status`` and ``stop_order`` are pure (unit-tested); the rest is processes and signals.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

log = logging.getLogger("latitude.supervisor")

POLL = 0.1  # seconds between looks at the children while nothing is signalled


@dataclass
class Program:
    """A program the supervisor starts and stops. ``stop`` (when given) replaces the signal:
    it stops whatever instance of the program runs by then, within ``grace`` seconds."""

    name: str
    argv: Sequence[str]
    essential: bool = True
    user: str | None = None
    env: Mapping[str, str] | None = None
    stop_signal: int = signal.SIGTERM
    grace: float = 5.0
    stop: Callable[[float], object] | None = None
    pid: int | None = field(default=None, init=False)
    status: int | None = field(default=None, init=False)
    # Kept so that subprocess never reaps it behind the supervisor's back (a Popen dropped
    # while its process runs is polled, and may be reaped, by the next Popen's creation).
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)


def exit_status(status: int, *, essential: bool, stopping: bool) -> int | None:
    """What a child's end means for the container: None to carry on, else the container's exit
    status. ``status`` is the child's, as ``os.waitstatus_to_exitcode`` gives it (negative: the
    signal that killed it)."""
    if stopping or not essential:
        return None
    # An essential program that ends, even with 0, leaves the container unable to do its job.
    return status if status > 0 else 1


def stop_order(programs: Sequence[Program]) -> list[Program]:
    """The programs as they are to be stopped: the order they were given (the caller's), those
    that were never started or have already ended left out, except those stopped by a callable
    (which looks for its own instance)."""
    return [p for p in programs if p.stop is not None or (p.pid is not None and p.status is None)]


class Supervisor:
    def __init__(self, programs: Sequence[Program]) -> None:
        self.programs = list(programs)
        self.stopping = False
        self._signalled = False

    # -- starting -------------------------------------------------------------------------

    def start(self, program: Program) -> None:
        """Start ``program`` as its user. Its own session: a terminal's signals meant for PID 1
        do not reach it, only what the supervisor sends."""
        process = subprocess.Popen(
            list(program.argv),
            user=program.user,
            group=_group_of(program.user),
            extra_groups=[] if program.user else None,
            env=dict(program.env) if program.env is not None else None,
            start_new_session=True,
        )
        # The supervisor reaps by pid (os.waitpid(-1)), and tells the Popen what it found.
        program.process, program.pid, program.status = process, process.pid, None
        log.info("started %s (pid %d)", program.name, process.pid)

    def request_stop(self) -> None:
        """What SIGTERM and SIGINT do: ``run`` stops everything and returns."""
        self._signalled = True

    @property
    def stop_requested(self) -> bool:
        return self._signalled

    def install_signals(self) -> None:
        def on_signal(signum: int, frame: object) -> None:
            self.request_stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # -- running --------------------------------------------------------------------------

    def reap(self) -> int | None:
        """Collect every child that has exited; the container's exit status when one of them
        ends it (exit_status), else None."""
        verdict = None
        while True:
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return verdict
            if pid == 0:
                return verdict
            status = os.waitstatus_to_exitcode(raw)
            program = next((p for p in self.programs if p.pid == pid), None)
            if program is None:
                continue  # an adopted orphan (a postmaster the agent started, a backend)
            program.status = status
            if program.process is not None:
                program.process.returncode = status
            log.log(
                logging.INFO if self.stopping else logging.WARNING,
                "%s (pid %d) exited with %d",
                program.name,
                pid,
                status,
            )
            ends = exit_status(status, essential=program.essential, stopping=self.stopping)
            if ends is not None and verdict is None:
                verdict = ends

    def run(self) -> int:
        """Supervise until told to stop or an essential program ends; then stop everything in
        order. The container's exit status."""
        status = 0
        while not self._signalled:
            ended = self.reap()
            if ended is not None:
                status = ended
                break
            time.sleep(POLL)
        self.shutdown()
        return status

    # -- stopping -------------------------------------------------------------------------

    def shutdown(self) -> None:
        self.stopping = True
        for program in stop_order(self.programs):
            self._stop(program)
        self.reap()

    def _stop(self, program: Program) -> None:
        if program.stop is not None:
            log.info("stopping %s", program.name)
            try:
                how = program.stop(program.grace)
            except Exception:  # the next program must still be stopped
                log.exception("stopping %s failed", program.name)
            else:
                log.info("stopped %s: %s", program.name, how)
            return
        assert program.pid is not None
        log.info("stopping %s (pid %d)", program.name, program.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(program.pid, program.stop_signal)
        until = time.monotonic() + program.grace
        while program.status is None and time.monotonic() < until:
            self.reap()
            time.sleep(0.02)
        if program.status is None:
            log.warning("%s did not stop within %.0f s: killed", program.name, program.grace)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(program.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(program.pid, 0)
            program.status = -signal.SIGKILL
            if program.process is not None:
                program.process.returncode = program.status


def _group_of(user: str | None) -> int | None:
    return None if user is None else pwd.getpwnam(user).pw_gid
