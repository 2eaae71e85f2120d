"""The local stack's settings."""

from __future__ import annotations

import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from latitude.errors import ConfigError, MissingBinaryError

# Debian installs PostgreSQL's server programs here, outside PATH.
_PG_BINDIR_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")
_PG_PROGRAMS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")


@dataclass(frozen=True, slots=True)
class StackConfig:
    # Where the stack keeps its state file, data directories and logs.
    dir: Path = Path(".latitude")
    # The address every server listens on. Chaos tests give regions their own addresses.
    host: str = "127.0.0.1"
    # First of a run of consecutive ports; 0 picks free ports.
    port_base: int = 0
    etcd_bin: str = "etcd"
    # Directory holding initdb, pg_ctl, pg_basebackup, postgres; empty means find it.
    pg_bindir: Path | None = None
    # The system user PostgreSQL runs as when the stack is started by root.
    pg_user: str = "postgres"
    # How long ``up`` waits for every region to stream before giving up.
    ready_timeout: float = 60.0
    # Start the coordinators and agents too; false gives bare etcd and PostgreSQL (for tests
    # that drive the databases by hand, and for running a control plane from elsewhere).
    control_plane: bool = True
    # Run the coordinators with synchronous replication (no acknowledged commit lost).
    synchronous: bool = False
    # Each region, and the control plane, in a network namespace of its own joined by a
    # bridge (latitude.stack.network), so that tests can cut links between them. Root only.
    netns: bool = False
    # Mutual TLS between every component, with a local CA and a certificate per component in
    # <dir>/tls (latitude.stack.tls). None: as the stack already runs (plaintext for a new one).
    tls: bool | None = None
    # HAProxy beside the stack (latitude.stack.haproxy): a write and a read address following
    # the agents' health endpoints. A stack that has it keeps it until ``down``.
    haproxy: bool = False
    haproxy_bin: str = "haproxy"

    def validate(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError as err:
            raise ConfigError(f"host: {self.host!r} is not an IP address") from err
        if not (self.port_base == 0 or 1024 <= self.port_base <= 65000):
            raise ConfigError(f"port_base: {self.port_base} is outside 1024-65000 (or 0 for free)")
        if self.netns and not self.runs_as_root:
            raise ConfigError("netns: network namespaces need root (run as root or drop it)")
        if self.haproxy and self.netns:
            raise ConfigError(
                "haproxy: not with netns (HAProxy runs in the root namespace; the regions' "
                "namespaces are for partition tests)"
            )
        if not self.ready_timeout > 0:
            raise ConfigError(f"ready_timeout: must be positive, got {self.ready_timeout}")

    @property
    def runs_as_root(self) -> bool:
        return os.geteuid() == 0

    @property
    def db_user(self) -> str | None:
        """The user PostgreSQL's programs run as: ``pg_user`` under root, else ourselves."""
        return self.pg_user if self.runs_as_root else None

    def etcd_path(self) -> str:
        path = shutil.which(self.etcd_bin)
        if path is None:
            raise MissingBinaryError(
                f"etcd not found ({self.etcd_bin!r} is not on PATH): install Debian's "
                "etcd-server package (apt-get install etcd-server) or set LATITUDE_STACK_ETCD_BIN"
            )
        return path

    def pg_programs(self) -> dict[str, Path]:
        candidates = (
            [self.pg_bindir] if self.pg_bindir else [Path(p) for p in _PG_BINDIR_CANDIDATES]
        )
        for bindir in candidates:
            programs = {name: bindir / name for name in _PG_PROGRAMS}
            if all(os.access(p, os.X_OK) for p in programs.values()):
                return programs
        where = ", ".join(str(c) for c in candidates)
        raise MissingBinaryError(
            f"PostgreSQL server programs ({', '.join(_PG_PROGRAMS)}) not found in {where}: "
            "install Debian's postgresql-15 package (apt-get install postgresql-15) "
            "or set LATITUDE_STACK_PG_BINDIR"
        )
