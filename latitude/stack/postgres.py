"""PostgreSQL for each region: initdb, base backups, start and stop, and what status reports.

The initial primary is created with ``initdb``; each standby is a ``pg_basebackup -R`` of it with
its own physical replication slot. ``wal_log_hints`` is on so that a failed-over old primary can
later be rewound with ``pg_rewind`` instead of copied afresh. A primary that comes back is
started fenced: demoted, in recovery (see ``Postgres.fence``).

Three roles: the superuser (the stack's own, for setting up and for ``status``), the
replication role the standbys stream as (latitude.replication.REPLICATION_USER), and
``latitude_agent``, the agents' (``AGENT_ROLE``), with no more than what they run. Every statement
an agent sends, and the grant that lets it:

- the probe reads pg_stat_wal_receiver and pg_stat_replication (the receiver's status and
  sender, each standby's LSNs): ``pg_read_all_stats`` (without it those columns read NULL,
  which would say "not streaming");
- the probe, FOLLOW, REJOIN and UNFENCE read primary_conninfo (current_setting, pg_settings), a
  superuser-only setting: ``pg_read_all_settings``;
- the probe reads pg_control_checkpoint(), pg_control_system(), the WAL positions,
  pg_walfile_name() and latitude.fenced: PUBLIC already;
- the probe's heartbeat (schema ``latitude`` and its table): the role owns the schema, which
  the stack makes for it (the agent creates only what is missing, so a schema and table made
  beforehand by an administrator, with INSERT, UPDATE and SELECT granted, serve as well);
- the probe reads a timeline's history, pg_read_file('pg_wal/<tli>.history'): EXECUTE on
  pg_read_file(text);
- FOLLOW, PROMOTE, UNFENCE and SET_SYNCHRONOUS run ALTER SYSTEM SET or RESET on
  primary_conninfo, primary_slot_name, synchronous_standby_names and
  default_transaction_read_only: ALTER SYSTEM ON PARAMETER each of these four, no other;
- every reconfiguration reloads, pg_reload_conf(): EXECUTE on it;
- PROMOTE and UNFENCE run pg_promote(wait => false): EXECUTE on pg_promote(boolean, integer);
- CHECKPOINT (the command, PROMOTE with synchronous standbys, REJOIN's on the new primary):
  ``pg_checkpoint`` (new in PostgreSQL 15);
- PROMOTE and REJOIN create and drop physical replication slots: REPLICATION (pg_hba.conf lets
  only the replication role stream WAL);
- REJOIN runs pg_rewind with the new primary as its source: EXECUTE on pg_ls_dir(text,
  boolean, boolean), pg_stat_file(text, boolean), pg_read_binary_file(text) and
  pg_read_binary_file(text, bigint, bigint, boolean), as PostgreSQL's documentation lists;
- verify computes checksums of every user table's rows: ``pg_read_all_data`` (read, never
  write).

REJOIN's pg_basebackup connects as the replication role, through its passfile. Not granted,
because nothing the agent runs needs it: superuser, ``pg_signal_backend`` (FENCE stops the
server by signals as the database's system user, not by pg_terminate_backend), ``pg_monitor``
(its ``pg_stat_scan_tables`` part is unused). What needs the operating system stays there, as
the database's system user: pg_ctl, ``postgres --single``, pg_controldata, signals to the
postmaster, the data directory's files.

What the role gives up: the connection slots PostgreSQL 15 keeps for superusers
(superuser_reserved_connections). With every other slot taken by applications, an agent that
must open a connection anew (its probe's broke, or a command's) is refused like any client;
FENCE still works (it needs no connection), but the probe reports the database down. The probe
and the actuator keep their connections open, so this bites only at a reconnection. PostgreSQL
16's pg_use_reserved_connections (with reserved_connections) would give the role slots of its
own; this stack runs 15.

With certificates (``enable_tls``) each server has one issued by the stack's CA for its address,
and replication runs over TLS with the server verified (``sslmode=verify-full``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import pwd
import secrets
import shutil
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg

from agent.conninfo import guc_quote
from agent.demotion import clear_fence, mark_fenced
from latitude import pki
from latitude.errors import StackError
from latitude.replication import REPLICATION_USER
from latitude.stack import processes
from latitude.stack.processes import ProcessRecord

SUPERUSER = "postgres"
# The agents' role: see the table above.
AGENT_ROLE = "latitude_agent"
_AGENT_PARAMETERS = (
    "primary_conninfo", "primary_slot_name", "synchronous_standby_names",
    "default_transaction_read_only",
)  # fmt: skip
_AGENT_FUNCTIONS = (
    "pg_read_file(text)", "pg_reload_conf()", "pg_promote(boolean, integer)",
    "pg_ls_dir(text, boolean, boolean)", "pg_stat_file(text, boolean)",
    "pg_read_binary_file(text)", "pg_read_binary_file(text, bigint, bigint, boolean)",
)  # fmt: skip
_AGENT_ROLES = ("pg_read_all_stats", "pg_read_all_settings", "pg_checkpoint", "pg_read_all_data")
AGENT_GRANTS = (
    f"GRANT {', '.join(_AGENT_ROLES)} TO {AGENT_ROLE}",
    f"GRANT EXECUTE ON FUNCTION {', '.join(_AGENT_FUNCTIONS)} TO {AGENT_ROLE}",
    f"GRANT ALTER SYSTEM ON PARAMETER {', '.join(_AGENT_PARAMETERS)} TO {AGENT_ROLE}",
    f"CREATE SCHEMA IF NOT EXISTS latitude AUTHORIZATION {AGENT_ROLE}",
)

# Small-machine settings: three clusters share two cores with etcd and the control plane.
_SERVER_SETTINGS = """
# Written by latitude. Per-node settings (address, port) are in latitude.conf.
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_log_hints = on
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
# A silently cut link (packets dropped, not refused) is given up on after 5 s rather than 60 s,
# so a standby reconnects soon after the link heals and a primary stops waiting on a standby
# that is gone (the agents judge "streaming" by what the receiver heard lately, not by this).
wal_receiver_timeout = 5s
wal_sender_timeout = 5s
# A standby retries a lost or repointed primary quickly (default 5 s).
wal_retrieve_retry_interval = 500ms
max_slot_wal_keep_size = 1GB
shared_buffers = 64MB
max_connections = 60
unix_socket_directories = ''
include_if_exists = 'latitude.conf'
"""

_HBA = """
# Written by latitude: password (SCRAM) authentication over TCP only.
local   all          all                       peer
host    all          all          all          scram-sha-256
{replication}  replication  {replicator}  all          scram-sha-256
"""
# With certificates, WAL streams over TLS only: a plaintext replication connection matches no
# line and is refused.
_TLS_SETTINGS = """ssl = on
ssl_cert_file = {cert}
ssl_key_file = {key}
ssl_ca_file = {ca}
"""
_RENEW_BEFORE = datetime.timedelta(days=30)  # a server certificate closer to its end is reissued


@dataclass(frozen=True, slots=True)
class PostgresNode:
    region: str
    host: str
    port: int
    data_dir: Path
    log: Path

    @property
    def name(self) -> str:
        return f"postgres-{self.region}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class Postgres:
    """PostgreSQL's programs, run as the database's system user."""

    def __init__(self, programs: dict[str, Path], user: str | None) -> None:
        self._programs = programs
        self._user = user

    def prepare_dir(self, path: Path, mode: int = 0o700) -> None:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
        self._chown(path)

    def prepare_file(self, path: Path, content: str = "", mode: int = 0o600) -> None:
        """``path`` replaced by a new file, the database's user's: its directories are that
        user's too, so the file is made exclusively, never through a link planted there, and
        renamed into place (a passfile holds a password)."""
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(content)
                os.fchmod(out.fileno(), mode)
                if self._user is not None:
                    entry = pwd.getpwnam(self._user)
                    os.fchown(out.fileno(), entry.pw_uid, entry.pw_gid)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    async def check_access(self, directory: Path) -> None:
        """PostgreSQL runs as another user: it must be able to reach the stack directory."""
        if self._user is None:
            return
        try:
            await processes.run(["test", "-x", str(directory)], what="access", user=self._user)
        except StackError as err:
            raise StackError(
                f"PostgreSQL runs as the {self._user!r} user, which cannot reach {directory}: "
                "put the stack in a directory every user can traverse (--dir)"
            ) from err

    async def init_primary(self, node: PostgresNode, superuser_password: str) -> None:
        await self._fresh(node.data_dir)
        pwfile = node.data_dir.parent / f".{node.region}.pw"
        self.prepare_file(pwfile, superuser_password + "\n")
        try:
            await self._run(
                "initdb", "-D", str(node.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8",
                "--locale=C", "--no-instructions",
                what=f"initdb for {node.region}",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        with (node.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(_SERVER_SETTINGS)
        self.write_hba(node)
        self.write_node_settings(node)

    def fence(self, node: PostgresNode) -> None:
        """Demote the stopped server the way the agent's FENCE does (agent.demotion): it starts
        in recovery, as a fenced primary that UNFENCE promotes.

        For a primary coming back: an old one after a failover, or the current one after a
        crash or a stop. It must not take writes until the leader says it is the write region
        (then it is unfenced) or makes it rejoin as a standby of the one that is."""
        mark_fenced(node.data_dir, "startup")

    async def create_replication(
        self, node: PostgresNode, superuser_password: str, replication_password: str,
        slots: list[str],
    ) -> None:  # fmt: skip
        """The replication role and one physical slot per standby, on the primary."""
        conn = await connect(node, superuser_password)
        try:
            if await conn.fetchval(_DEMOTED):
                # A primary restarted before its standbys were ever copied comes back fenced
                # (demoted); no leader has decided anything yet, and setting up is the stack's
                # own business: it is promoted again (on a new timeline) to make the role.
                clear_fence(node.data_dir)
                await conn.execute("SELECT pg_reload_conf()")
                if not await conn.fetchval("SELECT pg_promote(wait => true, wait_seconds => 60)"):
                    raise StackError(f"{node.region}: promoting the fenced first primary "
                                     "did not finish in 60 s")  # fmt: skip
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_roles WHERE rolname = $1", REPLICATION_USER
            )
            verb = "ALTER" if exists else "CREATE"
            # Role passwords cannot be bound parameters; quote_literal does the escaping.
            literal = await conn.fetchval("SELECT quote_literal($1)", replication_password)
            await conn.execute(
                f"{verb} ROLE {REPLICATION_USER} WITH REPLICATION LOGIN PASSWORD {literal}"
            )
            for slot in slots:
                await conn.execute(
                    "SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS "
                    "(SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                    slot,
                )
        finally:
            await conn.close()

    async def create_agent_role(
        self, node: PostgresNode, superuser_password: str, agent_password: str
    ) -> None:
        """The agents' role (AGENT_ROLE) with its grants, on the primary before its standbys
        are copied (they get it with the copy). Repeatable: the password is set again."""
        conn = await connect(node, superuser_password)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", AGENT_ROLE)
            verb = "ALTER" if exists else "CREATE"
            literal = await conn.fetchval("SELECT quote_literal($1)", agent_password)
            # NOINHERIT would hide the predefined roles' privileges: they are granted to use.
            await conn.execute(
                f"{verb} ROLE {AGENT_ROLE} WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB "
                f"NOCREATEROLE PASSWORD {literal}"
            )
            for grant in AGENT_GRANTS:
                await conn.execute(grant)
        finally:
            await conn.close()

    async def base_backup(
        self, node: PostgresNode, primary: PostgresNode, slot: str, passfile: Path
    ) -> None:
        await self._fresh(node.data_dir)
        conninfo = (
            f"host={primary.host} port={primary.port} user={REPLICATION_USER} "
            f"application_name={node.region} passfile={passfile}"
        )
        ca = tls_ca(primary)
        if ca is not None:  # -R writes these into the standby's primary_conninfo too
            conninfo += f" sslmode=verify-full sslrootcert={ca}"
        await self._run(
            "pg_basebackup", "-d", conninfo, "-D", str(node.data_dir), "-R",
            "-X", "stream", "-S", slot, "--checkpoint=fast", "--no-sync",
            what=f"base backup of {primary.region} for {node.region}",
        )  # fmt: skip
        self.write_node_settings(node)

    def write_node_settings(self, node: PostgresNode) -> None:
        """latitude.conf: the node's address and port, and its certificate when it has one."""
        settings = (
            f"listen_addresses = '{node.host}'\nport = {node.port}\n"
            f"cluster_name = '{node.region}'\n"
        )
        ca = tls_ca(node)
        if ca is not None:
            cert = _tls_dir(node)
            settings += _TLS_SETTINGS.format(
                cert=guc_quote(str(cert / "server.crt")),
                key=guc_quote(str(cert / "server.key")),
                ca=guc_quote(str(ca)),
            )
        self.prepare_file(node.data_dir / "latitude.conf", settings)

    def write_hba(self, node: PostgresNode) -> None:
        replication = "hostssl" if tls_ca(node) is not None else "host"
        self.prepare_file(
            node.data_dir / "pg_hba.conf",
            _HBA.format(replication=replication, replicator=REPLICATION_USER),
        )

    def enable_tls(self, node: PostgresNode, ca_dir: Path) -> None:
        """Serve ``node`` over TLS with a certificate from the CA in ``ca_dir`` (``latitude up
        --tls``'s, ``<stack>/tls``) for its address, and stream WAL over TLS only; takes
        effect at the next start. Repeatable: the certificate is issued again only when it is
        missing, for another address, or near its end.

        The certificate, its key and a copy of the CA live beside the data directories, the
        database's user's (it must read its key, and so must PostgreSQL's programs the CA):
        ``<postgres>/ca.crt`` is what clients verify every server against
        (``sslmode=verify-full sslrootcert=...``: base backups, the standbys' primary_conninfo,
        the agents' db_ssl_ca)."""
        directory, ca = _tls_dir(node), node.data_dir.parent / "ca.crt"
        self.prepare_file(ca, (ca_dir / "ca.crt").read_text(), mode=0o644)
        cert = directory / "server.crt"
        if not _current(cert, node.host):
            issued = pki.issue(ca_dir, "server", hosts=[node.host], directory=directory)
            for path in (directory, issued.cert, issued.key):
                self._chown(path)
        self.write_node_settings(node)
        self.write_hba(node)

    async def start(self, node: PostgresNode, timeout: float) -> ProcessRecord:
        """Start the server and wait until it accepts connections; the postmaster's record."""
        if not node.log.exists():
            self.prepare_file(node.log, mode=0o640)
        _remove_stale_pid_file(node.data_dir)
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self._run(
                    "pg_ctl", "start", "-D", str(node.data_dir), "-l", str(node.log),
                    "-w", "-t", str(int(timeout)),
                    what=f"starting PostgreSQL for {node.region}", timeout=timeout + 5,
                )  # fmt: skip
                break
            except StackError as err:
                # A killed postmaster's children hold its shared memory until they notice
                # the death (well under a second); PostgreSQL refuses to start until then.
                if _SHARED_MEMORY_BUSY in processes.tail(node.log, 3) and (
                    time.monotonic() < deadline
                ):
                    await asyncio.sleep(0.2)
                    continue
                raise StackError(
                    f"{err}\n{node.log} ends with:\n{processes.tail(node.log)}"
                ) from err
        pid = int((node.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        return processes.record_for(node.name, pid)

    async def _run(self, program: str, *args: str, what: str, timeout: float = 120.0) -> str:
        return await processes.run(
            [str(self._programs[program]), *args], what=what, user=self._user, timeout=timeout
        )

    async def _fresh(self, data_dir: Path) -> None:
        """An empty data directory, removing what a crashed attempt left behind, including a
        pg_basebackup or initdb still writing into it after a killed ``up``."""
        for pid in processes.find_by_cmdline(str(data_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                if processes.start_ticks(pid) is None:
                    break
                await asyncio.sleep(0.02)
        try:
            shutil.rmtree(data_dir)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise StackError(f"cannot remove the incomplete {data_dir}: {err}") from err
        self.prepare_dir(data_dir)

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(path, entry.pw_uid, entry.pw_gid)


async def connect(node: PostgresNode, password: str, timeout: float = 3.0) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=node.host, port=node.port, user=SUPERUSER, password=password,
        database="postgres", timeout=timeout,
    )  # fmt: skip


_SHARED_MEMORY_BUSY = "pre-existing shared memory block"
# A demoted primary (agent.demotion): in recovery, with the fence's setting.
_DEMOTED = """
SELECT pg_is_in_recovery() AND nullif(current_setting('latitude.fenced', true), '') IS NOT NULL
"""


def tls_ca(node: PostgresNode) -> Path | None:
    """The CA that the stack's PostgreSQL servers are verified against; None without TLS."""
    ca = node.data_dir.parent / "ca.crt"
    return ca if ca.exists() and (_tls_dir(node) / "server.crt").exists() else None


def _tls_dir(node: PostgresNode) -> Path:
    return node.data_dir.parent / f"{node.region}.tls"


def _current(cert: Path, host: str) -> bool:
    """``cert`` exists, names ``host`` and is not near its end."""
    try:
        info = pki.describe(cert)
    except (OSError, ValueError):
        return False
    return host in info.hosts and info.expires_in() > _RENEW_BEFORE


def _remove_stale_pid_file(data_dir: Path) -> None:
    """Remove postmaster.pid when the postmaster it names is gone.

    PostgreSQL removes a stale lock file itself, except when the pid still exists: after a
    kill -9 it can linger as a zombie until init reaps it. Its shared-memory interlock still
    protects against a second postmaster while old backends live.
    """
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return
    if processes.start_ticks(pid) is None:
        pid_file.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    region: str
    address: str
    role: str  # primary, standby or down
    lsn: str = ""
    timeline: int | None = None
    receiver: str = ""  # the standby's WAL receiver status, e.g. "streaming"
    lag_bytes: int | None = None
    error: str = ""
    fenced: bool = False  # a demoted primary: in recovery, marked fenced (agent.demotion)
    # The timeline a writable primary writes, or a standby's WAL receiver receives.
    wal_timeline: int | None = None

    @property
    def streaming(self) -> bool:
        return self.role == "standby" and self.receiver == "streaming"


_PROBE = """
SELECT pg_is_in_recovery() AS standby,
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
            ELSE pg_current_wal_lsn() END::text AS lsn,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline,
       (SELECT status FROM pg_stat_wal_receiver) AS receiver,
       pg_is_in_recovery() AND nullif(current_setting('latitude.fenced', true), '') IS NOT NULL
           AS fenced,
       CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver)
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END AS wal_timeline
"""


async def probe(node: PostgresNode, password: str, timeout: float = 2.0) -> NodeStatus:
    try:
        conn = await connect(node, password, timeout)
        try:
            row = await asyncio.wait_for(conn.fetchrow(_PROBE), timeout)
        finally:
            await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
            asyncpg.InternalClientError) as err:  # fmt: skip
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        return NodeStatus(node.region, node.address, "down", error=reason or type(err).__name__)
    return NodeStatus(
        node.region,
        node.address,
        # A demoted primary is still the primary: the one the standbys stream from.
        "standby" if row["standby"] and not row["fenced"] else "primary",
        lsn=row["lsn"] or "",
        timeline=row["timeline"],
        receiver=row["receiver"] or "",
        fenced=row["fenced"],
        wal_timeline=row["wal_timeline"],
    )


async def cluster_status(nodes: list[PostgresNode], password: str) -> list[NodeStatus]:
    """Every node's status, with each standby's replay lag behind the primary in bytes.

    A standby still streaming the timeline its primary has just left (promoted out of its
    fence: the primary ends the stream, and the standby comes back for the new timeline
    within a moment) is not counted as streaming."""
    found = list(await asyncio.gather(*(probe(n, password) for n in nodes)))
    primaries = [s for s in found if s.role == "primary"]
    if len(primaries) != 1 or not primaries[0].lsn:
        return found
    head, timeline = parse_lsn(primaries[0].lsn), primaries[0].wal_timeline
    return [_against(s, head, timeline) if s.role == "standby" else s for s in found]


def _against(standby: NodeStatus, head: int, timeline: int | None) -> NodeStatus:
    if standby.lsn:
        standby = replace(standby, lag_bytes=max(0, head - parse_lsn(standby.lsn)))
    if standby.streaming and None not in (timeline, standby.wal_timeline):
        if standby.wal_timeline < timeline:
            receiver = f"streaming old timeline {standby.wal_timeline}, not {timeline}"
            standby = replace(standby, receiver=receiver)
    return standby


def parse_lsn(text: str) -> int:
    """'16/B374D848' -> its byte position in the WAL."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)
