"""``latitude-agent``: the sidecar beside one region's PostgreSQL and services."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import socket
import sys
import time
from pathlib import Path

import latitude
from agent import config as agent_config
from agent import health_http, metrics
from agent.actuator import Actuator
from agent.checks import CheckRunner, CheckSpec
from agent.command_session import ActuatorError
from agent.config import AgentConfig
from agent.demotion import could_be_writable
from agent.failsafe import FRESH_INTERVALS, Failsafe, FailsafeServicer, Rounds
from agent.health import Marks
from agent.keeper import LeaseFile, keeper_problem, write_lease
from agent.lease import FenceLease
from agent.link import CoordinatorLink
from agent.peers import DEFAULT_INTERVAL as DEFAULT_PEER_PROBE_INTERVAL
from agent.peers import PeerProber, parse_peers
from agent.postgres_probe import DatabaseTarget, PostgresProbe
from agent.rejoin import LocalServer
from agent.utilization import Utilization
from agent.verify_service import VerifyServicer
from latitude import program
from latitude.netaddr import join_host_port, parse_host_port
from latitude.program import all_or_none, setup_logging
from latitude.serving import Server, until_signalled
from latitude.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from latitude.web import WebServer

log = logging.getLogger("latitude.agent")

KEEPER_CHECK = "fence-keeper"
# Roles of a database the agent really sees (a probe that answered).
_SEEN = (common_pb2.DATABASE_ROLE_PRIMARY, common_pb2.DATABASE_ROLE_STANDBY)
_FENCE_TICK = 0.05  # how closely the fence follows its deadline
_REVIVE_EVERY = 5.0  # seconds between attempts to start a stopped fenced server
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class Agent:
    def __init__(self, config: AgentConfig, checks: list[CheckSpec]) -> None:
        self.config = config
        self.probe = PostgresProbe(
            DatabaseTarget(
                config.db_host, config.db_port, config.db_user, config.db_password or None,
                config.db_name,
            ),
            region=config.region,
            connect_timeout=config.probe_timeout,
            query_timeout=config.probe_timeout,
        )  # fmt: skip
        self.checks = CheckRunner(checks)
        self.utilization = Utilization(config.utilization_source, interval=lambda: self.interval)
        self.peers = PeerProber(
            parse_peers(config.peers, config.region), interval=lambda: self.peer_probe_interval
        )
        # The probe has one connection: the probe loop and commands take turns with it.
        self._probe_lock = asyncio.Lock()
        self.actuator = Actuator(
            self.probe.target, self.probe, region=config.region, probe_lock=self._probe_lock,
            server=LocalServer.from_config(config),
            upstreams=parse_peers(config.peers, config.region),
        )  # fmt: skip
        self._commands: asyncio.Queue[agent_pb2.Command] = asyncio.Queue()
        self.failsafe = Failsafe(config.region)
        # What the health endpoints must know before the probe can show it (agent.health).
        self.marks = Marks()
        self.link = CoordinatorLink(
            config.coordinators, self._hello, on_command=self._received,
            on_word=self._word, tls=config.tls,
        )  # fmt: skip
        self._started = time.monotonic()
        self.lease = FenceLease(started_at=self._started, fence_after=config.fence_after)
        self._lease_written: LeaseFile | None = None
        # When this agent last saw its database and did not leave it writable past the lease:
        # the keeper leaves the fence to an agent that vouched recently (agent.keeper).
        self._vouched_at: float | None = None
        self.rounds = Rounds(
            parse_peers(config.peer_agents, config.region, "peer_agents"), tls=config.tls
        )
        self.database = common_pb2.DatabaseStatus(role=common_pb2.DATABASE_ROLE_UNKNOWN)
        self._observed_at = -float("inf")  # monotonic; the first probe has not run yet
        self._system_identifier = 0  # the newest known: a database down still has one
        self._sequence = 0
        # Where the coordinators reach this agent's gRPC server, once it listens.
        self.advertised = config.advertise

    @property
    def interval(self) -> float:
        welcome = self.link.welcome
        if welcome is not None and welcome.report_interval.ToNanoseconds() > 0:
            return welcome.report_interval.ToNanoseconds() / 1e9
        return self.config.report_interval

    @property
    def peer_probe_interval(self) -> float:
        welcome = self.link.welcome
        if welcome is not None and welcome.peer_probe_interval.ToNanoseconds() > 0:
            return welcome.peer_probe_interval.ToNanoseconds() / 1e9
        return DEFAULT_PEER_PROBE_INTERVAL

    def _hello(self, highest_epoch: int) -> agent_pb2.Hello:
        config = self.config
        return agent_pb2.Hello(
            region=config.region,
            agent_id=config.id,
            location=common_pb2.Location(latitude=config.latitude, longitude=config.longitude),
            capacity=config.capacity,
            priority=config.priority,
            endpoints=[
                common_pb2.Endpoint(
                    name="postgres",
                    kind=common_pb2.ENDPOINT_KIND_POSTGRES,
                    address=f"{config.db_host}:{config.db_port}",
                )
            ],
            agent_version=latitude.__version__,
            highest_epoch_seen=highest_epoch,
            agent_address=self.advertised,
        )

    def report(self) -> agent_pb2.Report:
        self._sequence += 1
        report = agent_pb2.Report(
            sequence=self._sequence,
            database=self.database,
            checks=self.checks.latest(),
            capacity_utilization=self.utilization.value(),
            error_rate=self.checks.error_rate(),
            response_time_seconds=self.checks.response_time(),
            peers=self.peers.latest(),
            lease=self.lease.to_proto(time.monotonic()),
        )
        keeper = self._keeper_check()
        if keeper is not None:
            report.checks.append(keeper)
        report.sent_at.FromNanoseconds(time.time_ns())
        return report

    def _keeper_check(self) -> common_pb2.CheckResult | None:
        """A keeper that is gone leaves the primary unfenced should this agent die or hang:
        the leader shows the region DEGRADED."""
        if self.config.fence_lease is None:
            return None
        problem = keeper_problem(self.config.fence_lease, self.config.region, time.monotonic())
        return common_pb2.CheckResult(name=KEEPER_CHECK, ok=not problem, error=problem)

    # -- the fence lease and the failsafe ---------------------------------------------------

    def _word(self, word: agent_pb2.ClusterWord, epoch: int) -> None:
        """Every Welcome and ReportAck of the newest leader: its word, and maybe an ack."""
        self.failsafe.word_seen(word, epoch)
        if self.failsafe.word is not None:
            self.marks.word_seen(self.failsafe.word)
        self._lease_moved()

    def _received(self, command: agent_pb2.Command) -> None:
        """A FENCE drains /primary the moment it arrives, before it waits its turn."""
        if command.kind == agent_pb2.COMMAND_KIND_FENCE:
            self.marks.fence_coming(
                f"FENCE {command.command_id} from the leader (epoch "
                f"{command.epoch}): {command.reason or 'no reason given'}"
            )
        self._commands.put_nowait(command)

    def _lease_moved(self) -> None:
        """Bring the lease up to date; rewrite the keeper's file when it changed."""
        self.lease.fence_after = self.fence_after
        self.lease.acknowledged(self.link.last_ack_sent_at)
        if self.config.fence_lease is None:
            return
        lease = LeaseFile(self.config.region, self.lease.deadline, os.getpid(), self._vouched_at)
        if lease == self._lease_written:
            return
        try:
            write_lease(self.config.fence_lease, lease)
            self._lease_written = lease
        except OSError as err:
            # The keeper then fences at the last deadline it read: early, never late.
            log.error("cannot write the fence lease %s: %s", self.config.fence_lease, err)

    def observation(self) -> tuple[common_pb2.DatabaseStatus, float]:
        """The newest DatabaseStatus and when it was taken (monotonic), for Confirm."""
        return self.database, self._observed_at

    def _observed(self, database: common_pb2.DatabaseStatus, at: float) -> None:
        self.database, self._observed_at = database, at
        if database.system_identifier:
            self._system_identifier = database.system_identifier

    async def _failsafe_loop(self) -> None:
        """Every interval, while the database is not a plain standby, a round of Confirm to
        every peer agent; a round all of them confirmed moves the lease to its send time."""
        config = self.config
        address = join_host_port(config.db_host, config.db_port)
        try:
            while True:
                started = time.monotonic()
                if self.database.role != common_pb2.DATABASE_ROLE_STANDBY:
                    request = agent_pb2.ConfirmRequest(
                        primary_region=config.region, primary_address=address,
                        system_identifier=self._system_identifier,
                    )  # fmt: skip
                    confirmed, problem = await self.rounds.ask(request, timeout=self.interval)
                    if problem:
                        self.lease.unconfirmed(problem)
                    else:
                        self.lease.confirmed(started, confirmed)
                        self._lease_moved()
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            await self.rounds.close()

    async def run(self) -> None:
        self.checks.start()
        try:
            self._lease_moved()  # the keeper counts from this agent's start from now on
            loops = [
                self.link.run(),
                self._probe_loop(),
                self._fence_timer(),
                self._report_loop(),
                self._command_loop(),
                self.utilization.run(),
                self.peers.run(),
            ]
            if self.config.peer_agents:
                loops.append(self._failsafe_loop())
            await all_or_none(*loops)
        finally:
            await self.checks.close()
            await self.actuator.close()
            await self.probe.close()

    async def _probe_loop(self) -> None:
        """Observe the database every interval, in its own loop: a slow database delays the
        next observation, never the reports."""
        while True:
            self.marks.tick("probe")
            started = time.monotonic()
            # Beat first, so the primary's report carries the heartbeat it just wrote.
            async with self._probe_lock:
                await self.probe.heartbeat()
                database = await self.probe.observe()
            self._lease_moved()
            if database.fenced:
                database.fence_cause = self.actuator.reported_fence_cause
            self._observed(database, started)
            if database.role in _SEEN and not self._fence_due(database):
                self._vouched_at = started
                self._lease_moved()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def _fence_timer(self) -> None:
        """Fence at the lease's deadline itself, not at the next probe (up to a probe's time
        later): the leader may promote another region fence_after and a margin after the same
        evidence. A fenced primary found stopped (its keeper's fence, an immediate stop) is
        started again in recovery, where it takes no writes but can be seen and unfenced."""
        revived_at = -math.inf
        while True:
            self.marks.tick("fence timer")
            self._lease_moved()
            now = time.monotonic()
            if now >= self.lease.deadline and self._fence_due(self.database):
                log.warning("no report acknowledged and no failsafe round confirmed for %.1f s "
                            "(%s): fencing the database", self.fence_after,
                            self.lease.failsafe_problem or "no peer agents")  # fmt: skip
                self.marks.fence_coming("the fence lease ran out: fencing itself")
                try:
                    await self.actuator.fence(common_pb2.FENCE_CAUSE_SELF)
                except ActuatorError as err:
                    log.error("self-fencing failed: %s", err)
                    self.marks.command_done(agent_pb2.COMMAND_KIND_FENCE, ok=False)
                async with self._probe_lock:
                    database = await self.probe.observe()
                if database.fenced:
                    database.fence_cause = self.actuator.reported_fence_cause
                self._observed(database, time.monotonic())
            elif (
                self.database.role == common_pb2.DATABASE_ROLE_DOWN
                and now - revived_at > _REVIVE_EVERY
                and self.actuator.stopped_fenced()
            ):
                # Whatever the lease says: a stopped fenced server cannot take writes, and
                # started in recovery it can be seen, unfenced or rejoined.
                revived_at = now
                await self.actuator.revive()
            await asyncio.sleep(_FENCE_TICK)

    @property
    def fence_after(self) -> float:
        welcome = self.link.welcome
        if welcome is not None and welcome.fence_after.ToNanoseconds() > 0:
            return welcome.fence_after.ToNanoseconds() / 1e9
        return self.config.fence_after

    def _fence_due(self, database: common_pb2.DatabaseStatus) -> bool:
        if not self.lease.due(time.monotonic(), database):
            return False
        data = self.config.pg_data
        if database.role != common_pb2.DATABASE_ROLE_PRIMARY and data is not None:
            # Not seen (UNKNOWN, DOWN): the files tell whether a server that could be a
            # primary runs at all; one down, or started in recovery, takes no writes.
            return could_be_writable(data)
        return True

    async def _command_loop(self) -> None:
        """Commands run one at a time, in the order the leader sent them."""
        while True:
            command = await self._commands.get()
            self.actuator.accept_epoch(self.link.highest_epoch)
            if command.kind == agent_pb2.COMMAND_KIND_STOP_CONFIRMING:
                # Not the actuator's: it touches no database, and must not wait on one.
                accepted = self.actuator.accept_epoch(command.epoch)
                result = self.failsafe.stop_confirming(
                    command, accepted=accepted, agent_epoch=self.actuator.highest_epoch,
                    observed=self.database,
                )  # fmt: skip
                self.link.send_result(result)
                log.info("STOP_CONFIRMING %s: %s", command.command_id,
                         "ok" if result.ok else result.error)  # fmt: skip
                continue
            result = await self.actuator.execute(command)
            self.marks.command_done(command.kind, result.ok)
            log.info("%s %s: %s", agent_pb2.CommandKind.Name(command.kind), command.command_id,
                     "ok" if result.ok else result.error)  # fmt: skip
            # Reports carry the newest observation: not one the command made stale (a server
            # that REJOIN stopped and started again, seen DOWN meanwhile by the probe loop).
            observed = result.observed
            if observed.observed_at.ToNanoseconds() > self.database.observed_at.ToNanoseconds():
                self._observed(observed, time.monotonic())
            self.link.send_result(result)

    async def _report_loop(self) -> None:
        next_at = time.monotonic()
        while True:
            self.marks.tick("report")
            self.link.offer(self.report())
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:  # we fell behind (suspended?): do not send a burst
                next_at = now + self.interval
            await asyncio.sleep(next_at - now)


