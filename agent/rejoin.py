"""REJOIN's work on the region's PostgreSQL as files and processes: stop, rewind, copy, start.

A former primary becomes a standby of the new primary. That needs the server stopped and
started, so the agent must run beside the database with its data directory (AgentConfig pg_data
and friends). The actuator fences a running primary first; then, each step bounded by the
command's deadline:

1. the server is stopped (``pg_ctl stop -m fast``);
2. a crashed primary is recovered in single-user mode, where no client can connect;
3. ``standby.signal`` is written before anything else changes the data: from here on, whoever
   starts the server (this agent, an operator, ``latitude up``) gets a standby, never a primary;
4. ``pg_rewind --dry-run`` tells whether its WAL went past the point where the new primary's
   timeline forked; if so (and allow_rewind), ``pg_rewind``; when that fails, a fresh
   ``pg_basebackup``, made beside the data directory and swapped in whole once complete, the
   old directory kept as ``<data>.failed-<time>``;
5. the node's own configuration files are put back (pg_rewind and pg_basebackup copy the
   source's, whose port and address are the new primary's), primary_conninfo and
   primary_slot_name are written into postgresql.auto.conf and the fence removed from it;
6. the server is started, as a standby.

Every step can be repeated: an interrupted REJOIN leaves a state the next one recognises (a
stopped server, a rewound directory waiting for its recovery, a copy half made beside it, or
``<data>.rewinding``, the node's own configuration files kept while pg_rewind runs: found
there later, it means pg_rewind did not finish, and only a fresh copy is trusted). With
allow_rewind false the data is never rewritten: a diverged server makes the command fail, left
stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import ssl
import time
from pathlib import Path

import asyncpg

from agent.config import AgentConfig
from agent.conninfo import format_conninfo
from agent.datadir import (
    configure_standby,
    owner_of,
    read_or_empty,
    restore_settings,
    settings_files,
    write_whole,
)
from agent.demotion import fence_cause
from agent.pg_programs import (
    ProgramError,
    Programs,
    passfile,
    postmaster,
    seconds_left,
    tail,
    wait_seconds,
)
from latitude.errors import LatitudeError, describe_error

log = logging.getLogger("latitude.agent.rejoin")

_CLEAN = ("shut down", "shut down in recovery")
# pg_rewind reads the target's WAL back to the last checkpoint before the fork, which the
# server's next checkpoint (its shutdown, or the end of crash recovery) would recycle. Before
# the stop the actuator makes this slot, reserving WAL from the last checkpoint's redo point;
# crash recovery runs keeping all WAL. The rejoined standby's slots are all removed: the
# slots it held as a primary would hold WAL on a standby indefinitely (PROMOTE makes anew
# the ones a primary needs).
REWIND_SLOT = "latitude_rewind"
_KEEP_ALL_WAL = "wal_keep_size=1TB"
# A killed postmaster's children hold its shared memory until they notice the death.
_SHARED_MEMORY_BUSY = "pre-existing shared memory block"
_RETRY = 0.2  # seconds between attempts to start while that memory is busy
# The source's system, and whether its control file shows the timeline it writes on. A primary
# promoted a moment ago records its new timeline there only at its first checkpoint; until then
# pg_rewind, which reads the timeline from the control file, finds "the same timeline" and
# declares that no rewind is needed, however far the target diverged. The timeline it writes
# on is the one its standbys must stream.
_SOURCE_VIEW = """
SELECT (SELECT system_identifier FROM pg_control_system()) AS system_identifier,
       pg_is_in_recovery() OR (SELECT timeline_id FROM pg_control_checkpoint())
           = ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
           AS timeline_recorded,
       CASE WHEN NOT pg_is_in_recovery()
            THEN ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END AS timeline
