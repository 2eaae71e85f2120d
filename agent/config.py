"""The agent's settings: a TOML file's [agent] table (and [[agent.checks]]), then
LATITUDE_AGENT_* environment variables, then flags."""

from __future__ import annotations

import logging
import os
import socket
import stat
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from agent.peers import parse_peers
from agent.utilization import check_source
from latitude import config as configuration
from latitude.errors import ConfigError
from latitude.netaddr import parse_host_port
from latitude.pki import CertFiles, Identity
from latitude.tls_config import check_tls

log = logging.getLogger("latitude.agent")

_PASSWORD_ENV = "LATITUDE_AGENT_DB_PASSWORD"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    # The region this agent speaks for.
    region: str = ""
    # Unique per agent process; default region/host/pid.
    agent_id: str = ""
    # Coordinator addresses (host:port); any one will do, the agent finds the leader.
    coordinators: tuple[str, ...] = ()
    # host:port for the agent's own gRPC server (health, reflection); port 0 picks one.
    listen: str = "127.0.0.1:0"
    # host:port at which the coordinators reach that server (told in Hello.agent_address, for
    # AdminService.Verify); empty: the listen address with the port it bound (the host's name
    # for a wildcard listen address such as 0.0.0.0).
    advertise: str = ""
    # Where the region is, for geographic routing.
    latitude: float = 0.0
    longitude: float = 0.0
    # Relative serving capacity (only ratios between regions matter).
    capacity: int = 100
    # Failover preference among equally caught-up standbys; 0 = never promote automatically.
    priority: int = 100
    # The region's PostgreSQL, as this agent and other regions reach it.
    db_host: str = "127.0.0.1"
    db_port: int = 5432
    db_user: str = "postgres"
    # The password, from a file holding it on one line, readable by its owner only (0600): it
    # then appears in no process's environment or command line. db_password
    # (LATITUDE_AGENT_DB_PASSWORD) still works, with a warning: the environment is where every
    # program started from it finds it. load() reads the file into db_password.
    db_password_file: Path | None = None
    db_password: str = ""
    db_name: str = "postgres"
    # A CA certificate (PEM) that other regions' PostgreSQL servers are verified against: with
    # it, REJOIN's connection to the new primary, its pg_rewind and the replication it sets up
    # use TLS with sslmode=verify-full. Empty: libpq's defaults.
    db_ssl_ca: Path | None = None
    # How often to report until the leader's Welcome says otherwise.
    report_interval: float = 0.5
    # Bounds on one database probe.
    probe_timeout: float = 1.0
    # A primary fences itself when no report has been acknowledged for this long, until the
    # leader's Welcome says otherwise.
    fence_after: float = 4.0
    # The database as files and processes, for REJOIN (stop, pg_rewind, start as a standby).
    # Without pg_data (an agent that does not run beside its database) REJOIN is refused.
    pg_data: Path | None = None
    # Where pg_ctl, pg_rewind, pg_basebackup, ... are; empty: /usr/lib/postgresql/15/bin (or 16).
    pg_bindir: Path | None = None
    # The system user PostgreSQL's programs run as; empty: "postgres" when the agent runs as
    # root, else the agent's own user.
    pg_os_user: str = ""
    # The server log pg_ctl start writes; empty: <pg_data>.log beside the data directory.
    pg_log: Path | None = None
    # How a rejoined standby replicates: the role, and a libpq passfile holding its password
    # (readable by pg_os_user; empty: libpq's default, ~/.pgpass of that user).
    replication_user: str = "replicator"
    replication_passfile: Path | None = None
    # Where the region's capacity utilisation (fraction of capacity in use) comes from: a file
    # holding one number, which the operator's tooling rewrites, or an http:// or https:// URL
    # answering a number or {"utilization": x}. Read every report interval; empty: report 0.
    utilization_source: str = ""
    # The other regions' PostgreSQL endpoints as "region=host:port": the agent measures its
    # round-trip time to each.
    peers: tuple[str, ...] = ()
    # The other regions' agents (their listen addresses) as "region=host:port": while this
    # region's database is not a plain standby, the agent asks each of them every report
    # interval to confirm that its standby follows this primary (the failsafe that keeps the
    # primary writable through an etcd outage or a leader change). Empty: no failsafe, the
    # fence deadline rests on the leader's acknowledgements alone.
    peer_agents: tuple[str, ...] = ()
    # Where to write the fence lease for the region's fence keeper (latitude-keeper --lease),
    # which fences the database when this agent is gone or hung; its heartbeat beside it is
    # reported as the check "fence-keeper". Empty: no keeper.
    fence_lease: Path | None = None
    # host:port of the HTTP listener (Prometheus metrics at /metrics). Empty: none.
    http_address: str = ""
    # Mutual TLS (tls_ca, tls_cert, tls_key: all three or none), for the link to the
    # coordinators, the failsafe channels to peer agents and this agent's own gRPC port (which
    # then requires a client certificate from the CA). The certificate must name this agent's
    # region (latitude://region/<region>): coordinators believe the region it names, not the
    # Hello. None: plaintext.
    tls: CertFiles | None = None

    def validate(self) -> None:
        if not self.region:
            raise ConfigError("region: required (--region or LATITUDE_AGENT_REGION)")
        if not self.coordinators:
            raise ConfigError("coordinators: at least one coordinator address is needed")
        for address in self.coordinators:
            parse_host_port(address, "coordinators")
        parse_host_port(self.listen, "listen", any_port=True)
        if self.http_address:
            parse_host_port(self.http_address, "http_address", any_port=True)
        if self.advertise:
            host, _ = parse_host_port(self.advertise, "advertise")
            if host in ("0.0.0.0", "::"):
                raise ConfigError(
                    f"advertise: {self.advertise!r} is a wildcard, not an address the "
                    "coordinators can reach"
                )
        if not -90 <= self.latitude <= 90:
            raise ConfigError(f"latitude: must be within -90..90, got {self.latitude}")
        if not -180 <= self.longitude <= 180:
            raise ConfigError(f"longitude: must be within -180..180, got {self.longitude}")
        if self.capacity <= 0:
            raise ConfigError(f"capacity: must be positive, got {self.capacity}")
        if self.priority < 0:
            raise ConfigError(f"priority: must not be negative, got {self.priority}")
        if not 0 < self.db_port < 65536:
            raise ConfigError(f"db_port: {self.db_port} is not a port")
        if self.db_ssl_ca is not None and not self.db_ssl_ca.is_file():
            raise ConfigError(f"db_ssl_ca: {self.db_ssl_ca} is not a file")
        if not self.report_interval > 0 or not self.probe_timeout > 0 or not self.fence_after > 0:
            raise ConfigError("report_interval, probe_timeout and fence_after must be positive")
        if not self.replication_user:
            raise ConfigError("replication_user: must not be empty")
        check_source(self.utilization_source)
        parse_peers(self.peers, self.region)
        parse_peers(self.peer_agents, self.region, "peer_agents")
        if self.fence_lease is not None and not self.fence_lease.parent.is_dir():
            raise ConfigError(
                f"fence_lease: {self.fence_lease.parent} is not a directory (the lease is "
                "written there, for the fence keeper)"
            )
        if self.tls is not None:
            where = "advertise" if self.advertise else "listen"
            host, _ = parse_host_port(self.advertise or self.listen, where, any_port=True)
            check_tls(self.tls, Identity("agent", self.region), serves=(host, where))

    @property
    def id(self) -> str:
        return self.agent_id or f"{self.region}/{socket.gethostname()}/{os.getpid()}"