def advertised_address(listen: str, port: int) -> str:
    """Where others reach the server listening on ``listen`` (bound to ``port``): a wildcard
    host (0.0.0.0, ::) is not an address, so the host's name stands in for it."""
    host, _ = parse_host_port(listen, "listen", any_port=True)
    if host in WILDCARD_HOSTS:
        host = socket.gethostname()
        log.info("listening on %s: advertising %s:%d (set advertise if others reach this "
                 "agent at another address)", listen, host, port)  # fmt: skip
    return join_host_port(host, port)


async def serve(config: AgentConfig, checks: list[CheckSpec]) -> None:
    agent = Agent(config, checks)
    server = Server(config.listen, tls=config.tls)
    servicer = FailsafeServicer(
        agent.failsafe, agent.observation, lambda: FRESH_INTERVALS * agent.interval
    )
    server.add(
        agent_pb2_grpc.add_FailsafeServiceServicer_to_server, servicer,
        agent_pb2.DESCRIPTOR.services_by_name["FailsafeService"].full_name,
    )  # fmt: skip
    metrics.install(agent)
    web = WebServer(config.http_address) if config.http_address else None
    if web is not None:
        health_http.install(web.app, lambda: health_http.snapshot_of(agent))
        await web.start()
    verify = VerifyServicer(agent.probe.target, config.region, renice=config.pg_data is not None)
    server.add(
        agent_pb2_grpc.add_VerifyServiceServicer_to_server, verify,
        agent_pb2.DESCRIPTOR.services_by_name["VerifyService"].full_name,
    )  # fmt: skip
    await server.start()
    if not agent.advertised:
        agent.advertised = advertised_address(config.listen, server.port)
    mode = "mutual TLS" if config.tls else "plaintext"
    log.info(
        "agent %s for %s serving health on port %d, %s", config.id, config.region, server.port, mode
    )
    running = asyncio.create_task(agent.run(), name="agent")
    try:
        await asyncio.wait(
            [running, asyncio.create_task(until_signalled())], return_when=asyncio.FIRST_COMPLETED
        )
        if running.done():
            running.result()
        log.info("shutting down")
        await server.stop(1.0)
    finally:
        if web is not None:
            await web.stop()
        await verify.close()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


_FLAGS = ("region", "agent_id", "coordinators", "listen", "db_host", "db_port", "db_user",
          "db_name", "latitude", "longitude", "capacity", "priority", "pg_data", "pg_log",
          "replication_passfile", "utilization_source", "peers", "peer_agents",
          "fence_lease", "http_address", "advertise", "tls_ca", "tls_cert",
          "tls_key")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="latitude-agent", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML file with an [agent] table")
    for name in _FLAGS:
        parser.add_argument("--" + name.replace("_", "-"))
    parser.add_argument("--log-level", default=os.environ.get("LATITUDE_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    flags = {name: getattr(args, name) for name in _FLAGS}

    async def start() -> None:
        config, raw_checks = agent_config.load(args.config, flags)
        where = str(args.config) if args.config else "configuration"
        checks = [CheckSpec.parse(raw, f"{where}: [[agent.checks]] #{i + 1}")
                  for i, raw in enumerate(raw_checks)]  # fmt: skip
        await serve(config, checks)

    return program.run("latitude-agent", start)


if __name__ == "__main__":
    sys.exit(main())
