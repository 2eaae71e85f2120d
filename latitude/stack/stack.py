"""The native local stack behind ``latitude up``: etcd x3 and PostgreSQL x3, one per region.

``up`` is idempotent: it starts whatever is not running, so it both brings up a new stack and
recovers one after a crash (a killed process is restarted on its recorded port and data; a data
directory that was never completed is made again). A primary's data directory that existed
before this ``up`` starts fenced: only the control plane's leader knows whether it is still
the primary (it lifts the fence) or an old one (it makes it rejoin as a standby). The test
suite drives the same class.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.demotion import fence_cause
from latitude import admin_client
from latitude.errors import PortInUseError, StackError
from latitude.netaddr import join_host_port
from latitude.pki import CertFiles
from latitude.program import all_or_none
from latitude.stack import etcd, etcd_auth, haproxy, ports, processes, services, tls
from latitude.stack.config import StackConfig
from latitude.stack.etcd import EtcdMember, MemberHealth
from latitude.stack.network import Layout, Network, machine_addresses
from latitude.stack.postgres import NodeStatus, Postgres, PostgresNode, cluster_status, tls_ca
from latitude.stack.processes import ProcessRecord
from latitude.stack.progress import QUIET, Progress
from latitude.stack.services import http_port_name, port_owner
from latitude.stack.state import StackState, exclusive, state_path, write_private
from latitude.stack.topology import DEFAULT_TOPOLOGY, DNS_ZONE, Topology
from latitude.v1 import admin_pb2, common_pb2

_POLL = 0.05
# The coordinators' key prefix (their default etcd_prefix): etcd's role for them covers it.
ETCD_PREFIX = "/latitude"


@dataclass(frozen=True, slots=True)
class StackStatus:
    dir: Path
    regions: list[NodeStatus]
    etcd: list[MemberHealth]
    processes: dict[str, bool]  # name -> running
    # The control plane's view (from any coordinator); None when none answered.
    cluster: admin_pb2.ClusterStatus | None = None
    cluster_error: str = ""
    # Each coordinator's and agent's HTTP listener (metrics; the dashboard on coordinators).
    http: dict[str, str] = field(default_factory=dict)
    # The TLS mode (CA fingerprint and expiry, certificates near expiry); None in plaintext.
    tls: tls.Summary | None = None
    # Each coordinator's DNS responder (UDP and TCP), serving DNS_ZONE.
    dns: dict[str, str] = field(default_factory=dict)
    # HAProxy's listeners ("write", "read", "stats" -> host:port); empty without HAProxy.
    haproxy: dict[str, str] = field(default_factory=dict)

    @property
    def streaming(self) -> bool:
        primaries = [r for r in self.regions if r.role == "primary"]
        standbys = [r for r in self.regions if r.role != "primary"]
        return (
            len(primaries) == 1
            and all(s.streaming for s in standbys)
            and all(m.healthy for m in self.etcd)
        )

    @property
    def ready(self) -> bool:
        """Every region streams, the primary takes writes, and a leader sees every region
        HEALTHY."""
        return (
            self.streaming
            and not any(r.fenced for r in self.regions)
            and self.cluster is not None
            and bool(self.cluster.leader.leader_id)
            and len(self.cluster.regions) == len(self.regions)
            and all(r.state == common_pb2.REGION_STATE_HEALTHY for r in self.cluster.regions)
        )


class Stack:
    def __init__(
        self,
        config: StackConfig,
        topology: Topology = DEFAULT_TOPOLOGY,
        progress: Progress = QUIET,
    ) -> None:
        self.config = config
        self.topology = topology
        self.dir = config.dir.absolute()
        self._progress = progress
        self._network: Network | None = None

    # -- what the stack is made of ---------------------------------------------------------

    def component_names(self, state: StackState | None = None) -> list[str]:
        """Every process of the stack, in the order they start (``down`` stops in reverse)."""
        names = [
            *self.topology.etcd_members,
            *(f"postgres-{r.name}" for r in (self.topology.primary, *self.topology.standbys)),
        ]
        if self.config.control_plane:
            names += [
                *self.topology.coordinators,
                # A keeper before its agent: it fences for the agent once its lease passes.
                *(f"keeper-{r.name}" for r in self.topology.regions),
                *(f"agent-{r.name}" for r in self.topology.regions),
            ]
        if self.has_haproxy(state):  # last: it follows the agents, and ``down`` drains it first
            names.append(haproxy.COMPONENT)
        return names

    def has_haproxy(self, state: StackState | None = None) -> bool:
        """Whether HAProxy is part of this stack: asked for, or already in its state file."""
        on = self.config.haproxy or (state is not None and haproxy.WRITE_PORT in state.ports)
        return on and self.config.control_plane

    def _port_names(self, state: StackState | None = None) -> list[str]:
        names = []
        for member in self.topology.etcd_members:
            names += [f"{member}.client", f"{member}.peer"]
        names += [f"postgres-{r.name}" for r in self.topology.regions]
        names += list(self.topology.coordinators)
        names += [f"agent-{r.name}" for r in self.topology.regions]
        names += [http_port_name(n) for n in self.topology.coordinators]
        names += [http_port_name(f"agent-{r.name}") for r in self.topology.regions]
        names += [f"{n}.dns" for n in self.topology.coordinators]
        if self.has_haproxy(state):
            names += haproxy.PORT_NAMES
        return names

    def address_of(self, state: StackState, component: str) -> str:
        """The address ``component`` (a process name, e.g. "postgres-eu-west-1") listens on:
        its party's in the stack's network, else the stack's host."""
        network = self.network(state)
        return network.layout.address_of(component) if network else state.host

    def http_address(self, state: StackState, component: str) -> str:
        """host:port of a coordinator's or agent's HTTP listener (metrics, dashboard)."""
        return join_host_port(
            self.address_of(state, component), state.ports[http_port_name(component)]
        )

    def http_addresses(self, state: StackState) -> dict[str, str]:
        """Every HTTP listener the stack runs, by process name."""
        names = [*self.topology.coordinators, *(f"agent-{r.name}" for r in self.topology.regions)]
        return {n: self.http_address(state, n) for n in names if http_port_name(n) in state.ports}

    def dns_address(self, state: StackState, coordinator: str) -> str:
        """host:port of a coordinator's DNS responder (UDP and TCP; the port's state-file name
        is "coordinator-1.dns", so that it counts as the coordinator's)."""
        return join_host_port(
            self.address_of(state, coordinator), state.ports[f"{coordinator}.dns"]
        )

    def dns_addresses(self, state: StackState) -> dict[str, str]:
        """Every DNS responder the stack runs, by coordinator."""
        names = [n for n in self.topology.coordinators if f"{n}.dns" in state.ports]
        return {n: self.dns_address(state, n) for n in names}

    def network(self, state: StackState | None = None) -> Network | None:
        """The stack's network namespaces and the links cut between them; None when the
        stack runs in the root namespace. The same object for the life of this Stack, so that
        the cuts it made are known."""
        state = state or self.state()
        if state.network is None:
            return None
        layout = Layout.from_json(state.network)
        if self._network is None or self._network.layout != layout:
            self._network = Network(layout)
        return self._network

    def netns_of(self, state: StackState, component: str) -> str | None:
        network = self.network(state)
        return network.layout.party_of(component).netns if network else None

    def coordinator_addresses(self, state: StackState) -> list[str]:
        return [
            join_host_port(self.address_of(state, c), state.ports[c])
            for c in self.topology.coordinators
        ]

    def etcd_members(self, state: StackState) -> list[EtcdMember]:
        return [
            EtcdMember(
                m, self.address_of(state, m), state.ports[f"{m}.client"], state.ports[f"{m}.peer"]
            )
            for m in self.topology.etcd_members
        ]

    def postgres_node(self, state: StackState, region: str) -> PostgresNode:
        self.topology.region(region)
        return PostgresNode(
            region,
            self.address_of(state, f"postgres-{region}"),
            state.ports[f"postgres-{region}"],
            self.dir / "postgres" / region,
            self.dir / "logs" / f"postgres-{region}.log",
        )

    def postgres_nodes(self, state: StackState) -> list[PostgresNode]:
        return [self.postgres_node(state, r.name) for r in self.topology.regions]

    def utilization_file(self, region: str) -> Path:
        """The region's capacity utilisation as its agent reads it (one number, "0" at first):
        what an operator's tooling would write, and a test may."""
        return self.dir / self.topology.region(region).name / "utilization"

    def cert_specs(self, state: StackState) -> list[tls.CertSpec]:
        """Every certificate the stack runs with in TLS mode (latitude.stack.tls.plan)."""
        return tls.plan(self.topology, lambda component: self.address_of(state, component))

    def client_tls(self, state: StackState, role: str = "operator") -> CertFiles | None:
        """The ``operator`` or ``reader`` certificate for a client of this stack (the CLI, a
        test); None when the stack runs in plaintext."""
        if role not in tls.CLIENT_ROLES:
            raise ValueError(f"no client certificate for role {role!r}")
        return state.cert_files(role)

    def etcd_certs(self, state: StackState) -> tls.EtcdCerts | None:
        """etcd's server certificates and the coordinators' and setup's client certificates
        (CN latitude, CN root) in TLS mode; None in plaintext."""
        if state.tls_dir is None:
            return None
        return tls.etcd_certs(state.tls_dir, self.topology)

    def _etcd_client_tls(self, state: StackState) -> CertFiles | None:
        certs = self.etcd_certs(state)
        return certs.client if certs else None

    def state(self) -> StackState:
        """The running stack's state; StackError when there is none."""
        state = StackState.load(self.dir)
        if state is None:
            raise StackError(f"no latitude stack in {self.dir} (no state file): run `latitude up`")
        return state

    # -- up --------------------------------------------------------------------------------

    async def up(self) -> tuple[StackState, bool]:
        """Start whatever is not running; (state, whether anything had to be started)."""
        if self.config.haproxy:  # missing, it is named before anything starts
            haproxy.binary(self.config.haproxy_bin)
        etcd_path = self.config.etcd_path()
        postgres = Postgres(self.config.pg_programs(), self.config.db_user)
        existed = self.dir.exists()
        try:
            with exclusive(self.dir):
                return await self._up_locked(etcd_path, postgres)
        except BaseException:
            if not existed and not state_path(self.dir).exists():
                shutil.rmtree(self.dir, ignore_errors=True)
            raise

    async def _up_locked(self, etcd_path: str, postgres: Postgres) -> tuple[StackState, bool]:
        state, created = self._load_or_create()
        self._adopt_postmasters(state)
        running = {n: processes.is_alive(r) for n, r in state.processes.items()}
        network = self.network(state)
        if network is not None and not network.exists():
            # New, or gone (a reboot, a removed namespace): what still runs of the stack is
            # cut off from everything and is started again once the network is back.
            for name in reversed(self.component_names(state)):
                if running.get(name):
                    await self._stop(state.processes[name])
            running = {}
            await network.create()
            self._progress(
                "network",
                f"namespaces and bridge {network.layout.bridge} on "
                f"{network.layout.subnet}; the observer is {network.layout.observer}",
            )
        if all(running.get(n, False) for n in self.component_names(state)):
            return state, False
        started: list[ProcessRecord] = []
        try:
            self._ensure_certs(state)
            self._check_ports(state, running)
            await postgres.check_access(self.dir)
            await all_or_none(
                self._up_etcd(state, etcd_path, running, started),
                self._up_postgres(state, postgres, running, started),
            )
            await self._up_control_plane(state, running, started)
            await self._wait_ready(state)
            await self._up_haproxy(state, running, started)
        except BaseException:
            await asyncio.shield(self._undo(state, started, created))
            if created and network is not None:
                network.destroy()
            raise
        return state, True

    def _load_or_create(self) -> tuple[StackState, bool]:
        try:
            state = StackState.load(self.dir)
        except StackError as err:
            raise StackError(f"{err}; {self._leftovers_advice()}") from err
        if state is not None:
            if state.host != self.config.host:
                raise StackError(
                    f"the stack in {self.dir} listens on {state.host}, not {self.config.host}: "
                    "run `latitude down` first to change its address"
                )
            if self.config.netns and state.network is None:
                raise StackError(
                    f"the stack in {self.dir} runs without network namespaces: "
                    "run `latitude down` first to give it some"
                )
            if self.config.tls is not None and self.config.tls != bool(state.tls):
                now, wanted = ("TLS", "plaintext") if state.tls else ("plaintext", "TLS")
                raise StackError(
                    f"the stack in {self.dir} runs in {now}, not {wanted}: run `latitude down` "
                    f"first to bring it up in {wanted}"
                )
            missing = [n for n in self._port_names(state) if n not in state.ports]
            if missing:  # a stack made by an older latitude: give the new listeners ports
                state.ports.update(ports.allocate(self.config.host, missing))
                state.save()
            return state, False
        # A CA put in <dir>/tls beforehand (ca.crt and ca.key) is the stack's CA: ``up --tls``
        # issues every certificate from it.
        leftovers = [p.name for p in self.dir.iterdir() if p.name != "lock" and not _provided_ca(p)]
        if leftovers:
            raise StackError(
                f"{self.dir} holds {', '.join(sorted(leftovers))} but no state file: "
                f"it is not a stack latitude can recover; {self._leftovers_advice()}"
            )
        # In namespaces of their own the ports only need to be distinct: any free ones do.
        chosen = ports.allocate(self.config.host, self._port_names(), self.config.port_base)
        for name in [n for n in chosen if n.endswith(".dns")]:
            try:  # a DNS responder needs its port for UDP too
                ports.check_udp_free(self.config.host, {name: chosen[name]})
            except PortInUseError:
                chosen[name] = ports.allocate(self.config.host, [name])[name]
        state = StackState(dir=self.dir, host=self.config.host, ports=chosen)
        if self.config.netns:
            regions = [r.name for r in self.topology.regions]
            layout = Layout.plan(state.cluster_token, regions, machine_addresses())
            state.network = layout.to_json()
        if self.config.tls:
            state.tls = tls.state_record(self.dir / tls.TLS_DIR, self.cert_specs(state))
        for sub in ("etcd", "logs"):
            (self.dir / sub).mkdir(exist_ok=True)
        state.save()
        mode = "TLS" if state.tls else "plaintext"
        self._progress("stack", f"new stack in {self.dir} on {state.host} ({mode})")
        return state, True

    def _ensure_certs(self, state: StackState) -> None:
        """In TLS mode, the CA and every certificate the stack needs: those already there are
        kept (a restart keeps identities), missing or expired ones issued."""
        if state.tls_dir is None:
            return
        specs = self.cert_specs(state)
        issued = tls.ensure(state.tls_dir, specs)
        state.tls = tls.state_record(state.tls_dir, specs)
        state.save()
        if issued:
            self._progress("tls", f"CA in {state.tls_dir}; issued {', '.join(issued)}")

    def _leftovers_advice(self) -> str:
        pids = processes.find_by_cmdline(str(self.dir) + "/")
        kill = f"stop its processes (kill {' '.join(map(str, pids))}), then " if pids else ""
        return f"{kill}remove it (rm -rf {self.dir})"

    def _adopt_postmasters(self, state: StackState) -> None:
        """An agent may restart its region's PostgreSQL (to rejoin it as a standby): the
        postmaster running on the region's data directory is the stack's, whatever its pid."""
        for node in self.postgres_nodes(state):
            try:
                pid = int((node.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            except (FileNotFoundError, ValueError, PermissionError):
                continue
            known = state.processes.get(node.name)
            if known is not None and known.pid == pid:
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(node.data_dir).encode() in cmdline and processes.start_ticks(pid):
                state.processes[node.name] = processes.record_for(node.name, pid)
                state.save()

    def _check_ports(self, state: StackState, running: dict[str, bool]) -> None:
        """The ports of every component about to start must still be free (in namespaces of
        the stack's own they are)."""
        if state.network is not None:
            return
        wanted = {
            name: port
            for name, port in state.ports.items()
            if not running.get(port_owner(name), False)
        }
        ports.check_free(state.host, wanted)
        ports.check_udp_free(state.host, {n: p for n, p in wanted.items() if n.endswith(".dns")})

    async def _up_etcd(
        self, state: StackState, etcd_path: str, running: dict[str, bool],
        started: list[ProcessRecord],
    ) -> None:  # fmt: skip
        members = self.etcd_members(state)
        if not all(m.name in state.initialized for m in members):
            # A cluster that never formed cannot be half-restarted: start it afresh.
            for member in members:
                if running.get(member.name):
                    await processes.stop(state.processes[member.name])
                running[member.name] = False
                shutil.rmtree(self.dir / "etcd" / member.name, ignore_errors=True)
        for member in members:
            if running.get(member.name):
                continue
            certs = self.etcd_certs(state)
            argv = etcd.argv(
                etcd_path,
                member,
                members,
                self.dir / "etcd" / member.name,
                state.cluster_token,
                tls=certs.members[member.name] if certs else None,
            )
            record = await processes.spawn_daemon(
                member.name,
                argv,
                log=self.dir / "logs" / f"{member.name}.log",
                netns=self.netns_of(state, member.name),
            )
            self._record(state, record, started)
            self._progress(member.name, f"started (pid {record.pid}) on {member.endpoint}")
        await self._poll(
            lambda: self._etcd_healthy(state), "the etcd cluster to elect a leader", state
        )
        state.initialized.update(m.name for m in members)
        state.save()
        self._progress("etcd", f"cluster healthy ({len(members)}/{len(members)} members)")
        certs = self.etcd_certs(state)
        if certs is not None:
            # Every start: a half-done setup is finished, a done one left as it is.
            await etcd_auth.enable_auth([m.endpoint for m in members], certs.root, ETCD_PREFIX)
            self._progress(
                "etcd",
                f"auth on: only CN {tls.ETCD_CLIENT_USER} may touch "
                f"{ETCD_PREFIX}/, only with a certificate from the stack's CA",
            )

    async def _etcd_healthy(self, state: StackState) -> bool:
        health = await etcd.cluster_health(
            self.etcd_members(state), timeout=0.5, tls=self._etcd_client_tls(state)
        )
        return all(h.healthy for h in health)

    async def _up_postgres(
        self, state: StackState, postgres: Postgres, running: dict[str, bool],
        started: list[ProcessRecord],
    ) -> None:  # fmt: skip
        postgres.prepare_dir(self.dir / "postgres", mode=0o700)
        primary = self.postgres_node(state, self.topology.primary.name)
        fresh = primary.name not in state.initialized
        if fresh:
            self._progress(primary.name, "initdb (primary)")
            await self._in_netns(postgres, state, primary).init_primary(
                primary, state.superuser_password
            )
            self._mark_initialized(state, primary.name)
        if not running.get(primary.name):
            await self._start_postgres(state, postgres, primary, started, fresh=fresh)
        passfile = self.dir / "postgres" / "pgpass"
        postgres.prepare_file(passfile, f"*:*:*:replicator:{state.replication_password}\n")
        if not all(f"postgres-{r.name}" in state.initialized for r in self.topology.standbys):
            # Still being set up, so the first primary is the primary: no failover has run
            # (the control plane starts once every standby is made). Later, it may be a
            # standby, or an old primary that must not be written.
            await postgres.create_replication(
                primary,
                state.superuser_password,
                state.replication_password,
                [r.slot_name for r in self.topology.standbys],
            )
            await postgres.create_agent_role(
                primary, state.superuser_password, state.agent_password
            )
        await asyncio.gather(
            *(
                self._up_standby(state, postgres, region.name, primary, passfile, running, started)
                for region in self.topology.standbys
            )
        )

    async def _up_standby(
        self, state: StackState, postgres: Postgres, region: str, primary: PostgresNode,
        passfile: Path, running: dict[str, bool], started: list[ProcessRecord],
    ) -> None:  # fmt: skip
        node = self.postgres_node(state, region)
        if node.name not in state.initialized:
            self._progress(node.name, f"base backup from {primary.region}")
            await self._in_netns(postgres, state, node).base_backup(
                node, primary, self.topology.region(region).slot_name, passfile
            )
            self._mark_initialized(state, node.name)
        if not running.get(node.name):
            await self._start_postgres(state, postgres, node, started, fresh=False)

    async def _start_postgres(
        self, state: StackState, postgres: Postgres, node: PostgresNode,
        started: list[ProcessRecord], *, fresh: bool,
    ) -> None:  # fmt: skip
        """Start a region's server; a primary fenced unless ``fresh`` (made by this up)."""
        # A demoted primary holds standby.signal too: it is still the primary, fenced.
        primary = (
            not (node.data_dir / "standby.signal").exists()
            or fence_cause(node.data_dir) is not None
        )
        fenced = primary and not fresh
        if (self.dir / "tls" / "ca.crt").exists():  # `latitude up --tls`: the stack's CA
            postgres.enable_tls(node, self.dir / "tls")
        if fenced:
            postgres.fence(node)
        record = await self._in_netns(postgres, state, node).start(node, self.config.ready_timeout)
        self._record(state, record, started)
        role = "primary" if primary else "standby"
        self._progress(node.name, f"{role} accepting connections on {node.address}" + (
            "; fenced until the leader lifts it, or makes it rejoin as a standby" * fenced
        ))  # fmt: skip

    async def _up_control_plane(
        self, state: StackState, running: dict[str, bool], started: list[ProcessRecord]
    ) -> None:
        if not self.config.control_plane:
            return
        etcd_endpoints = [m.endpoint for m in self.etcd_members(state)]
        hosts = {m.host for m in self.etcd_members(state)}
        # Members on several hosts are verified against the one name all their certificates
        # carry; on one host, against that host.
        etcd_server_name = tls.ETCD_SERVER_NAME if state.tls and len(hosts) > 1 else ""
        regions = [r.name for r in self.topology.regions]
        coordinators = self.coordinator_addresses(state)
        # A region's agent and database are where its processes listen.
        region_hosts = {
            r: sorted(
                {self.address_of(state, f"postgres-{r}"), self.address_of(state, f"agent-{r}")}
            )
            for r in regions
        }
        for name, address in zip(self.topology.coordinators, coordinators, strict=True):
            if not running.get(name):
                argv = services.coordinator_argv(
                    name, address, etcd_endpoints, regions, synchronous=self.config.synchronous,
                    http_address=self.http_address(state, name), tls=state.cert_files(name),
                    region_hosts=region_hosts, etcd_tls=self._etcd_client_tls(state),
                    etcd_server_name=etcd_server_name,
                )  # fmt: skip
                argv += ["--dns-address", self.dns_address(state, name), "--dns-zone", DNS_ZONE]
                await self._spawn(state, name, argv, started, {}, f"serving on {address}")
        for region in self.topology.regions:
            node = self.postgres_node(state, region.name)
            lease = self.dir / region.name / "fence.lease"
            lease.parent.mkdir(exist_ok=True)
            keeper = f"keeper-{region.name}"
            if not running.get(keeper):
                argv = services.keeper_argv(region, node, lease)
                await self._spawn(state, keeper, argv, started, {}, f"keeping {node.name}'s fence")
            name = f"agent-{region.name}"
            if not running.get(name):
                utilization = self.utilization_file(region.name)
                if not utilization.exists():
                    utilization.write_text("0\n")
                peers = [n for n in self.postgres_nodes(state) if n.region != region.name]
                peer_agents = {
                    r.name: join_host_port(
                        self.address_of(state, f"agent-{r.name}"), state.ports[f"agent-{r.name}"]
                    )
                    for r in self.topology.regions
                    if r.name != region.name
                }
                argv = services.agent_argv(
                    region, self.address_of(state, name), state.ports[name], coordinators, node,
                    peers=peers, utilization_file=utilization, peer_agents=peer_agents,
                    fence_lease=lease, http_address=self.http_address(state, name),
                    db_user=state.agent_user,
                    tls=state.cert_files(name),
                )  # fmt: skip
                password_file = services.agent_password_file(self.dir)
                write_private(password_file, f"{state.agent_password}\n".encode())
                env = services.agent_env(password_file, db_ssl_ca=tls_ca(node))
                await self._spawn(state, name, argv, started, env, f"reporting on {region.name}")

    async def _up_haproxy(
        self, state: StackState, running: dict[str, bool], started: list[ProcessRecord]
    ) -> None:
        """HAProxy, configured from deploy/haproxy/haproxy.cfg for the stack's ports; ready
        once its write listener has the write region's database UP."""
        if not self.has_haproxy(state) or running.get(haproxy.COMPONENT):
            return
        program = haproxy.binary(self.config.haproxy_bin)
        listen = haproxy.addresses(state.host, state.ports)
        backends = [
            haproxy.Backend(
                r.name,
                self.postgres_node(state, r.name).address,
                self.address_of(state, f"agent-{r.name}"),
                state.ports[http_port_name(f"agent-{r.name}")],
            )
            for r in self.topology.regions
        ]
        config = haproxy.write_config(self.dir / "haproxy", listen, backends)
        await haproxy.check(program, config)
        what = f"writes on {listen['write']}, reads on {listen['read']}, stats {listen['stats']}"
        await self._spawn(
            state, haproxy.COMPONENT, haproxy.argv(program, config), started, {}, what
        )
        log = self.dir / "logs" / f"{haproxy.COMPONENT}.log"
        routing = haproxy.WriteRouting(state.processes[haproxy.COMPONENT], listen["stats"], log)
        await self._poll(routing.found, "HAProxy to find the primary (GET /primary)", state)
        self._progress(haproxy.COMPONENT, f"routing writes to {routing.server}")

    def _in_netns(self, postgres: Postgres, state: StackState, node: PostgresNode) -> Postgres:
        netns = self.netns_of(state, node.name)
        return postgres if netns is None else _NamespacedPostgres(postgres, netns)

    async def _spawn(
        self, state: StackState, name: str, argv: list[str], started: list[ProcessRecord],
        env: dict[str, str], what: str,
    ) -> None:  # fmt: skip
        record = await processes.spawn_daemon(
            name,
            argv,
            log=self.dir / "logs" / f"{name}.log",
            env=env,
            netns=self.netns_of(state, name),
        )
        self._record(state, record, started)
        self._progress(name, f"started (pid {record.pid}), {what}")

    async def _wait_ready(self, state: StackState) -> None:
        async def streaming() -> bool:
            return (await self.status_of(state)).streaming

        async def healthy() -> bool:
            return (await self.status_of(state)).ready

        await self._poll(streaming, "every standby to stream from the primary", state)
        self._progress("stack", "every region streaming")
        if not self.config.control_plane:
            return
        await self._poll(healthy, "a coordinator leader to see every region HEALTHY", state)

        async def every_coordinator() -> bool:
            for address in self.coordinator_addresses(state):
                try:
                    await admin_client.cluster_status(
                        [address], 1.0, tls=self.client_tls(state, "reader")
                    )
                except admin_client.NoCoordinator:
                    return False
            return True

        # A coordinator restarted by this up may still be starting while the others lead.
        await self._poll(every_coordinator, "every coordinator to answer", state)
        self._progress("stack", "ready: leader elected, every region HEALTHY")

    async def _poll(self, check: Callable[[], Awaitable[bool]], what: str, state: StackState):
        deadline = time.monotonic() + self.config.ready_timeout
        while not await check():
            if time.monotonic() > deadline:
                raise StackError(
                    f"gave up after {self.config.ready_timeout:.0f} s waiting for {what}; "
                    f"logs are in {self.dir / 'logs'} (`latitude up` retries, "
                    "`latitude down` removes the stack)"
                )
            await asyncio.sleep(_POLL)

    def _record(self, state: StackState, record: ProcessRecord, started: list) -> None:
        state.processes[record.name] = record
        started.append(record)
        state.save()

    def _mark_initialized(self, state: StackState, name: str) -> None:
        state.initialized.add(name)
        state.save()

    async def _undo(self, state: StackState, started: list[ProcessRecord], created: bool) -> None:
        """A failed ``up`` leaves nothing running that it started. A new stack that failed
        before starting anything is forgotten; otherwise its directory stays, logs included,
        for ``up`` to retry or ``down`` to remove."""
        for record in reversed(started):
            await self._stop(record)
        if created and not started:
            shutil.rmtree(self.dir, ignore_errors=True)
        elif state.path.exists():
            state.save()

    # -- down ------------------------------------------------------------------------------

    async def down(self) -> list[str]:
        """Stop every process of the stack and remove its directory; the names stopped."""
        if not state_path(self.dir).exists():
            raise StackError(f"nothing to stop: no latitude stack in {self.dir} (no state file)")
        with exclusive(self.dir):
            try:
                state = self.state()
            except StackError as err:
                raise StackError(f"{err}; {self._leftovers_advice()}") from err
            self._adopt_postmasters(state)
            stopped = []
            for name in reversed(self.component_names(state)):
                record = state.processes.get(name)
                if record is not None and processes.is_alive(record):
                    await self._stop(record)
                    self._progress(name, f"stopped (pid {record.pid})")
                    stopped.append(name)
            network = self.network(state)
            if network is not None:
                network.destroy()
                self._progress("network", f"removed {network.layout.bridge} and its namespaces")
        shutil.rmtree(self.dir, ignore_errors=True)
        return stopped

    async def _stop(self, record: ProcessRecord) -> None:
        # SIGINT is PostgreSQL's fast shutdown: no waiting for clients to disconnect.
        sig = signal.SIGINT if record.name.startswith("postgres-") else signal.SIGTERM
        await processes.stop(record, sig=sig, grace=30.0)

    # -- certificates ----------------------------------------------------------------------

    async def renew_certs(self, days: int = 365) -> list[str]:
        """Issue every certificate again from the stack's CA, then restart each process that
        runs with one, one at a time, so that the cluster keeps a leader and its regions keep
        reporting: etcd members (the cluster healthy again before the next), coordinators
        (each answering with a leader known before the next), then agents (the stack ready
        again before the next). The names restarted."""
        with exclusive(self.dir):
            state = self.state()
            if state.tls_dir is None:
                raise StackError(
                    f"the stack in {self.dir} runs in plaintext and has no certificates: "
                    "`latitude down`, then `latitude up --tls`"
                )
            renewed = tls.renew(state.tls_dir, self.cert_specs(state), days)
            self._progress(
                "tls", f"issued {len(renewed)} certificates valid {days} days from {state.tls_dir}"
            )
            names = [*self.topology.etcd_members, *self.topology.coordinators]
            names += [f"agent-{r.name}" for r in self.topology.regions]
            restarted = []
            for name in names:
                record = state.processes.get(name)
                if record is None or not _runs_with_certificate(record, state.tls_dir):
                    continue  # not running (``up`` starts it with the new one), or plaintext
                await self._restart(state, record)
                restarted.append(name)
            return restarted

    async def _restart(self, state: StackState, record: ProcessRecord) -> None:
        name = record.name
        await self._stop(record)
        stopped_at = time.time()
        self._progress(name, f"stopped (pid {record.pid}) to load its new certificate")
        running = {n: processes.is_alive(r) for n, r in state.processes.items()}
        if name in self.topology.etcd_members:
            await self._up_etcd(state, self.config.etcd_path(), running, [])
        elif name in self.topology.coordinators:
            await self._up_control_plane(state, running, [])
            address = self.coordinator_addresses(state)[self.topology.coordinators.index(name)]

            async def answers() -> bool:
                try:
                    status = await admin_client.cluster_status(
                        [address], 1.0, tls=self.client_tls(state, "reader")
                    )
                except admin_client.NoCoordinator:
                    return False
                return bool(status.leader.leader_id)

            await self._poll(answers, f"{name} to answer with its new certificate", state)
        else:
            await self._up_control_plane(state, running, [])
            region = name.removeprefix("agent-")

            async def reporting() -> bool:
                # A report received after the old process was gone is the new one's.
                status = await self.status_of(state)
                if not status.ready:
                    return False
                held = [r for r in status.cluster.regions if r.region == region]
                return any(
                    r.agent_connected and r.last_report_at.ToNanoseconds() / 1e9 > stopped_at
                    for r in held
                )

            await self._poll(reporting, f"{name} to report again, its region HEALTHY", state)
        self._progress(name, "back, with its new certificate")

    # -- status and faults -----------------------------------------------------------------

    async def status(self) -> StackStatus:
        return await self.status_of(self.state())

    async def status_of(self, state: StackState) -> StackStatus:
        self._adopt_postmasters(state)
        regions, members, (cluster, error) = await asyncio.gather(
            cluster_status(self.postgres_nodes(state), state.superuser_password),
            etcd.cluster_health(self.etcd_members(state), tls=self._etcd_client_tls(state)),
            self._cluster(state),
        )
        alive = {n: processes.is_alive(r) for n, r in state.processes.items()}
        http = self.http_addresses(state)
        summary = None
        if state.tls_dir is not None:
            now = datetime.datetime.now(datetime.UTC)
            summary = tls.summary(state.tls_dir, self.cert_specs(state), now)
        dns = self.dns_addresses(state)
        proxy = haproxy.addresses(state.host, state.ports) if self.has_haproxy(state) else {}
        return StackStatus(
            self.dir, regions, members, alive, cluster, error, http, summary, haproxy=proxy, dns=dns
        )

    async def _cluster(self, state: StackState) -> tuple[admin_pb2.ClusterStatus | None, str]:
        try:
            return await admin_client.cluster_status(
                self.coordinator_addresses(state), 1.0, tls=self.client_tls(state, "reader")
            ), ""
        except admin_client.NoCoordinator as err:
            return None, str(err)

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> ProcessRecord:
        """Send ``sig`` to one of the stack's processes (for fault injection); its record."""
        record = self.state().processes.get(name)
        if record is None or not processes.is_alive(record):
            raise StackError(f"{name} is not running in the stack in {self.dir}")
        os.kill(record.pid, sig)
        if sig == signal.SIGKILL:
            await processes.wait_gone(record, 5.0)
        return record


def _provided_ca(path: Path) -> bool:
    """Whether ``path`` is a stack's TLS directory holding only a CA provided beforehand."""
    if path.name != tls.TLS_DIR or not path.is_dir():
        return False
    return sorted(p.name for p in path.iterdir()) == ["ca.crt", "ca.key"]


def _runs_with_certificate(record: ProcessRecord, tls_dir: Path) -> bool:
    """Whether the running process was started with a certificate from ``tls_dir``."""
    if not processes.is_alive(record):
        return False
    try:
        argv = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    prefix = str(tls_dir).encode() + b"/"
    return any(prefix in arg and arg.endswith(b".crt") for arg in argv)


class _NamespacedPostgres(Postgres):
    """PostgreSQL's programs run inside a region's network namespace (initdb, base backups,
    pg_ctl): what they start listens there, and what they connect to is reached from there."""

    def __init__(self, postgres: Postgres, netns: str) -> None:
        super().__init__(postgres._programs, postgres._user)
        self._netns = netns

    async def _run(self, program: str, *args: str, what: str, timeout: float = 120.0) -> str:
        return await processes.run(
            [str(self._programs[program]), *args],
            what=what,
            user=self._user,
            timeout=timeout,
            netns=self._netns,
        )
