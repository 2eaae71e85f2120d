"""The ``latitude`` command: the operator's view of a latitude deployment and its local stack."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from latitude import certs_view, history_view, incidents_view, pki, route_view, verify_view
from latitude import config as configuration
from latitude.admin_client import call_any, call_leader
from latitude.client import strategy_value
from latitude.errors import ConfigError, LatitudeError, StackError
from latitude.operations_view import (
    consistency_json,
    event_kind,
    events_json,
    format_consistency,
    format_events,
)
from latitude.pki import CertFiles
from latitude.stack import tls
from latitude.stack.config import StackConfig
from latitude.stack.progress import Progress
from latitude.stack.stack import DNS_ZONE, Stack, StackStatus
from latitude.stack.state import StackState
from latitude.status_view import cluster_json, format_cluster, format_failover
from latitude.table import human_bytes, render
from latitude.v1 import admin_pb2, common_pb2, history_pb2, routing_pb2

EXIT_ERROR = 1
_STRATEGY_NAMES = "geographic, latency, weighted, round_robin, health_based"
EXIT_NOT_READY = 3
EXIT_INTERRUPTED = 130
# latitude verify's default pace (rows/s): with it the check cost pgbench on the primary no
# more than noise (bench/verify.py); unpaced it cost 7 % and 22 % on a shared 2-core machine.
VERIFY_PACE = 20_000.0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return asyncio.run(args.command(args))
    except LatitudeError as err:
        print(f"latitude: {err}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader (``| head``) went away: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("latitude: interrupted; what had been started was stopped", file=sys.stderr)
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latitude", description="latitude: multi-region routing and PostgreSQL failover"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    up = _stack_command(commands, "up", "start the local three-region stack (or recover it)")
    up.add_argument("--host", help="address every server listens on (default 127.0.0.1)")
    up.add_argument(
        "--port-base", type=int, help="first of consecutive ports (default: free ports)"
    )
    up.add_argument(
        "--netns", action="store_true", default=None,
        help="each region and the control plane in a network namespace of its own (root)",
    )  # fmt: skip
    up.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mutual TLS between every component, with a local CA and a certificate each in "
        "<dir>/tls (default: as the stack runs; plaintext for a new one)",
    )
    up.add_argument(
        "--haproxy",
        action="store_true",
        default=None,
        help="HAProxy beside the stack (deploy/haproxy/haproxy.cfg): a write port checking the "
        "agents' /primary, a read port checking /replica",
    )
    up.set_defaults(command=_up)

    down = _stack_command(commands, "down", "stop the local stack and remove its data")
    down.set_defaults(command=_down)

    status = _stack_command(commands, "status", "show the local stack: regions, lag, etcd")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--region", help="show only this region")
    status.set_defaults(command=_status)

    switchover = _stack_command(
        commands, "switchover", "move the primary to another region without losing a write"
    )
    switchover.add_argument("--to", dest="target", default="", help="the region to promote")
    switchover.add_argument("--force", action="store_true", help="even past the lag budget")
    _coordinators_option(switchover)
    switchover.set_defaults(command=_switchover)

    failover = _stack_command(
        commands, "failover", "promote a standby now (the primary's region must have failed)"
    )
    failover.add_argument("--to", dest="target", default="", help="the region to promote")
    failover.add_argument(
        "--force", action="store_true", help="even if the primary looks alive or lags too far"
    )
    failover.add_argument("--reason", default="", help="recorded with the failover")
    _coordinators_option(failover)
    failover.set_defaults(command=_failover)

    events = _stack_command(commands, "events", "the event history, oldest first")
    events.add_argument("--region", default="", help="only events of this region")
    events.add_argument(
        "--kind", dest="kinds", action="extend", nargs="+", default=[], metavar="KIND",
        help="only events of these kinds, e.g. failover_started region_state_changed",
    )  # fmt: skip
    events.add_argument("--limit", type=int, default=0, help="the newest N (default 100)")
    events.add_argument("--json", action="store_true", help="machine-readable output")
    events.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new events, like tail -f"
    )
    _coordinators_option(events, timeout=5.0)
    events.set_defaults(command=_events)

    incidents = _stack_command(
        commands, "incidents", "incidents (events correlated by cause), newest first"
    )
    incidents.add_argument("--all", action="store_true", help="resolved incidents too")
    incidents.add_argument("--limit", type=int, default=0, help="the newest N (default 100)")
    incidents.add_argument(
        "--deliveries", action="store_true", help="and what each alert target was told"
    )
    incidents.add_argument("--json", action="store_true", help="machine-readable output")
    _coordinators_option(incidents, timeout=5.0)
    incidents.set_defaults(
        command=lambda args: incidents_view.show(args, _coordinators(args), client_tls(args))
    )

    maintenance = _stack_command(
        commands, "maintenance", "take a region out of service (no traffic, never promoted)"
    )
    maintenance.add_argument("region", help="the region")
    maintenance.add_argument("mode", choices=["on", "off"], help="in or out of maintenance")
    maintenance.add_argument(
        "--drain", action="store_true",
        help="when the region holds the primary, first switch it over to the best other region",
    )  # fmt: skip
    maintenance.add_argument("--reason", default="", help="recorded in the event history")
    _coordinators_option(maintenance)  # with --drain it waits for the whole switchover
    maintenance.set_defaults(command=_maintenance)

    check = _stack_command(
        commands, "check", "compare every region's timeline and WAL with the primary's"
    )
    check.add_argument(
        "--fresh", action="store_true", help="ask every agent for a fresh reading first"
    )
    check.add_argument("--json", action="store_true", help="machine-readable output")
    _coordinators_option(check, timeout=10.0)
    check.set_defaults(command=_check)

    verify = _stack_command(
        commands, "verify", "compare the data itself across regions, by key-range checksums"
    )
    verify.add_argument(
        "--table", dest="tables", action="append", default=[], metavar="SCHEMA.NAME",
        help="only this table (repeatable; default every user table)",
    )  # fmt: skip
    verify.add_argument("--rows-per-range", type=int, default=0, help="default 1000")
    verify.add_argument(
        "--replay-wait", type=float, default=0.0, help="seconds a standby may take to catch up"
    )
    verify.add_argument(
        "--max-rows-per-second", type=float, default=VERIFY_PACE,
        help=f"go no faster, sparing the primary (default {VERIFY_PACE:.0f}; 0: as fast as "
        "the agents answer)",
    )  # fmt: skip
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    _coordinators_option(verify, timeout=3600.0)
    verify.set_defaults(command=_verify)

    route = _stack_command(commands, "route", "where a client's requests should go, and why")
    where = route.add_mutually_exclusive_group()
    where.add_argument("--ip", default="", help="the client's IP address")
    where.add_argument("--lat", type=float, help="the client's latitude (with --lon)")
    route.add_argument("--lon", type=float, help="the client's longitude (with --lat)")
    route.add_argument("--write", action="store_true", help="a write (default: a read)")
    route.add_argument("--strategy", help=f"override the cluster's default ({_STRATEGY_NAMES})")
    route.add_argument(
        "--max-lag", type=float, help="reads: skip replicas further behind (seconds)"
    )
    route.add_argument("--json", action="store_true", help="machine-readable output")
    _coordinators_option(route, timeout=5.0)
    route.set_defaults(command=_route)

    history = _stack_command(commands, "history", "a region's health over time, as a timeline")
    history.add_argument("region", help="the region")
    history.add_argument("--since", default="1h", help="how far back: 90s, 15m, 1h, 2d (<= 7d)")
    history.add_argument("--json", action="store_true", help="machine-readable output")
    _coordinators_option(history, timeout=5.0)
    history.set_defaults(command=_history)

    strategy = _stack_command(commands, "strategy", "set the cluster's default routing strategy")
    strategy.add_argument("name", help=_STRATEGY_NAMES)
    _coordinators_option(strategy, timeout=5.0)
    strategy.set_defaults(command=_strategy)

    certs = _stack_command(
        commands, "certs", "the local stack's certificates; `certs renew` issues new ones"
    )
    certs.add_argument("action", nargs="?", choices=["renew"], help="renew every certificate")
    certs.add_argument(
        "--days", type=int, default=365, help="renew: how long the new ones last (default 365)"
    )
    certs.add_argument("--json", action="store_true", help="machine-readable output")
    certs.set_defaults(command=_certs)
    return parser


def _coordinators_option(command: argparse.ArgumentParser, timeout: float = 60.0) -> None:
    command.add_argument(
        "--coordinators",
        help="coordinator addresses, comma-separated (default: the local stack's)",
    )
    command.add_argument("--timeout", type=float, default=timeout, help="seconds to wait")
    tls_options(command)


def tls_options(command: argparse.ArgumentParser) -> None:
    """A cluster that is not a local stack: the CA and an operator's (or reader's) certificate
    and key, all three or none (also LATITUDE_TLS_CA, _CERT, _KEY)."""
    command.add_argument("--tls-ca", help="the CA that signed the coordinators' certificates")
    command.add_argument("--tls-cert", help="your certificate (an operator's, or a reader's)")
    command.add_argument("--tls-key", help="its key")


def _stack_command(commands, name: str, help: str) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=help, description=help)
    command.add_argument("--dir", type=Path, help="the stack's directory (default .latitude)")
    command.add_argument("--config", type=Path, help="a TOML file with a [stack] table")
    return command


def _stack(args: argparse.Namespace, progress: Progress | None = None) -> Stack:
    flags = {
        "dir": args.dir,
        "host": getattr(args, "host", None),
        "port_base": getattr(args, "port_base", None),
        "netns": getattr(args, "netns", None),
        "tls": getattr(args, "tls", None),
        "haproxy": getattr(args, "haproxy", None),
    }
    config = configuration.load(
        StackConfig,
        section="stack",
        env_prefix="LATITUDE_STACK_",
        file=args.config,
        env=os.environ,
        flags=flags,
    )
    return Stack(config, progress=progress or Progress(None))


async def _up(args: argparse.Namespace) -> int:
    stack = _stack(args, Progress(sys.stderr))
    print(f"latitude up: {stack.dir}", file=sys.stderr)
    _, started = await stack.up()
    if not started:
        print(f"latitude: the stack in {stack.dir} is already running", file=sys.stderr)
    status = await stack.status()
    print(format_status(status) + format_haproxy(status.haproxy))
    _print_network(stack)
    return 0


async def _down(args: argparse.Namespace) -> int:
    stack = _stack(args, Progress(sys.stderr))
    stopped = await stack.down()
    print(f"latitude down: stopped {len(stopped)} processes and removed {stack.dir}")
    return 0


async def _status(args: argparse.Namespace) -> int:
    stack = _stack(args)
    if args.region:
        stack.topology.region(args.region)
    status = await stack.status()
    if args.region:
        status = _only_region(status, args.region)
    incidents = await _open_incidents(stack, status, args.region)
    if args.json:
        network = stack.network()
        print(json.dumps(status_json(status) | {
            "network": network.layout.to_json() if network else None,
            "open_incidents": incidents_view.incidents_json(incidents),
        }, indent=2))  # fmt: skip
    else:
        print(format_status(status) + format_haproxy(status.haproxy))
        if incidents:
            print(f"\n{len(incidents)} open incident(s) (latitude incidents):")
            print(incidents_view.format_incidents(incidents, time.time()))
        _print_network(stack)
    return 0 if status.ready else EXIT_NOT_READY


async def _open_incidents(stack: Stack, status: StackStatus, region: str) -> list:
    """The open incidents (of ``region``, if given), or none when no coordinator answers at
    once: status never waits on them."""
    if status.cluster is None:
        return []
    try:
        response = await call_any(
            stack.coordinator_addresses(stack.state()), "ListIncidents",
            admin_pb2.ListIncidentsRequest(), 1.0, tls=stack.client_tls(stack.state(), "reader"),
        )  # fmt: skip
    except LatitudeError:
        return []
    return [i for i in response.incidents if not region or region in i.regions]


def _print_network(stack: Stack) -> None:
    network = stack.network()
    if network is None:
        return
    layout = network.layout
    parties = ", ".join(f"{p.name} {p.address} ({p.netns})" for p in layout.parties)
    print(f"\nnetwork {layout.subnet} on bridge {layout.bridge}: observer {layout.observer}; "
          f"{parties}")  # fmt: skip


def client_tls(args: argparse.Namespace, env=os.environ) -> CertFiles | None:
    """The certificate a command presents: --tls-ca/--tls-cert/--tls-key, else
    LATITUDE_TLS_CA/_CERT/_KEY, else the local stack's operator certificate when it runs with
    TLS; None for plaintext."""
    flags = [getattr(args, f"tls_{k}", None) for k in _TLS]
    variables = [env.get(f"LATITUDE_TLS_{k.upper()}") for k in _TLS]
    sources = (
        ("--tls-ca, --tls-cert and --tls-key", flags),
        ("LATITUDE_TLS_CA, LATITUDE_TLS_CERT and LATITUDE_TLS_KEY", variables),
    )
    for where, (ca, cert, key) in sources:
        given = [v for v in (ca, cert, key) if v]
        if len(given) == 3:
            return CertFiles(cert=Path(cert), key=Path(key), ca=Path(ca))
        if given:
            raise ConfigError(f"{where}: give all three (CA, certificate, key) or none")
    stack = _stack(args)
    try:
        state = StackState.load(stack.dir)
    except StackError:
        return None
    return stack.client_tls(state) if state is not None else None


_TLS = ("ca", "cert", "key")


def _coordinators(args: argparse.Namespace) -> list[str]:
    if args.coordinators:
        return [a.strip() for a in args.coordinators.split(",") if a.strip()]
    stack = _stack(args)
    return stack.coordinator_addresses(stack.state())


async def _switchover(args: argparse.Namespace) -> int:
    request = admin_pb2.SwitchoverRequest(target_region=args.target, force=args.force, wait=True)
    response = await call_leader(
        _coordinators(args), "Switchover", request, args.timeout, tls=client_tls(args)
    )
    print(format_failover(response.failover))
    return 0 if response.failover.phase == admin_pb2.FAILOVER_PHASE_COMPLETED else EXIT_ERROR


async def _failover(args: argparse.Namespace) -> int:
    request = admin_pb2.FailoverRequest(
        target_region=args.target, force=args.force, reason=args.reason, wait=True
    )
    response = await call_leader(
        _coordinators(args), "Failover", request, args.timeout, tls=client_tls(args)
    )
    print(format_failover(response.failover))
    return 0 if response.failover.phase == admin_pb2.FAILOVER_PHASE_COMPLETED else EXIT_ERROR


async def _events(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise LatitudeError(f"--limit: must not be negative, got {args.limit}")
    request = admin_pb2.ListEventsRequest(
        region=args.region, limit=args.limit, kinds=[event_kind(k) for k in args.kinds]
    )
    if args.follow:
        return await incidents_view.follow(
            _coordinators(args),
            request,
            as_json=args.json,
            timeout=args.timeout,
            tls=client_tls(args),
        )
    response = await call_any(
        _coordinators(args), "ListEvents", request, args.timeout, tls=client_tls(args)
    )
    if args.json:
        print(json.dumps(events_json(response.events), indent=2))
    else:
        print(format_events(response.events))
    return 0


async def _history(args: argparse.Namespace) -> int:
    since = history_view.parse_duration(args.since)
    request = history_pb2.GetHistoryRequest(region=args.region, since_seconds=since)
    response = await call_any(
        _coordinators(args), "GetHistory", request, args.timeout, tls=client_tls(args)
    )
    if args.json:
        print(json.dumps(history_view.history_json(response), indent=2))
    else:
        print(history_view.format_history(response, since))
    return 0


async def _maintenance(args: argparse.Namespace) -> int:
    request = admin_pb2.SetMaintenanceRequest(
        region=args.region, enabled=args.mode == "on", drain=args.drain, reason=args.reason
    )
    response = await call_leader(
        _coordinators(args), "SetMaintenance", request, args.timeout, tls=client_tls(args)
    )
    region = response.region
    state = common_pb2.RegionState.Name(region.state).removeprefix("REGION_STATE_")
    print(f"{region.region}: {state} ({region.state_reason})")
    if response.HasField("switchover"):
        print(format_failover(response.switchover))
    return 0


async def _route(args: argparse.Namespace) -> int:
    request = routing_pb2.ResolveRequest(
        client_ip=args.ip,
        strategy=_strategy_value(args.strategy),
        intent=routing_pb2.INTENT_WRITE if args.write else routing_pb2.INTENT_READ,
    )
    if (args.lat is None) != (args.lon is None):
        raise LatitudeError("--lat and --lon go together")
    if args.lat is not None:
        request.location.latitude, request.location.longitude = args.lat, args.lon
    if args.max_lag is not None:
        request.max_replica_lag_seconds = args.max_lag
    decision = await route_view.resolve(
        _coordinators(args), request, args.timeout, tls=client_tls(args)
    )
    if args.json:
        print(json.dumps(route_view.decision_json(decision), indent=2))
    else:
        print(route_view.format_decision(decision))
    return 0 if decision.targets else EXIT_ERROR


async def _strategy(args: argparse.Namespace) -> int:
    request = admin_pb2.SetStrategyRequest(strategy=_strategy_value(args.name))
    if not request.strategy:
        raise LatitudeError(f"strategy: give one of {_STRATEGY_NAMES}")
    response = await call_leader(
        _coordinators(args), "SetStrategy", request, args.timeout, tls=client_tls(args)
    )
    before = routing_pb2.Strategy.Name(response.previous).removeprefix("STRATEGY_").lower()
    print(f"default strategy {args.name} (was {before}), table version {response.table_version}")
    return 0


def _strategy_value(name: str | None) -> int:
    try:
        return strategy_value(name)
    except ValueError as err:
        raise LatitudeError(str(err)) from err


async def _check(args: argparse.Namespace) -> int:
    request = admin_pb2.CheckConsistencyRequest(fresh=args.fresh)
    report = await call_any(
        _coordinators(args), "CheckConsistency", request, args.timeout, tls=client_tls(args)
    )
    if args.json:
        print(json.dumps(consistency_json(report), indent=2))
    else:
        print(format_consistency(report))
    return 0 if report.consistent else EXIT_ERROR


async def _verify(args: argparse.Namespace) -> int:
    if min(args.rows_per_range, args.replay_wait, args.max_rows_per_second) < 0:
        raise LatitudeError(
            "--rows-per-range, --replay-wait and --max-rows-per-second must not be negative"
        )
    request = admin_pb2.VerifyRequest(
        tables=args.tables, rows_per_range=args.rows_per_range,
        replay_wait_seconds=args.replay_wait, max_rows_per_second=args.max_rows_per_second,
    )  # fmt: skip
    live = sys.stderr.isatty()
    phases: list[str] = []

    def progress(update: admin_pb2.VerifyProgress) -> None:
        """One line rewritten in place on a terminal; otherwise a line per phase."""
        line = verify_view.format_progress(update)
        if live:
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        elif not phases or phases[-1] != update.phase:
            phases.append(update.phase)
            print(line, file=sys.stderr)

    report = await verify_view.verify(
        _coordinators(args), request, args.timeout, progress, tls=client_tls(args)
    )
    if live:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(verify_view.report_json(report), indent=2))
    else:
        print(verify_view.format_report(report))
    return 0 if report.consistent else EXIT_ERROR


async def _certs(args: argparse.Namespace) -> int:
    stack = _stack(args, Progress(sys.stderr))
    state = stack.state()
    if state.tls_dir is None:
        raise StackError(
            f"the stack in {stack.dir} runs in plaintext, without certificates "
            f"({certs_view.PLAINTEXT_WARNING}): `latitude down`, then `latitude up --tls`"
        )
    if args.action == "renew":
        restarted = await stack.renew_certs(args.days)
        what = ", ".join(restarted) or "nothing (none was running)"
        count = len(stack.cert_specs(state))
        print(f"latitude certs renew: {count} new certificates; restarted {what}", file=sys.stderr)
    specs = stack.cert_specs(state)
    infos = tls.inventory(state.tls_dir, specs)
    ca = pki.describe(state.tls_dir / "ca.crt")
    now = datetime.datetime.now(datetime.UTC)
    if args.json:
        print(json.dumps(certs_view.certs_json(ca, specs, infos, now), indent=2))
    else:
        print(certs_view.format_certs(ca, specs, infos, now))
    return 0


def _only_region(status: StackStatus, region: str) -> StackStatus:
    cluster = status.cluster
    if cluster is not None:
        cluster = admin_pb2.ClusterStatus()
        cluster.CopyFrom(status.cluster)
        del cluster.regions[:]
        cluster.regions.extend(r for r in status.cluster.regions if r.region == region)
    databases = [r for r in status.regions if r.region == region]
    return replace(status, regions=databases, cluster=cluster)


def status_json(status: StackStatus) -> dict:
    return {
        "dir": str(status.dir),
        "ready": status.ready,
        "streaming": status.streaming,
        "cluster": None if status.cluster is None else cluster_json(status.cluster),
        "cluster_error": status.cluster_error,
        "databases": [asdict(r) | {"streaming": r.streaming} for r in status.regions],
        "etcd": [asdict(m) for m in status.etcd],
        "processes": status.processes,
        "http": status.http,
        "dns": status.dns,
        "security": certs_view.mode_json(status.tls),
        "haproxy": status.haproxy,
    }


def format_status(status: StackStatus) -> str:
    verdict = "ready" if status.ready else "NOT READY"
    now = datetime.datetime.now(datetime.UTC)
    head = f"latitude stack in {status.dir}: {verdict}\n{certs_view.format_mode(status.tls, now)}"
    served = f"{format_http(status.http)}{format_dns(status.dns)}"
    if status.cluster is not None:
        return f"{head}\n{format_cluster(status.cluster)}{served}"
    return f"{head}\ncontrol plane: {status.cluster_error}\n\n{format_databases(status)}{served}"


def format_http(http: dict[str, str]) -> str:
    """Where the dashboard and the metrics are (every coordinator serves both)."""
    if not http:
        return ""
    coordinators = [a for n, a in http.items() if not n.startswith("agent-")]
    agents = [a for n, a in http.items() if n.startswith("agent-")]
    lines = ["", ""]
    if coordinators:
        lines.append(
            f"dashboard  http://{coordinators[0]}/  (any coordinator: {' '.join(coordinators)})"
        )
    lines.append(f"metrics    /metrics on {' '.join(coordinators + agents)}")
    return "\n".join(lines)


def format_dns(dns: dict[str, str]) -> str:
    """Where the DNS responders are (every coordinator runs one for the same zone)."""
    if not dns:
        return ""
    first = next(iter(dns.values()))
    host, _, port = first.rpartition(":")
    return (
        f"\ndns        dig @{host.strip('[]')} -p {port} write.{DNS_ZONE}  "
        f"(any coordinator: {' '.join(dns.values())})"
    )


def format_haproxy(haproxy: dict[str, str]) -> str:
    """Where HAProxy takes clients (``latitude up --haproxy``); nothing without it."""
    if not haproxy:
        return ""
    return (
        f"\nhaproxy    writes {haproxy['write']}  reads {haproxy['read']}  "
        f"stats http://{haproxy['stats']}/"
    )


def format_databases(status: StackStatus) -> str:
    """The stack's own view, straight from PostgreSQL and etcd."""
    regions = render(
        ["REGION", "ROLE", "ADDRESS", "TIMELINE", "LSN", "LAG", "WAL RECEIVER", "PROBLEM"],
        [
            [
                r.region,
                f"{r.role} (fenced)" if r.fenced else r.role,
                r.address,
                r.timeline or "-",
                r.lsn or "-",
                human_bytes(r.lag_bytes) if r.role == "standby" else "-",
                r.receiver or "-",
                r.error,
            ]
            for r in status.regions
        ],
    )
    members = render(
        ["ETCD", "ENDPOINT", "HEALTH", "LEADER", "PROBLEM"],
        [
            [
                m.name,
                m.endpoint,
                "healthy" if m.healthy else "unhealthy",
                "*" * m.is_leader,
                m.error,
            ]
            for m in status.etcd
        ],
    )
    return f"{regions}\n\n{members}"


if __name__ == "__main__":
    sys.exit(main())