def load(file: Path | None, flags: dict) -> tuple[AgentConfig, list[dict]]:
    """The agent's settings and its raw ``[[agent.checks]]`` tables."""
    config = configuration.load(
        AgentConfig,
        section="agent",
        env_prefix="LATITUDE_AGENT_",
        file=file,
        env=os.environ,
        flags=flags,
        ignore=("checks",),
    )
    if _PASSWORD_ENV in os.environ:
        log.warning(
            "the database password comes from %s: every program the agent runs could read it "
            "there; put it in a file readable by the agent only and set db_password_file "
            "(LATITUDE_AGENT_DB_PASSWORD_FILE) instead",
            _PASSWORD_ENV,
        )
        # Not passed on: PostgreSQL's programs the agent runs get no copy of it.
        del os.environ[_PASSWORD_ENV]
    config = with_password_file(config)
    checks: list[dict] = []
    if file is not None:
        table = tomllib.loads(file.read_text()).get("agent", {})
        checks = table.get("checks", [])
        if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
            raise ConfigError(f"{file}: [[agent.checks]] must be a list of tables")
    return config, checks


def with_password_file(config: AgentConfig) -> AgentConfig:
    """``config`` with db_password read from db_password_file (unchanged without one)."""
    path = config.db_password_file
    if path is None:
        return config
    if config.db_password:
        raise ConfigError("db_password_file and db_password are both set: keep the file only")
    try:
        with path.open("rb") as source:
            mode = os.fstat(source.fileno()).st_mode
            text = source.read().decode()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"db_password_file: cannot read {path} ({err})") from err
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"db_password_file: {path} is open to other users (mode {stat.S_IMODE(mode):o}): "
            f"make it readable by its owner only (chmod 600 {path})"
        )
    password = text.removesuffix("\n").removesuffix("\r")
    if not password or "\n" in password:
        raise ConfigError(f"db_password_file: {path} must hold the password on one line")
    return replace(config, db_password=password)