"""


class RejoinError(LatitudeError):
    """REJOIN could not be carried out; the message says why and in what state it left things."""


class RewindFailed(RejoinError):
    """pg_rewind ran and failed (not merely ran out of time): a fresh copy may still work."""


class LocalServer:
    """The region's PostgreSQL as a data directory and a postmaster this agent can stop,
    rewind, copy afresh and start. Programs run as the database's system user."""

    def __init__(
        self, data: Path, *, region: str, bindir: Path | None = None, os_user: str = "",
        log_file: Path | None = None, db_user: str = "postgres", db_password: str | None = None,
        db_name: str = "postgres", replication_user: str = "replicator",
        replication_passfile: Path | None = None, db_ssl_ca: Path | None = None,
    ) -> None:  # fmt: skip
        self.data = data.absolute()
        self.log = (log_file or self.data.with_name(self.data.name + ".log")).absolute()
        self._region = region
        self._programs = Programs(bindir, os_user)
        self._db = (db_user, db_password, db_name)
        self._replication_user = replication_user
        self._passfile = replication_passfile.absolute() if replication_passfile else None
        # With a CA, every connection to another region's server verifies it (verify-full).
        self._ssl_ca = db_ssl_ca.absolute() if db_ssl_ca else None
        # Whether the last rejoin discarded diverged WAL (rewound, or copied afresh).
        self.rewound = False

    @classmethod
    def from_config(cls, config: AgentConfig) -> LocalServer | None:
        """None when the agent has no pg_data: it runs away from its database."""
        if config.pg_data is None:
            return None
        return cls(
            config.pg_data, region=config.region, bindir=config.pg_bindir,
            os_user=config.pg_os_user, log_file=config.pg_log, db_user=config.db_user,
            db_password=config.db_password or None, db_name=config.db_name,
            replication_user=config.replication_user,
            replication_passfile=config.replication_passfile, db_ssl_ca=config.db_ssl_ca,
        )  # fmt: skip

    # -- what the actuator calls -----------------------------------------------------------

    async def check_source(self, host: str, port: int, until: float) -> int | None:
        """The server to follow answers, holds the same database system as ours, and its
        control file is current (a CHECKPOINT there sees to it): nothing is stopped or copied
        for a primary that cannot be reached or is another cluster. The timeline it writes on
        (None if it is no primary)."""
        user, password, database = self._db
        budget = min(_left(until, "reaching the new primary"), 5.0)
        try:
            async with asyncio.timeout(budget):
                conn = await asyncpg.connect(
                    host=host, port=port, user=user, password=password, database=database,
                    timeout=budget, server_settings={"application_name": self._app("check")},
                    ssl=verified_tls(self._ssl_ca) if self._ssl_ca else None,
                )  # fmt: skip
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            raise RejoinError(
                f"the new primary at {host}:{port} cannot be reached "
                f"({describe_error(err)}): nothing changed"
            ) from err
        try:
            await conn.execute("CHECKPOINT", timeout=_left(until, "a CHECKPOINT on the primary"))
            source = await conn.fetchrow(_SOURCE_VIEW, timeout=budget)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            raise RejoinError(
                f"CHECKPOINT on the new primary at {host}:{port} failed "
                f"({describe_error(err)}; pg_rewind "
                "needs its control file current): nothing changed"
            ) from err
        finally:
            await conn.close(timeout=budget)
        if not source["timeline_recorded"]:
            raise RejoinError(f"the control file of {host}:{port} does not show its timeline "
                              "even after a CHECKPOINT: nothing changed")  # fmt: skip
        theirs = source["system_identifier"]
        if (self.data / "global" / "pg_control").exists():
            ours = (await self._control(until)).get("Database system identifier")
            if ours != str(theirs):
                raise RejoinError(
                    f"{host}:{port} is another database system (identifier {theirs}, ours "
                    f"{ours}): refusing to rewind or copy it over {self.data}"
                )
        return source["timeline"]

    def running(self) -> bool:
        return self._postmaster() is not None

    async def stop(self, until: float) -> None:
        if self._postmaster() is None:
            return
        _, said = await self._run(
            "pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w",
            "-t", wait_seconds(until), until=until, what="stopping PostgreSQL", check=False,
        )  # fmt: skip
        if self._postmaster() is not None:
            raise RejoinError(f"PostgreSQL did not stop: {tail(said)}")

    async def rejoin(self, host: str, port: int, slot: str, *, allow_rewind: bool,
                     until: float) -> str:  # fmt: skip
        """Make the stopped-or-running server a standby of host:port and start it; what was
        done, for the log. The caller fenced a running primary."""
        self.rewound = False
        await self.stop(until)
        conninfo = self._replication_conninfo(host, port)
        if not self.data.exists():
            # A fresh copy was swapped in only half-way: the old directory is aside.
            kept = self._newest_aside()
            if kept is None:
                raise RejoinError(f"the data directory {self.data} does not exist")
            await self._copy_afresh(conninfo, slot, until=until)
            self.rewound = True
            return f"made a fresh copy with pg_basebackup; the old data is kept in {kept}"
        if not (self.data / "PG_VERSION").exists():
            raise RejoinError(f"{self.data} is not a PostgreSQL data directory")
        if self._rewinding.exists():
            why = "a previous pg_rewind did not finish, which leaves the data untrustworthy"
            return await self._fall_back(conninfo, slot, why, allow_rewind, until)
        if (self.data / "backup_label").exists():
            # Rewound (or copied) already; its recovery, as a standby, was never finished.
            done = "finished a previous rewind's recovery"
            self.rewound = True
        elif (state := await self._state(until)) == "in archive recovery":
            # A standby that crashed: it comes back as one (pg_rewind needs a clean shutdown,
            # and recovering it as a primary would write WAL of its own). If it diverged it
            # will not stream, and the next REJOIN finds it stopped cleanly.
            done = "restarted a crashed standby as a standby"
        else:
            if state not in _CLEAN:
                await self._recover_crash(until)
            write_whole(self.data / "standby.signal", b"", owner_of(self.data))
            try:
                done = await self._rewind_if_diverged(host, port, allow_rewind, until)
            except RewindFailed as err:
                return await self._fall_back(conninfo, slot, str(err), allow_rewind, until)
            if self._rewinding.exists():  # rewound: the configuration files are the source's
                restore_settings(self.data, self._own_settings())
        configure_standby(self.data, conninfo, slot)
        if self._rewinding.exists():
            await asyncio.to_thread(shutil.rmtree, self._rewinding)
        await self.start(until)
        return done

    async def start(self, until: float) -> None:
        """Start the server, as a standby only: without standby.signal it is refused."""
        if not (self.data / "standby.signal").exists():
            raise RejoinError(f"refusing to start {self.data} without standby.signal")
        if not self.log.exists():
            write_whole(self.log, b"", owner_of(self.data), mode=0o640)
        self._remove_stale_pid_file()
        while True:
            code, said = await self._run(
                "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
                "-t", wait_seconds(until), until=until, what="starting PostgreSQL", check=False,
            )  # fmt: skip
            if code == 0:
                return
            ends = tail(read_or_empty(self.log), 5)
            if _SHARED_MEMORY_BUSY in ends and time.monotonic() + _RETRY < until:
                await asyncio.sleep(_RETRY)
                continue
            raise RejoinError(
                f"starting PostgreSQL as a standby failed: {tail(said)}; {self.log} ends "
                f"with:\n{tail(read_or_empty(self.log))}"
            )

    # -- the steps -------------------------------------------------------------------------

    async def _recover_crash(self, until: float) -> None:
        """Crash recovery in single-user mode (what pg_rewind does itself when it must): no
        client can connect to a single-user server, and it ends with a clean shutdown."""
        if (self.data / "standby.signal").exists() or (self.data / "recovery.signal").exists():
            if fence_cause(self.data) is None:
                raise RejoinError(f"{self.data} crashed in production but holds a signal file: "
                                  "refusing to guess what it is")  # fmt: skip
            # A demoted primary that had to be stopped at once: it recovers as what it is now,
            # in recovery (single-user mode refuses standby.signal), to the end of its WAL, and
            # stops cleanly; pg_rewind then sees all of its WAL (minRecoveryPoint).
            await self.start(until)
            await self.stop(until)
            log.info("%s: recovered the demoted %s in recovery", self._region, self.data)
            return
        self._remove_stale_pid_file()
        while True:
            code, said = await self._run(
                "postgres", "--single", "-D", str(self.data), "-c", _KEEP_ALL_WAL, "template1",
                until=until, what="crash recovery in single-user mode", check=False,
            )  # fmt: skip
            if code == 0:
                break
            if _SHARED_MEMORY_BUSY in said and time.monotonic() + _RETRY < until:
                await asyncio.sleep(_RETRY)
                continue
            raise RejoinError(f"crash recovery in single-user mode failed: {tail(said)}")
        state = await self._state(until)
        if state not in _CLEAN:
            raise RejoinError(f"after crash recovery the cluster is {state!r}, not shut down")
        log.info("%s: finished crash recovery of %s in single-user mode", self._region, self.data)

    async def _rewind_if_diverged(
        self, host: str, port: int, allow_rewind: bool, until: float
    ) -> str:
        said = await self._rewind(host, port, until, dry_run=True)
        if "no rewind required" in said:
            return "restarted as a standby (its WAL had not diverged: no rewind needed)"
        where = _diverged_at(said)
        if not allow_rewind:
            raise RejoinError(
                f"its WAL diverged from the new primary's ({where}) and allow_rewind is false: "
                "left stopped, as a standby-to-be; it needs pg_rewind or a fresh base backup"
            )
        # pg_rewind overwrites the configuration files with the source's (its port, its
        # address): the node's own are kept beside the data directory until they are back.
        # While this directory exists, the rewind is not known to have finished.
        own = settings_files(self.data)
        self._rewinding.mkdir(mode=0o700)
        for name, content in own.items():
            write_whole(self._rewinding / name, content, None)
        await self._rewind(host, port, until, dry_run=False)
        self.rewound = True
        log.info("%s: rewound %s with pg_rewind (%s)", self._region, self.data, where)
        return f"rewound with pg_rewind ({where})"

    async def _rewind(self, host: str, port: int, until: float, *, dry_run: bool) -> str:
        user, password, database = self._db
        pairs = [
            ("host", host), ("port", str(port)), ("user", user), ("dbname", database),
            ("application_name", self._app("rewind")), ("connect_timeout", "5"),
            *self.tls_pairs(),
        ]  # fmt: skip
        # The password in a passfile of the run's own, readable by the database's user only:
        # never in pg_rewind's environment or command line.
        with contextlib.ExitStack() as cleanup:
            if password:
                path = self.data.with_name(f".{self.data.name}.rewind-pgpass")
                written = passfile(path, user, password, owner_of(self.data))
                pairs.append(("passfile", str(cleanup.enter_context(written))))
            code, said = await self._run(
                "pg_rewind", f"--target-pgdata={self.data}",
                f"--source-server={format_conninfo(*pairs)}", *(["--dry-run"] if dry_run else []),
                until=until, what="pg_rewind", check=False,
            )  # fmt: skip
        if code != 0:
            raise RewindFailed(f"pg_rewind{' --dry-run' if dry_run else ''} failed: {tail(said)}")
        return said

    async def _fall_back(
        self, conninfo: str, slot: str, why: str, allow_rewind: bool, until: float
    ) -> str:
        if not allow_rewind:
            raise RejoinError(f"{why}; allow_rewind is false, so no fresh copy: left stopped")
        log.warning("%s: %s; making a fresh copy with pg_basebackup", self._region, why)
        try:
            aside = await self._copy_afresh(conninfo, slot, until=until)
        except RejoinError as err:
            raise RejoinError(f"{why}; then the fresh copy failed too: {err}") from err
        log.warning("%s: made a fresh copy; the old data is kept in %s", self._region, aside)
        self.rewound = True
        return f"{why}; made a fresh copy with pg_basebackup, the old data is kept in {aside}"

    async def _copy_afresh(self, conninfo: str, slot: str, *, until: float) -> Path:
        """pg_basebackup into <data>.incoming, configured as this node's standby; then the old
        directory goes aside and the copy takes its place, and starts. The old one's path."""
        incoming = self.data.with_name(self.data.name + ".incoming")
        if incoming.exists():  # a copy of ours that was interrupted
            await asyncio.to_thread(shutil.rmtree, incoming)
        await self._run(
            "pg_basebackup", "-d", conninfo, "-D", str(incoming), "-X", "stream",
            *(["-S", slot] if slot else []), "--checkpoint=fast",
            until=until, what="pg_basebackup",
        )  # fmt: skip
        restore_settings(incoming, self._own_settings())
        configure_standby(incoming, conninfo, slot)
        if self.data.exists():
            aside = self._aside_name()
            self.data.rename(aside)
        else:
            aside = self._newest_aside()
        incoming.rename(self.data)
        if self._rewinding.exists():
            await asyncio.to_thread(shutil.rmtree, self._rewinding)
        await self.start(until)
        return aside

    # -- helpers ---------------------------------------------------------------------------

    @property
    def _rewinding(self) -> Path:
        return self.data.with_name(self.data.name + ".rewinding")

    def _own_settings(self) -> dict[str, bytes]:
        """The node's own configuration files: as kept before pg_rewind ran, else the data
        directory's (untouched by pg_rewind), else those of the directory last set aside."""
        if self._rewinding.is_dir():
            return settings_files(self._rewinding)
        if (self.data / "PG_VERSION").exists():
            return settings_files(self.data)
        kept = self._newest_aside()
        if kept is None:
            raise RejoinError(f"no configuration of this node's to give {self.data}")
        return settings_files(kept)

    def _replication_conninfo(self, host: str, port: int) -> str:
        pairs = [("host", host), ("port", str(port)), ("user", self._replication_user)]
        if self._passfile is not None:
            pairs.append(("passfile", str(self._passfile)))
        return format_conninfo(*pairs, *self.tls_pairs(), ("application_name", self._region))

    def tls_pairs(self) -> tuple[tuple[str, str], ...]:
        """libpq's TLS settings for a connection to another region's server: verified
        against the CA and for the address asked for; none without a CA (libpq's default)."""
        if self._ssl_ca is None:
            return ()
        return (("sslmode", "verify-full"), ("sslrootcert", str(self._ssl_ca)))

    def _app(self, what: str) -> str:
        # Named for the agent, as its other sessions are.
        return f"latitude-agent {self._region} {what}"

    async def _state(self, until: float) -> str:
        return (await self._control(until)).get("Database cluster state", "unknown")

    async def control(self, until: float) -> dict[str, str]:
        """What pg_controldata says of the data directory, by field name."""
        return await self._control(until)

    async def _control(self, until: float) -> dict[str, str]:
        _, said = await self._run("pg_controldata", "-D", str(self.data), until=until,
                                  what="pg_controldata")  # fmt: skip
        return {
            key.strip(): value.strip()
            for key, sep, value in (line.partition(":") for line in said.splitlines())
            if sep
        }

    def _postmaster(self) -> int | None:
        return postmaster(self.data)

    def _remove_stale_pid_file(self) -> None:
        # PostgreSQL removes a stale lock file itself, except when its pid still exists: a
        # killed postmaster can linger as a zombie for a moment.
        if self._postmaster() is None:
            (self.data / "postmaster.pid").unlink(missing_ok=True)

    def _aside_name(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside, n = self.data.with_name(f"{self.data.name}.failed-{stamp}"), 1
        while aside.exists():
            n += 1
            aside = self.data.with_name(f"{self.data.name}.failed-{stamp}-{n}")
        return aside

    def _newest_aside(self) -> Path | None:
        found = sorted(self.data.parent.glob(self.data.name + ".failed-*"),
                       key=lambda p: p.stat().st_mtime)  # fmt: skip
        return found[-1] if found else None

    async def _run(
        self, program: str, *args: str, until: float, what: str,
        env: dict[str, str] | None = None, check: bool = True,
    ) -> tuple[int, str]:  # fmt: skip
        """Programs.run, its failures REJOIN's."""
        try:
            return await self._programs.run(
                program, *args, until=until, what=what, env=env, check=check
            )
        except ProgramError as err:
            raise RejoinError(str(err)) from err


def verified_tls(ca: Path) -> ssl.SSLContext:
    """asyncpg's TLS as libpq's sslmode=verify-full: the server's certificate signed by ``ca``
    and naming the address connected to."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _diverged_at(said: str) -> str:
    found = re.search(r"servers diverged at WAL location (\S+) on timeline (\d+)", said)
    return f"diverged at {found[1]} on timeline {found[2]}" if found else "diverged"


def _left(until: float, what: str) -> float:
    try:
        return seconds_left(until, what)
    except ProgramError as err:
        raise RejoinError(str(err)) from err
