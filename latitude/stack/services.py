"""Command lines for the control plane's processes in the local stack: coordinators, agents and
the agents' fence keepers.

They run the installed programs with this interpreter, so the stack runs exactly the code
that ``pip install`` put next to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from latitude.netaddr import join_host_port
from latitude.pki import CertFiles
from latitude.stack.postgres import PostgresNode
from latitude.stack.topology import RegionSpec


def coordinator_argv(
    name: str,
    address: str,
    etcd_endpoints: list[str],
    regions: list[str],
    *,
    synchronous: bool = False,
    http_address: str = "",
    tls: CertFiles | None = None,
    etcd_tls: CertFiles | None = None,
    etcd_server_name: str = "",
    region_hosts: dict[str, list[str]] | None = None,
) -> list[str]:
    # Where each region's services are: the coordinator believes no address elsewhere.
    hosts = [f"{region}={host}" for region, names in (region_hosts or {}).items() for host in names]
    return [
        sys.executable, "-m", "coordinator.main",
        "--id", name,
        "--listen", address,
        "--etcd", ",".join(etcd_endpoints),
        "--regions", ",".join(regions),
        *(["--synchronous"] if synchronous else []),
        *(["--http-address", http_address] if http_address else []),
        *tls_flags(tls),
        *tls_flags(etcd_tls, "--etcd-"),
        *(["--etcd-server-name", etcd_server_name] if etcd_server_name else []),
        *(["--region-hosts", ",".join(hosts)] if hosts else []),
    ]  # fmt: skip


def agent_argv(
    region: RegionSpec,
    host: str,
    port: int,
    coordinators: list[str],
    database: PostgresNode,
    *,
    peers: list[PostgresNode],
    utilization_file: Path,
    peer_agents: dict[str, str],
    fence_lease: Path,
    db_user: str,
    http_address: str = "",
    tls: CertFiles | None = None,
) -> list[str]:
    return [
        sys.executable, "-m", "agent.main",
        "--region", region.name,
        "--agent-id", f"{region.name}/stack",
        "--listen", join_host_port(host, port),
        "--coordinators", ",".join(coordinators),
        "--db-host", database.host,
        "--db-port", str(database.port),
        "--db-user", db_user,
        "--latitude", str(region.latitude),
        "--longitude", str(region.longitude),
        *agent_database_flags(database, fence_lease),
        # RTT to the other regions is measured against their databases.
        "--peers", ",".join(f"{p.region}={join_host_port(p.host, p.port)}" for p in peers),
        "--utilization-source", str(utilization_file),
        # The failsafe: the other regions' agents confirm this region's primary.
        "--peer-agents", ",".join(f"{r}={a}" for r, a in peer_agents.items()),
        *(["--http-address", http_address] if http_address else []),
        *tls_flags(tls),
    ]  # fmt: skip


def agent_database_flags(database: PostgresNode, fence_lease: Path) -> list[str]:
    """What an agent that runs beside its database is told of it, for the hard fence and
    REJOIN: the native stack's agents and a compose region's (latitude.region_container)."""
    return [
        # For REJOIN: the agent stops, rewinds and starts its region's server itself.
        "--pg-data",
        str(database.data_dir),
        "--pg-log",
        str(database.log),
        # Beside the data directories, where Stack._up_postgres writes it.
        "--replication-passfile",
        str(database.data_dir.parent / "pgpass"),
        # Where the region's fence keeper (keeper_argv) reads the deadline.
        "--fence-lease",
        str(fence_lease),
    ]


def tls_flags(files: CertFiles | None, prefix: str = "--tls-") -> list[str]:
    """--tls-ca/--tls-cert/--tls-key (or --etcd-...) for a certificate; none in plaintext.
    Paths only: a key never travels on a command line."""
    if files is None:
        return []
    return [
        f"{prefix}ca",
        str(files.ca),
        f"{prefix}cert",
        str(files.cert),
        f"{prefix}key",
        str(files.key),
    ]


def keeper_argv(region: RegionSpec, database: PostgresNode, fence_lease: Path) -> list[str]:
    # Python's own module runner, not the console script: the stack runs the code beside it.
    return [
        sys.executable, "-m", "agent.keeper",
        "--region", region.name,
        "--pg-data", str(database.data_dir),
        "--lease", str(fence_lease),
    ]  # fmt: skip


def http_port_name(component: str) -> str:
    """The state file's name for a process's HTTP port ("http-coordinator-1")."""
    return f"http-{component}"


def port_owner(port_name: str) -> str:
    """The process a state file's port belongs to: "etcd-1.peer" and "etcd-1.client" to
    etcd-1, "http-coordinator-1" to coordinator-1, "postgres-us-east-1" to itself."""
    return port_name.split(".", 1)[0].removeprefix("http-")


def agent_password_file(stack_dir: Path) -> Path:
    """The agents' database password, one line, 0600 (latitude.stack.state.write_private)."""
    return stack_dir / "agent-db-password"


def agent_env(password_file: Path, *, db_ssl_ca: Path | None = None) -> dict[str, str]:
    """Where the password is, not the password: a process's environment is inherited by every
    program it runs and readable in /proc by its user (and root), its argv by everyone. With
    the stack's PostgreSQL on TLS, the CA that the agent verifies other regions' servers with
    (latitude.stack.postgres.tls_ca)."""
    env = {"LATITUDE_AGENT_DB_PASSWORD_FILE": str(password_file)}
    if db_ssl_ca is not None:
        env["LATITUDE_AGENT_DB_SSL_CA"] = str(db_ssl_ca)
    return env
