"""PID 1 of a region's container in docker-compose.yml: the region's PostgreSQL, its fence keeper
and its agent in one container, as ``latitude up`` runs them side by side natively.

The hard fence needs them together: the agent fences by marking the data directory and
stopping the postmaster with signals (agent.demotion), the keeper does the same when the agent
is gone (agent.keeper), and a REJOIN stops, rewinds and starts the server again with pg_ctl
(agent.rejoin). None of that reaches a postmaster in another container. So, like the images of
the mature PostgreSQL managers (the manager and the server in one container, the manager in
charge), this process starts, as root:

1. the directories the postgres user needs (the volume's root, the socket directory, the
   lease's directory) and the replication passfile REJOIN logs in with;
2. on the first start only (no PG_VERSION), the ``--first-start`` script as the postgres user
   (deploy/postgres/primary-first-start.sh: initdb and primary-init.sh on the initial primary;
   standby-first-start.sh: a pg_basebackup clone elsewhere), the only program that gets the
   superuser's and the replication role's passwords;
3. the postmaster, then the keeper, then the agent, as the postgres user; the keeper and the
   agent with the arguments the native stack gives them (latitude.stack.services), the agent's
   other settings from its LATITUDE_AGENT_* environment;

then supervises them (latitude.supervisor): stops them agent first, keeper next, PostgreSQL
last (a fast shutdown of whichever postmaster runs by then) on SIGTERM, and ends the container
non-zero when the agent or the keeper dies, so that the restart policy starts them again.

    python -m latitude.region_container --region us-east-1 \\
        --pg-data /var/lib/postgresql/data/pgdata \\
        --first-start /usr/local/bin/latitude-first-start.sh
"""

from __future__ import annotations

import argparse
import logging
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent.demotion import postmaster_pid, stop_postmaster
from agent.pg_programs import Programs, pgpass_field
from latitude.stack import services
from latitude.stack.postgres import PostgresNode
from latitude.stack.topology import RegionSpec
from latitude.supervisor import Program, Supervisor

log = logging.getLogger("latitude.region_container")

OS_USER = "postgres"
DEFAULT_LEASE = Path("/run/latitude/fence.lease")
SOCKET_DIR = Path("/var/run/postgresql")
# Only the first-start script may see these: the superuser's password, the replication role's,
# the scripts' other inputs. The agent reads its own password from a file.
SECRET_PREFIXES = ("POSTGRES_", "DEPLOY_", "PGPASSWORD")
# The replication role and its password, for the passfile the agent's REJOIN logs in with.
REPLICATION_USER_ENV = "DEPLOY_REPLICATION_USER"
REPLICATION_PASSWORD_ENV = "DEPLOY_REPLICATION_PASSWORD"
# Where the initial primary's first start writes the agents' password (the credentials volume).
CREDENTIALS_DIR_ENV = "DEPLOY_CREDENTIALS_DIR"
READY_WITHIN = 120.0  # seconds for a started postmaster to accept connections


