"""``latitude-coordinator``: one replica of the control plane."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import sys
from pathlib import Path

from coordinator import dashboard, metrics
from coordinator.admin_service import AdminService
from coordinator.agent_service import AgentService
from coordinator.config import CoordinatorConfig
from coordinator.dns import dns_server
from coordinator.etcd import Etcd, MemberProbe
from coordinator.node import CoordinatorNode
from coordinator.refusals import RefusalEvents
from coordinator.routing_service import RoutingService
from coordinator.routing_service import register as register_routing
from coordinator.store import EtcdStore
from latitude import config as configuration
from latitude import program
from latitude.authz import Authorizer
from latitude.errors import LatitudeError
from latitude.program import setup_logging
from latitude.serving import Server, until_signalled
from latitude.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    agent_pb2,
    agent_pb2_grpc,
    routing_pb2,
)
from latitude.web import WebServer

log = logging.getLogger("latitude.coordinator")
# Allocations between collections of the youngest generation (Python's default: 700).
GC_YOUNG_THRESHOLD = 10_000


class CoordinatorCrashed(LatitudeError):
    """A core task of the coordinator failed; the process exits non-zero."""


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict]:
    parser = argparse.ArgumentParser(prog="latitude-coordinator", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML file with a [coordinator] table")
    parser.add_argument("--id", help="this replica's name")
    parser.add_argument("--listen", help="host:port to serve gRPC on")
    parser.add_argument("--advertise", help="host:port others reach this replica at")
    parser.add_argument("--etcd", help="etcd endpoints, comma-separated host:port")
    parser.add_argument("--etcd-prefix", help="key prefix in etcd (default /latitude)")
    parser.add_argument("--etcd-ca", help="CA of etcd's certificates (TLS to etcd)")
    parser.add_argument("--etcd-cert", help="client certificate for etcd (its CN is the user)")
    parser.add_argument("--etcd-key", help="the client certificate's key")
    parser.add_argument("--etcd-server-name", help="name in every etcd member's certificate")
    parser.add_argument("--regions", help="the deployment's regions, comma-separated")
    parser.add_argument("--http-address", help="host:port for metrics and the dashboard")
    parser.add_argument("--dns-address", help="host:port for the DNS responder (UDP and TCP)")
    parser.add_argument("--dns-zone", help="the zone the DNS responder serves")
    parser.add_argument("--dns-ttl", help="TTL of DNS answers, seconds")
    parser.add_argument("--dns-rate-limit", help="UDP DNS responses/s per client /24 and answer")
    parser.add_argument("--dns-rate-limit-slip", help="every Nth limited response truncated")
    parser.add_argument("--dns-rate-limit-window", help="seconds a DNS flood stays limited")
    parser.add_argument(
        "--synchronous", action="store_const", const=True, help="synchronous replication"
    )
    parser.add_argument("--tls-ca", help="the CA certificate every gRPC peer must chain to")
    parser.add_argument("--tls-cert", help="this coordinator's certificate (role coordinator)")
    parser.add_argument("--tls-key", help="the key of --tls-cert")
    parser.add_argument(
        "--region-hosts", help="where each region's services may be: region=host-or-CIDR, ..."
    )
    parser.add_argument("--log-level", default=os.environ.get("LATITUDE_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    names = ("id", "listen", "advertise", "etcd", "etcd_prefix", "regions", "synchronous",
             "http_address", "tls_ca", "tls_cert", "tls_key", "region_hosts")  # fmt: skip
    names += ("etcd_ca", "etcd_cert", "etcd_key", "etcd_server_name")
    names += ("dns_address", "dns_zone", "dns_ttl")
    names += ("dns_rate_limit", "dns_rate_limit_slip", "dns_rate_limit_window")
    flags = {name: getattr(args, name) for name in names}
    return args, flags


async def serve(config: CoordinatorConfig) -> None:
    tls, server_name = config.etcd_tls, config.etcd_server_name
    etcd = Etcd(config.etcd, timeout=1.0, tls=tls, server_name=server_name)
    store = EtcdStore(etcd, config.etcd_prefix)
    members = MemberProbe(config.etcd, tls=tls, server_name=server_name)
    node = CoordinatorNode(config, store)
    refusals = RefusalEvents(node)
    server = Server(
        config.listen,
        tls=config.tls,
        authorize=Authorizer(on_refused=refusals),
        max_message_bytes=config.max_message_bytes,
    )
    server.add(
        agent_pb2_grpc.add_AgentServiceServicer_to_server,
        AgentService(node, refusals),
        agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    )
    admin = AdminService(node, members)
    server.add(
        admin_pb2_grpc.add_AdminServiceServicer_to_server,
        admin,
        admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    )
    routing = RoutingService(node, node.routing, mmdb_path=config.geoip_city_database)
    server.add(
        register_routing,
        routing,
        routing_pb2.DESCRIPTOR.services_by_name["RoutingService"].full_name,
    )
    metrics.install(node)
    web = WebServer(config.http_address) if config.http_address else None
    if web is not None:
        dashboard.install(web.app, node, admin)
        await web.start()
    dns_listener = dns_server(config, node.routing)
    if dns_listener is not None:
        await dns_listener.start()
    await server.start()
    mode = "mutual TLS" if config.tls else "plaintext"
    etcd_endpoints = ",".join(config.etcd)
    log.info(
        "coordinator %s serving on %s, %s (etcd %s)", node.id, config.listen, mode, etcd_endpoints
    )
    if config.tls is None:
        log.warning(
            "no TLS (tls_ca, tls_cert, tls_key): anyone who reaches %s may change the cluster",
            config.listen,
        )
    settle_garbage_collection()
    running = asyncio.create_task(node.run(), name="node")
    signalled = asyncio.create_task(until_signalled(), name="signals")
    try:
        await asyncio.wait([running, signalled], return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            # The node never ends on its own: it crashed. Say so to load balancers and
            # orchestrators (NOT_SERVING, a non-zero exit) rather than answer as a husk.
            await server.stop(0.5)
            error = running.exception()
            log.error("a core task failed; stopping", exc_info=error)
            raise CoordinatorCrashed(f"coordinator {node.id} stopped: {error!r}") from error
        log.info("shutting down")
        await server.stop(config.shutdown_grace, before=[node.election.resign])
    finally:
        signalled.cancel()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        if web is not None:
            await web.stop()
        if dns_listener is not None:
            await dns_listener.stop()
        await members.close()
        await routing.close()
        await store.close()


def settle_garbage_collection() -> None:
    """Everything allocated while starting (modules, descriptors, the servers) lives as long as
    the process: moved out of the collector's sight, and the young generation collected less
    often, so that a leader fed a report every 0.5 s by each of 1,000 agents spends its time
    on the reports rather than on re-scanning objects that never die (bench/ingest.py)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def main(argv: list[str] | None = None) -> int:
    args, flags = parse_args(argv)
    setup_logging(args.log_level)

    async def start() -> None:
        config = configuration.load(
            CoordinatorConfig,
            section="coordinator",
            env_prefix="LATITUDE_COORDINATOR_",
            file=args.config,
            env=os.environ,
            flags=flags,
        )
        await serve(config)

    return program.run("latitude-coordinator", start)


if __name__ == "__main__":
    sys.exit(main())