def program_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the postmaster, the keeper and the agent get: the container's, without
    any password or first-start input."""
    return {k: v for k, v in environ.items() if not k.startswith(SECRET_PREFIXES)}


def user_env(user: pwd.struct_passwd) -> dict[str, str]:
    """What a program run as ``user`` expects of its environment: its own home, not root's
    (libpq looks there for ~/.pgpass and ~/.postgresql, and root's is closed to it)."""
    return {"HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name}


def database(region: str, pg_data: Path) -> PostgresNode:
    """The region's database as the native stack's argv builders take it: the data directory,
    and the server log beside it that the agent's ``pg_ctl start`` writes to."""
    return PostgresNode(region, "127.0.0.1", 5432, pg_data, pg_data.parent / "postgresql.log")


def keeper_argv(region: str, pg_data: Path, lease: Path) -> list[str]:
    # keeper_argv takes the region's spec and reads its name only.
    return services.keeper_argv(RegionSpec(region, 0.0, 0.0), database(region, pg_data), lease)


def agent_argv(region: str, pg_data: Path, lease: Path) -> list[str]:
    """The agent beside its database; everything else it is told comes from the container's
    LATITUDE_AGENT_* variables."""
    flags = services.agent_database_flags(database(region, pg_data), lease)
    return [sys.executable, "-m", "agent.main", *flags]


def postmaster_status(pg_data: Path) -> str:
    """The postmaster's own word on its state (postmaster.pid's last line: "starting",
    "ready", "standby", "stopping"); "" without a live postmaster."""
    if postmaster_pid(pg_data) is None:
        return ""
    try:
        lines = (pg_data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return ""
    return lines[7].strip() if len(lines) > 7 else "starting"


# -- as root, before anything runs -------------------------------------------------------


def _own(path: Path, user: pwd.struct_passwd, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)


def prepare(pg_data: Path, lease: Path, environ: Mapping[str, str]) -> None:
    """Directories and files the postgres user needs and cannot make itself: a fresh volume
    belongs to root."""
    user = pwd.getpwnam(OS_USER)
    # The volume's root: REJOIN moves a fresh copy in beside the data directory.
    _own(pg_data.parent, user, 0o700)
    _own(SOCKET_DIR, user, 0o2775)
    _own(lease.parent, user, 0o700)
    credentials = environ.get(CREDENTIALS_DIR_ENV)
    if credentials:  # the initial primary's first start writes the agents' password there
        _own(Path(credentials), user, 0o700)
    replication_user = environ.get(REPLICATION_USER_ENV)
    password = environ.get(REPLICATION_PASSWORD_ENV)
    if replication_user and password:
        passfile = database("", pg_data).data_dir.parent / "pgpass"
        line = f"*:*:*:{pgpass_field(replication_user)}:{pgpass_field(password)}\n"
        passfile.unlink(missing_ok=True)  # never written through a link planted there
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchown(fd, user.pw_uid, user.pw_gid)
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def first_start(script: Path, pg_data: Path, environ: Mapping[str, str]) -> None:
    """Make the data directory (initdb or a clone) unless it exists already."""
    if (pg_data / "PG_VERSION").is_file():
        return
    log.info("no cluster in %s yet: running %s", pg_data, script)
    done = subprocess.run(
        [str(script)],
        user=OS_USER,
        group=pwd.getpwnam(OS_USER).pw_gid,
        extra_groups=[],
        env={**environ, **user_env(pwd.getpwnam(OS_USER)), "PGDATA": str(pg_data)},
        cwd="/",
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"first start: {script} exited {done.returncode}")


def wait_ready(supervisor: Supervisor, postgres: Program, pg_data: Path) -> str:
    """Until the postmaster accepts connections (or is a hot standby), exits, or READY_WITHIN
    passes; its last status. The agent would only report it DOWN meanwhile."""
    until = time.monotonic() + READY_WITHIN
    status = postmaster_status(pg_data)
    while status not in ("ready", "standby") and time.monotonic() < until:
        if supervisor.stop_requested:
            return "not waited for (stopping)"
        supervisor.reap()
        if postgres.status is not None:
            return f"exited with {postgres.status}"
        time.sleep(0.1)
        status = postmaster_status(pg_data)
    return status or "not running"


# -- the programs ------------------------------------------------------------------------


def programs(region: str, pg_data: Path, lease: Path, env: Mapping[str, str]) -> list[Program]:
    """The region's programs, in the order they are stopped: agent, keeper, PostgreSQL."""

    def stop_postgres(grace: float) -> object:
        return stop_postmaster(pg_data, grace=grace)

    postgres = Programs(None, OS_USER).path("postgres")
    argv = [postgres, "-D", str(pg_data)]
    return [
        Program("agent", agent_argv(region, pg_data, lease), user=OS_USER, env=env, grace=10.0),
        Program("keeper", keeper_argv(region, pg_data, lease), user=OS_USER, env=env, grace=3.0),
        # Not essential: a fence stops it and a REJOIN starts another, the agent's child.
        Program(
            "postgres", argv, essential=False, user=OS_USER, env=env, grace=10.0, stop=stop_postgres
        ),
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="latitude.region_container", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--region", required=True)
    parser.add_argument("--pg-data", type=Path, required=True, help="the data directory")
    parser.add_argument(
        "--first-start",
        type=Path,
        required=True,
        help="run as postgres when the data directory holds no cluster yet",
    )
    parser.add_argument("--fence-lease", type=Path, default=DEFAULT_LEASE)
    args = parser.parse_args(argv)
    if not args.pg_data.is_absolute() or not args.fence_lease.is_absolute():
        parser.error("--pg-data and --fence-lease must be absolute paths")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("LATITUDE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = parse_args(argv)
    if os.getpid() != 1:
        log.warning("not PID 1: orphans (a postmaster the agent restarts) are not reaped here")
    if os.geteuid() != 0:
        raise SystemExit(
            "latitude.region_container must run as root: it starts its programs as postgres"
        )
    environ = dict(os.environ)
    env = {**program_env(environ), **user_env(pwd.getpwnam(OS_USER))}
    region_programs = programs(args.region, args.pg_data, args.fence_lease, env)
    agent, keeper, postgres = region_programs
    supervisor = Supervisor(region_programs)
    supervisor.install_signals()
    prepare(args.pg_data, args.fence_lease, environ)
    first_start(args.first_start, args.pg_data, environ)
    supervisor.start(postgres)
    log.info("PostgreSQL is %s", wait_ready(supervisor, postgres, args.pg_data))
    if not supervisor.stop_requested:  # a docker stop during the first start: nothing more
        supervisor.start(keeper)
        supervisor.start(agent)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
