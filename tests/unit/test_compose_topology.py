"""docker-compose.yml describes the same stack as DEFAULT_TOPOLOGY, running the programs as is.

No Docker engine runs where these tests run, so the compose file, the Dockerfile and the scripts in
deploy/ are checked by reading them. The agent and coordinator services are checked against the
programs themselves: their commands go through the programs' own argument parsers and their
environment through ``latitude.config.load``, as the programs would at start.

Each check is a function that returns the problems it finds: ``test_*_matches`` assert that the
real files have none, and ``test_check_catches_*`` hand each check a deliberately broken copy, so
that no check can pass by looking at nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import io
import itertools
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

import agent.main as agent_main
from agent.config import AgentConfig
from coordinator.config import CoordinatorConfig
from coordinator.main import parse_args as parse_coordinator_args
from latitude import config as configuration
from latitude.errors import ConfigError
from latitude.netaddr import parse_host_port
from latitude.stack.topology import DEFAULT_TOPOLOGY, Topology

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY_DIR = ROOT / "deploy"
PRIMARY_INIT = DEPLOY_DIR / "postgres" / "primary-init.sh"
STANDBY_ENTRYPOINT = DEPLOY_DIR / "postgres" / "standby-entrypoint.sh"

PGDATA_MOUNT = "/var/lib/postgresql/data"
INITDB_DIR = "/docker-entrypoint-initdb.d/"
POSTGRES_PORT = 5432
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
HEALTHY = "service_healthy"
# Read by both programs (the default of --log-level), besides their LATITUDE_<PROGRAM>_ settings.
LOG_LEVEL = "LATITUDE_LOG_LEVEL"

Compose = dict[str, Any]
Service = dict[str, Any]


def postgres_name(region: str) -> str:
    return f"postgres-{region}"


def agent_name(region: str) -> str:
    return f"agent-{region}"


# --- reading compose ------------------------------------------------------------------------


def load_compose() -> Compose:
    with COMPOSE_FILE.open(encoding="utf-8") as f:
        document = yaml.safe_load(f)
    assert isinstance(document, dict), f"{COMPOSE_FILE} is not a YAML mapping"
    assert isinstance(document.get("services"), dict), f"{COMPOSE_FILE} has no services mapping"
    return document


def environment(service: Service) -> dict[str, str]:
    """The service's variables as written, ${VAR:-default} included."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.partition("=")[::2] for item in raw)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def interpolate(value: str) -> str:
    """What compose makes of ``value`` when none of the variables it names is set."""
    value = re.sub(r"\$\{[A-Za-z_]\w*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)
    return value.replace("$$", "$")


def args_of(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(arg) for arg in value]


def long_flags(args: list[str]) -> dict[str, str]:
    """``--name=value`` and ``--name value`` as {name: value}; a bare ``--flag`` maps to ""."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if not eq and i + 1 < len(args) and not args[i + 1].startswith("-"):
                value = args[i + 1]
                i += 1
            flags[name] = value
        i += 1
    return flags


def postgres_settings(service: Service) -> dict[str, str]:
    """The ``-c name=value`` settings on a postgres service's command line."""
    settings: dict[str, str] = {}
    for flag, value in itertools.pairwise(args_of(service.get("command"))):
        if flag == "-c":
            name, _, setting = value.partition("=")
            settings[name.strip()] = setting.strip()
    return settings


def depends_on(service: Service) -> dict[str, str]:
    """{dependency: condition}, for both the list and the mapping form."""
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def mounts(service: Service) -> dict[str, str]:
    """{target: source} for the short ``source:target[:mode]`` and the long form."""
    result: dict[str, str] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            result[volume["target"]] = volume.get("source", "")
        else:
            parts = volume.split(":")
            if len(parts) == 1:
                result[parts[0]] = ""
            else:
                result[parts[1]] = parts[0]
    return result


def addresses(value: str) -> list[tuple[str, str]]:
    return [tuple(item.strip().rpartition(":")[::2]) for item in value.split(",") if item.strip()]


def deploy_scripts(service: Service) -> list[Path]:
    return [(ROOT / s).resolve() for s in mounts(service).values() if s.startswith("./deploy/")]


def script_inputs(service: Service) -> tuple[set[str], set[str]]:
    """The DEPLOY_* variables the service's deploy scripts read, and those they need set (the
    ones some reference uses without a ${VAR:-default})."""
    read: set[str] = set()
    required: set[str] = set()
    for path in deploy_scripts(service):
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        for brace, name, default in re.findall(r"\$(\{?)(DEPLOY_\w+)(:?[-=+])?", text):
            read.add(name)
            if not (brace and default):
                required.add(name)
    return read, required


# --- the programs ---------------------------------------------------------------------------


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


@functools.cache
def agent_parser() -> argparse.ArgumentParser:
    """The parser ``agent.main.main`` builds (it has no parse function of its own): main runs
    until it parses its arguments, and is stopped there."""

    def stop(parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        raise _Parsed(parser)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", stop):
        try:
            agent_main.main([])
        except _Parsed as parsed:
            return parsed.parser
    raise AssertionError("agent.main.main returned without parsing its arguments")


def agent_flags(argv: list[str]) -> dict[str, Any]:
    args = agent_parser().parse_args(argv)
    return {name: getattr(args, name) for name in agent_main._FLAGS}


@dataclasses.dataclass(frozen=True)
class Program:
    script: str  # the console script, first word of the service's command
    config: type
    section: str
    env_prefix: str
    required: tuple[str, ...]  # settings compose must give, in the environment or as a flag
    flags: Callable[[list[str]], dict[str, Any]]  # argv -> the flags main hands to the loader

    @property
    def settings(self) -> set[str]:
        """Every environment variable the program reads."""
        fields = dataclasses.fields(self.config)
        return {self.env_prefix + field.name.upper() for field in fields} | {LOG_LEVEL}


AGENT = Program(
    "latitude-agent",
    AgentConfig,
    "agent",
    "LATITUDE_AGENT_",
    ("region", "coordinators", "db_host"),
    agent_flags,
)
COORDINATOR = Program(
    "latitude-coordinator",
    CoordinatorConfig,
    "coordinator",
    "LATITUDE_COORDINATOR_",
    ("etcd", "listen"),
    lambda argv: parse_coordinator_args(argv)[1],
)


def program_of(name: str, topology: Topology) -> Program | None:
    if name in {agent_name(r.name) for r in topology.regions}:
        return AGENT
    return COORDINATOR if name in topology.coordinators else None


def program_config(name: str, service: Service, program: Program) -> tuple[Any, list[str]]:
    """The settings the service's program would start with (None if it would not start), and
    what is wrong on the way: its command through its own parser, its environment (defaults
    substituted) through latitude.config.load."""
    args = args_of(service.get("command"))
    if not args or args[0] != program.script:
        return None, [f"{name}: command must start with {program.script}, got {args}"]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(errors):
            flags = program.flags(args[1:])
    except SystemExit:
        error = (errors.getvalue().strip().splitlines() or ["exits"])[-1]
        return None, [f"{name}: {program.script} refuses {args[1:]}: {error}"]
    env = {key: interpolate(value) for key, value in environment(service).items()}
    problems = [
        f"{name}: sets neither {program.env_prefix}{setting.upper()} nor a --{setting} flag"
        for setting in program.required
        if not env.get(program.env_prefix + setting.upper()) and flags.get(setting) is None
    ]
    try:
        config = configuration.load(
            program.config,
            section=program.section,
            env_prefix=program.env_prefix,
            env=env,
            flags=flags,
        )
    except ConfigError as err:
        return None, [*problems, f"{name}: {program.script} would refuse its settings: {err}"]
    return config, problems


def health_problems(name: str, service: Service, listen: str) -> list[str]:
    """The service's healthcheck asks grpc.health.v1 on this host, at the port it listens on."""
    test = args_of((service.get("healthcheck") or {}).get("test"))
    if len(test) < 4 or test[:3] != ["CMD", "python", "-c"]:
        return [f"{name}: healthcheck must be [CMD, python, -c, <grpc.health.v1 check>]: {test}"]
    try:
        compile(test[3], f"{name} healthcheck", "exec")
    except SyntaxError as err:
        return [f"{name}: healthcheck is not valid Python: {err}"]
    asked = re.findall(r"insecure_channel\(\s*[\"']([^\"']+)[\"']", test[3])
    port = parse_host_port(listen, "listen")[1]
    if "HealthStub" not in test[3] or asked != [f"127.0.0.1:{port}"]:
        return [f"{name}: healthcheck asks {asked}, not grpc.health.v1 at 127.0.0.1:{port}"]
    return []


# --- checks on compose ----------------------------------------------------------------------
# Each takes the parsed compose file and the topology it should describe.


def service_set_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    services = set(compose["services"])
    expected = {
        *topology.etcd_members,
        *topology.coordinators,
        *(postgres_name(r.name) for r in topology.regions),
        *(agent_name(r.name) for r in topology.regions),
    }
    problems = [f"service {name} is missing" for name in sorted(expected - services)]
    problems += [
        f"service {name} is not in DEFAULT_TOPOLOGY (unknown region or member?)"
        for name in sorted(services - expected)
    ]
    return problems


def replication_settings_problems(
    compose: Compose, topology: Topology = DEFAULT_TOPOLOGY
) -> list[str]:
    """Every region's PostgreSQL can serve standbys once promoted, so all carry the settings."""
    problems = []
    for region in topology.regions:
        name = postgres_name(region.name)
        settings = postgres_settings(compose["services"].get(name, {}))
        if settings.get("wal_level") not in {"replica", "logical"}:
            problems.append(f"{name}: wal_level must be replica, got {settings.get('wal_level')}")
        for setting in ("wal_log_hints", "hot_standby"):
            if settings.get(setting) != "on":
                problems.append(f"{name}: {setting} must be on, got {settings.get(setting)}")
        for setting, minimum in (
            ("max_wal_senders", 2 * len(topology.regions)),
            ("max_replication_slots", len(topology.standbys)),
        ):
            value = settings.get(setting, "")
            if not value.isdigit() or int(value) < minimum:
                problems.append(f"{name}: {setting} must be at least {minimum}, got {value!r}")
    return problems


def primary_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    name = postgres_name(topology.primary.name)
    service = compose["services"].get(name)
    if service is None:
        return [f"the initial primary's service {name} is missing"]
    problems = []
    env = environment(service)
    entrypoint = " ".join(args_of(service.get("entrypoint")))
    if "standby" in entrypoint:
        problems.append(
            f"{name} is the initial primary but runs a standby entrypoint: {entrypoint}"
        )
    for key in ("DEPLOY_PRIMARY_HOST", "DEPLOY_SLOT_NAME"):
        if key in env:
            problems.append(f"{name} is the initial primary but has the standby setting {key}")
    if not any(
        target.startswith(INITDB_DIR) and Path(source).name == PRIMARY_INIT.name
        for target, source in mounts(service).items()
    ):
        problems.append(f"{name} does not mount {PRIMARY_INIT.name} into {INITDB_DIR}")
    slots = sorted(s.strip() for s in env.get("DEPLOY_STANDBY_SLOTS", "").split(",") if s.strip())
    expected = sorted(r.slot_name for r in topology.standbys)
    if slots != expected:
        problems.append(f"{name}: DEPLOY_STANDBY_SLOTS is {slots}, expected the slots {expected}")
    return problems


def standby_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    primary = postgres_name(topology.primary.name)
    problems = []
    for region in topology.standbys:
        name = postgres_name(region.name)
        service = compose["services"].get(name)
        if service is None:
            problems.append(f"standby service {name} is missing")
            continue
        env = environment(service)
        entrypoint = args_of(service.get("entrypoint"))
        script_mounts = [
            target
            for target, source in mounts(service).items()
            if Path(source).name == STANDBY_ENTRYPOINT.name
        ]
        if not entrypoint or entrypoint[0] not in script_mounts:
            problems.append(
                f"{name}: entrypoint {entrypoint} is not the mounted {STANDBY_ENTRYPOINT.name} "
                f"(mounted at {script_mounts})"
            )
        for key, expected in (
            ("DEPLOY_PRIMARY_HOST", primary),
            ("DEPLOY_SLOT_NAME", region.slot_name),
        ):
            if env.get(key) != expected:
                problems.append(f"{name}: {key} is {env.get(key)!r}, expected {expected!r}")
    return problems


def settings_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    """Every variable a service sets is read there: by its latitude program (a field of the
    program's config), or by the deploy scripts it runs (DEPLOY_*); and the scripts get every
    input they need. No other service carries a LATITUDE_ name."""
    problems = []
    for name, service in compose["services"].items():
        env = environment(service)
        program = program_of(name, topology)
        if program is not None:
            problems += [
                f"{name}: {key} is no setting of {program.script} "
                f"(a {program.env_prefix}<FIELD> of {program.config.__name__}, or {LOG_LEVEL})"
                for key in env
                if key not in program.settings
            ]
            continue
        read, required = script_inputs(service)
        for key in env:
            if key.startswith("LATITUDE_"):
                problems.append(f"{name}: {key} looks like a setting, but {name} runs no program")
            elif key.startswith("DEPLOY_") and key not in read:
                problems.append(f"{name}: {key} is read by none of its deploy scripts")
        problems += [
            f"{name}: its deploy scripts need {key}" for key in sorted(required - set(env))
        ]
    return problems


def dependency_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    services = compose["services"]
    graph = {name: list(depends_on(service)) for name, service in services.items()}
    problems = [
        f"{name} depends on {dependency}, which is not a service"
        for name, dependencies in graph.items()
        for dependency in dependencies
        if dependency not in services
    ]
    # Depth-first search; a node met again while still on the path closes a cycle.
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for dependency in graph.get(node, []):
            if state.get(dependency) == "open":
                cycle = [*path[path.index(dependency) :], dependency]
                problems.append("depends_on cycle: " + " -> ".join(cycle))
            elif dependency in graph and dependency not in state:
                visit(dependency)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return problems


def ordering_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    services = compose["services"]
    primary = postgres_name(topology.primary.name)
    problems = []

    def require(name: str, dependency: str) -> None:
        condition = depends_on(services.get(name, {})).get(dependency)
        if condition != HEALTHY:
            problems.append(f"{name} must depend on {dependency} ({HEALTHY}), got {condition}")

    for region in topology.standbys:
        require(postgres_name(region.name), primary)
    for region in topology.regions:
        agent = agent_name(region.name)
        require(agent, postgres_name(region.name))
        for coordinator in topology.coordinators:
            require(agent, coordinator)
        for other in topology.regions:
            if other != region and postgres_name(other.name) in depends_on(services.get(agent, {})):
                problems.append(f"{agent} depends on another region's {postgres_name(other.name)}")
    for coordinator in topology.coordinators:
        for member in topology.etcd_members:
            require(coordinator, member)
    return problems


def etcd_config(service: Service) -> dict[str, str]:
    """The member's settings: ETCD_* environment variables, overridden by command-line flags."""
    config = {
        key.removeprefix("ETCD_").lower().replace("_", "-"): value
        for key, value in environment(service).items()
        if key.startswith("ETCD_")
    }
    config.update(long_flags(args_of(service.get("command"))))
    return config


def etcd_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    expected_cluster = {m: f"http://{m}:{ETCD_PEER_PORT}" for m in topology.etcd_members}
    problems = []
    tokens = set()
    for member in topology.etcd_members:
        service = compose["services"].get(member)
        if service is None:
            problems.append(f"etcd member {member} is missing")
            continue
        config = etcd_config(service)
        tokens.add(config.get("initial-cluster-token"))
        entries = [e for e in config.get("initial-cluster", "").split(",") if e]
        cluster = dict(entry.partition("=")[::2] for entry in entries)
        if cluster != expected_cluster or len(entries) != len(expected_cluster):
            problems.append(
                f"{member}: --initial-cluster is {entries}, expected {expected_cluster}"
            )
        for setting, expected in (
            ("name", member),
            ("initial-advertise-peer-urls", expected_cluster[member]),
            ("advertise-client-urls", f"http://{member}:{ETCD_CLIENT_PORT}"),
            ("initial-cluster-state", "new"),  # a static cluster
        ):
            if config.get(setting) != expected:
                problems.append(
                    f"{member}: --{setting} is {config.get(setting)!r}, not {expected!r}"
                )
        data_dir = config.get("data-dir", "")
        if not mounts(service).get(data_dir):
            problems.append(f"{member}: data dir {data_dir!r} is not on a volume")
        health = " ".join(args_of((service.get("healthcheck") or {}).get("test")))
        if "etcdctl" not in health or "endpoint health" not in health:
            problems.append(f"{member}: healthcheck must run `etcdctl endpoint health`: {health!r}")
    if len(tokens) != 1 or None in tokens:
        problems.append(f"etcd members must share one --initial-cluster-token, got {tokens}")
    return problems


def coordinator_configs(compose: Compose, topology: Topology) -> dict[str, Any]:
    """{coordinator service: the CoordinatorConfig it starts with}, for those that would start."""
    configs = {}
    for name in topology.coordinators:
        if name in compose["services"]:
            config, _ = program_config(name, compose["services"][name], COORDINATOR)
            if config is not None:
                configs[name] = config
    return configs


def coordinator_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    etcd = sorted(f"{m}:{ETCD_CLIENT_PORT}" for m in topology.etcd_members)
    regions = sorted(r.name for r in topology.regions)
    problems = []
    for name in topology.coordinators:
        service = compose["services"].get(name)
        if service is None:
            problems.append(f"coordinator {name} is missing")
            continue
        config, found = program_config(name, service, COORDINATOR)
        problems += found
        if config is None:
            continue
        host, port = parse_host_port(config.listen, "listen")
        for what, value, expected in (
            ("id", config.id, name),
            ("etcd", sorted(config.etcd), etcd),
            ("regions", sorted(config.regions), regions),
            ("advertised address", config.advertised, f"{name}:{port}"),
        ):
            if value != expected:
                problems.append(f"{name}: {what} is {value!r}, expected {expected!r}")
        if host not in {"0.0.0.0", "::"}:
            problems.append(f"{name}: listens on {config.listen}, out of the agents' reach")
        problems += health_problems(name, service, config.listen)
    return problems


def agent_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    services = compose["services"]
    coordinators = sorted(c.advertised for c in coordinator_configs(compose, topology).values())
    problems = []
    for region in topology.regions:
        name = agent_name(region.name)
        service = services.get(name)
        if service is None:
            problems.append(f"agent {name} is missing")
            continue
        database = services.get(postgres_name(region.name), {})
        pgdata_volume = mounts(database).get(PGDATA_MOUNT)
        if not pgdata_volume or mounts(service).get(PGDATA_MOUNT) != pgdata_volume:
            problems.append(
                f"{name} must mount its region's PGDATA volume {pgdata_volume!r} at "
                f"{PGDATA_MOUNT}, got {mounts(service).get(PGDATA_MOUNT)!r}"
            )
        if service.get("user") != "postgres":
            problems.append(f"{name} must run as the postgres user that owns PGDATA")
        config, found = program_config(name, service, AGENT)
        problems += found
        if config is None:
            continue
        db_env = environment(database)
        for what, value, expected in (
            ("region", config.region, region.name),
            # DEFAULT_TOPOLOGY's RegionSpec, for geographic routing.
            ("latitude", config.latitude, region.latitude),
            ("longitude", config.longitude, region.longitude),
            ("coordinators", sorted(config.coordinators), coordinators),
            # Its own region's PostgreSQL, over the compose network, as the superuser.
            ("db_host", config.db_host, postgres_name(region.name)),
            ("db_port", config.db_port, POSTGRES_PORT),
            ("db_user", config.db_user, interpolate(db_env.get("POSTGRES_USER", "postgres"))),
            # RTT is measured to every other region's PostgreSQL.
            (
                "peers",
                sorted(config.peers),
                sorted(
                    f"{other.name}={postgres_name(other.name)}:{POSTGRES_PORT}"
                    for other in topology.regions
                    if other != region
                ),
            ),
            # The same ${VAR:-default}, so that overriding the password reaches both.
            (
                "LATITUDE_AGENT_DB_PASSWORD",
                environment(service).get("LATITUDE_AGENT_DB_PASSWORD"),
                db_env.get("POSTGRES_PASSWORD"),
            ),
        ):
            if value != expected:
                problems.append(f"{name}: {what} is {value!r}, expected {expected!r}")
        problems += health_problems(name, service, config.listen)
    return problems


def declaration_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    volumes = set(compose.get("volumes") or {})
    networks = set(compose.get("networks") or {})
    problems = []
    for name, service in compose["services"].items():
        for target, source in mounts(service).items():
            named = source and not source.startswith((".", "/", "~"))
            if named and source not in volumes:
                problems.append(f"{name} mounts volume {source} at {target}; it is not declared")
        for network in service.get("networks") or []:
            if network not in networks:
                problems.append(f"{name} joins network {network}; it is not declared")
    return problems


def image_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    problems = []
    for name, service in compose["services"].items():
        image = service.get("image", "")
        if "build" in service:
            context = service["build"]["context"] if isinstance(service["build"], dict) else "."
            if (ROOT / context).resolve() != ROOT:
                problems.append(f"{name} builds from {context}, not the repository root")
            continue
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        if not tag or tag == "latest":
            problems.append(f"{name}: image {image!r} must be pinned to a version")
    return problems


def password_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    return [
        f"{name}: {key} must come from the environment as ${{VAR:-default}}"
        for name, service in compose["services"].items()
        for key, value in environment(service).items()
        if "PASSWORD" in key and not re.fullmatch(r"\$\{[A-Z_]+:-[^}]*\}", value)
    ]


# --- checks on files ------------------------------------------------------------------------


def script_problems(path: Path) -> list[str]:
    if not path.is_file():
        return [f"{path} does not exist"]
    problems = []
    if not os.access(path, os.X_OK):
        problems.append(f"{path} is not executable (chmod +x)")
    if not path.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n"):
        problems.append(f"{path} must start with #!/usr/bin/env bash")
    result = subprocess.run(
        ["bash", "-n", str(path)], capture_output=True, text=True, check=False, timeout=30
    )
    if result.returncode != 0:
        problems.append(f"bash -n {path} failed: {result.stderr.strip()}")
    return problems


def one_line(script: str) -> str:
    return re.sub(r"\\\n\s*", " ", script)


def standby_script_problems(script: str) -> list[str]:
    calls = [
        line
        for line in one_line(script).splitlines()
        if "pg_basebackup " in line and not line.lstrip().startswith("#")
    ]
    if len(calls) != 1:
        return [f"expected one pg_basebackup call in {STANDBY_ENTRYPOINT.name}, found {len(calls)}"]
    options = calls[0].split("pg_basebackup", 1)[1]
    problems = [
        f"pg_basebackup call lacks {option!r}: {calls[0].strip()}"
        for option in ('-h "$DEPLOY_PRIMARY_HOST"', '-S "$DEPLOY_SLOT_NAME"', "-X stream", "-R")
        if option not in options
    ]
    if not re.search(r'^exec "\$@"$', script, re.MULTILINE):
        problems.append(f"{STANDBY_ENTRYPOINT.name} must end by exec'ing the command (postgres)")
    return problems


def primary_init_problems(script: str) -> list[str]:
    required = {
        "DEPLOY_STANDBY_SLOTS": "read the slot names from DEPLOY_STANDBY_SLOTS",
        "pg_create_physical_replication_slot": "create the physical slots",
        "WITH LOGIN REPLICATION": "create the replication role",
        "host replication": "allow replication connections in pg_hba.conf",
    }
    return [
        f"{PRIMARY_INIT.name} must {why}"
        for needle, why in required.items()
        if needle not in script
    ]


def dockerfile_problems(text: str) -> list[str]:
    instructions = one_line(text)
    problems = []
    if not re.search(r"^FROM python:3\.11-slim-bookworm\b", instructions, re.MULTILINE):
        problems.append("Dockerfile must build FROM python:3.11-slim-bookworm")
    if not re.search(r"^RUN .*\bpip install \.(?=[\s;&]|$)", instructions, re.MULTILINE):
        problems.append("Dockerfile must install the package with `pip install .`")
    if not re.search(r"apt-get install [^\n]*\bpostgresql-15\b", instructions):
        problems.append("Dockerfile must install postgresql-15 (pg_rewind, pg_basebackup)")
    users = re.findall(r"^USER\s+(\S+)", instructions, re.MULTILINE)
    if not users or users[-1] in {"root", "0"} or users[-1].startswith(("root:", "0:")):
        problems.append(f"Dockerfile must end as a non-root USER, got {users}")
    if "--uid 999" not in instructions:
        problems.append("Dockerfile must give postgres uid 999, the owner of PGDATA in postgres:15")
    return problems


# --- the real files -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Compose:
    return load_compose()


COMPOSE_CHECKS: dict[str, Callable[[Compose], list[str]]] = {
    "services": service_set_problems,
    "replication settings": replication_settings_problems,
    "primary": primary_problems,
    "standbys": standby_problems,
    "settings": settings_problems,
    "dependencies": dependency_problems,
    "ordering": ordering_problems,
    "etcd": etcd_problems,
    "agents": agent_problems,
    "coordinators": coordinator_problems,
    "declarations": declaration_problems,
    "images": image_problems,
    "passwords": password_problems,
}

FILE_CHECKS: dict[str, tuple[Path, Callable[[str], list[str]]]] = {
    "standby entrypoint": (STANDBY_ENTRYPOINT, standby_script_problems),
    "primary init": (PRIMARY_INIT, primary_init_problems),
    "Dockerfile": (DOCKERFILE, dockerfile_problems),
}


@pytest.mark.parametrize("check", COMPOSE_CHECKS)
def test_compose_matches_topology(compose: Compose, check: str) -> None:
    problems = COMPOSE_CHECKS[check](compose)
    assert not problems, f"docker-compose.yml ({check}):\n" + "\n".join(problems)


@pytest.mark.parametrize("check", FILE_CHECKS)
def test_file_matches(check: str) -> None:
    path, problems_in = FILE_CHECKS[check]
    assert path.is_file(), f"{path} is missing"
    problems = problems_in(path.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_referenced_deploy_scripts_exist_and_parse(compose: Compose) -> None:
    scripts = {path for service in compose["services"].values() for path in deploy_scripts(service)}
    assert {PRIMARY_INIT, STANDBY_ENTRYPOINT} <= scripts, (
        f"docker-compose.yml should mount both deploy scripts, mounts {sorted(scripts)}"
    )
    assert shutil.which("bash"), "bash is needed to syntax-check the deploy scripts"
    every_script = scripts | set(DEPLOY_DIR.rglob("*.sh"))
    problems = [problem for path in sorted(every_script) for problem in script_problems(path)]
    assert not problems, "\n".join(problems)


def test_settings_may_come_from_flags(compose: Compose) -> None:
    """The programs' own precedence: a flag in the command stands in for an environment
    variable, so a required setting given as a flag is enough."""
    changed = copy.deepcopy(compose)
    for service, program, setting in (
        (C, COORDINATOR, "listen"),
        (A, AGENT, "region"),
    ):
        env = dict(changed["services"][service]["environment"])
        value = env.pop(program.env_prefix + setting.upper())
        changed["services"][service]["environment"] = env
        changed["services"][service]["command"] = [program.script, f"--{setting}", value]
    problems = coordinator_problems(changed) + agent_problems(changed)
    assert not problems, "\n".join(problems)


# --- every check can fail -------------------------------------------------------------------

_DROP = object()


def _set(service: str, *path: str, value: Any = _DROP) -> Callable[[Compose], None]:
    """services[service][path...] = value, or without a value its removal. Each mapping on the
    way is copied first: YAML anchors share them between services."""

    def mutate(c: Compose) -> None:
        node = c["services"]
        for key in (service, *path[:-1]):
            node[key] = dict(node.get(key) or {})
            node = node[key]
        if value is _DROP:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return mutate


def _env(service: str, key: str, value: Any = _DROP) -> Callable[[Compose], None]:
    return _set(service, "environment", key, value=value)


def _health_port(service: str, port: int) -> Callable[[Compose], None]:
    """The service's healthcheck, asking another port."""

    def mutate(c: Compose) -> None:
        test = args_of(c["services"][service]["healthcheck"]["test"])
        asking = [re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", arg) for arg in test]
        _set(service, "healthcheck", "test", value=asking)(c)

    return mutate


def _replace_arg(service: str, old: str, new: str) -> Callable[[Compose], None]:
    def mutate(c: Compose) -> None:
        args = args_of(c["services"][service]["command"])
        assert old in args, f"{old!r} is not in {service}'s command {args}"
        c["services"][service]["command"] = [new if arg == old else arg for arg in args]

    return mutate


T = DEFAULT_TOPOLOGY
PRIMARY = postgres_name(T.primary.name)
STANDBY = postgres_name(T.standbys[0].name)
STANDBY_SLOT = T.standbys[0].slot_name
PRIMARY_DATA, STANDBY_DATA = f"pgdata-{T.primary.name}", f"pgdata-{T.standbys[0].name}"
# The agent and the coordinator the mutations break.
A, C = agent_name(T.standbys[0].name), T.coordinators[1]
FIRST_C = T.coordinators[0]
ETCD, LAST_ETCD = T.etcd_members[1], T.etcd_members[-1]
ALL_ETCD = ",".join(f"{m}:{ETCD_CLIENT_PORT}" for m in T.etcd_members)
INITIAL_CLUSTER = ",".join(f"{m}=http://{m}:{ETCD_PEER_PORT}" for m in T.etcd_members)
AGENT_ENV, COORDINATOR_ENV = AGENT.env_prefix, COORDINATOR.env_prefix


MUTATIONS: dict[str, dict[str, Callable[[Compose], None]]] = {
    "services": {
        "agent missing": lambda c: c["services"].pop(A),
        "unknown region": lambda c: c["services"].update({"postgres-x": c["services"][STANDBY]}),
    },
    "replication settings": {
        "wal_log_hints off": _replace_arg(PRIMARY, "wal_log_hints=on", "wal_log_hints=off"),
    },
    "primary": {
        "primary runs the standby entrypoint": lambda c: c["services"][PRIMARY].update(
            entrypoint=c["services"][STANDBY]["entrypoint"]
        ),
        "primary misses a slot": _env(PRIMARY, "DEPLOY_STANDBY_SLOTS", STANDBY_SLOT),
    },
    "standbys": {
        "standby uses another slot": _env(STANDBY, "DEPLOY_SLOT_NAME", "slot_x"),
        "standby clones a standby": _env(STANDBY, "DEPLOY_PRIMARY_HOST", STANDBY),
        "standby without its entrypoint": _set(STANDBY, "entrypoint", value=None),
    },
    # Variables nothing reads, or that a script needs and does not get.
    "settings": {
        "agent keeps an old variable": _env(A, "LATITUDE_DATABASE_DSN", "postgresql://x"),
        "agent sets no field": _env(A, AGENT_ENV + "PGDATA", PGDATA_MOUNT),
        "agent relies on PGPASSWORD": _env(A, "PGPASSWORD", "${POSTGRES_PASSWORD:-x}"),
        "coordinator gets an agent setting": _env(C, AGENT_ENV + "REGION", "us-east-1"),
        "coordinator setting by an old name": _env(C, "LATITUDE_ETCD_ENDPOINTS", ALL_ETCD),
        "database gets a latitude setting": _env(PRIMARY, "LATITUDE_REGION", "us-east-1"),
        "script input no script reads": _env(PRIMARY, "DEPLOY_SLOT_NAME", "slot_x"),
        "script input missing": _env(STANDBY, "DEPLOY_REPLICATION_USER"),
    },
    "dependencies": {
        "dependency on nothing": _set(A, "depends_on", "postgres-x", value={}),
        "dependency cycle": _set(ETCD, "depends_on", C, value={}),
    },
    "ordering": {
        "coordinator misses an etcd member": _set(C, "depends_on", LAST_ETCD),
        "standby does not wait for a healthy primary": _set(
            STANDBY, "depends_on", PRIMARY, "condition", value="service_started"
        ),
        "agent waits for another region": _set(
            A, "depends_on", value={PRIMARY: {"condition": HEALTHY}}
        ),
    },
    "etcd": {
        "initial cluster misses a member": _replace_arg(
            ETCD, INITIAL_CLUSTER, INITIAL_CLUSTER.rsplit(",", 1)[0]
        ),
        "etcd member misnamed": _replace_arg(ETCD, f"--name={ETCD}", "--name=etcd-9"),
    },
    # The agent, as it would start.
    "agents": {
        "agent runs another program": _set(A, "command", value=[COORDINATOR.script]),
        "agent flag the program lacks": _set(A, "command", value=[AGENT.script, "--pgdata", "/x"]),
        "agent without its region": _env(A, AGENT_ENV + "REGION"),
        "agent without coordinators": _env(A, AGENT_ENV + "COORDINATORS"),
        "agent without its database": _env(A, AGENT_ENV + "DB_HOST"),
        "agent capacity the loader refuses": _env(A, AGENT_ENV + "CAPACITY", "0"),
        "agent port that is no number": _env(A, AGENT_ENV + "DB_PORT", "54x2"),
        "agent default the loader refuses": _env(A, AGENT_ENV + "PRIORITY", "${P:--1}"),
        "agent in the wrong region": _env(A, AGENT_ENV + "REGION", "us-east-1"),
        "agent flag overrides its region": _set(
            A, "command", value=[AGENT.script, "--region", "us-east-1"]
        ),
        "agent in the wrong place": _env(A, AGENT_ENV + "LONGITUDE", "6.3"),
        "agent on another region's database": _env(A, AGENT_ENV + "DB_HOST", PRIMARY),
        "agent on another database port": _env(A, AGENT_ENV + "DB_PORT", "5433"),
        "agent misses a peer": _env(A, AGENT_ENV + "PEERS", f"{T.primary.name}={PRIMARY}:5432"),
        "agent with its own password": _env(A, AGENT_ENV + "DB_PASSWORD", "${PW:-x}"),
        "agent knows one coordinator": _env(A, AGENT_ENV + "COORDINATORS", f"{FIRST_C}:50051"),
        "agent health on another port": _env(A, AGENT_ENV + "LISTEN", "0.0.0.0:50062"),
        "agent without a health check": _set(A, "healthcheck"),
        "agent on another region's data": _set(A, "volumes", value=[f"{PRIMARY_DATA}:/x"]),
    },
    # The coordinator, as it would start.
    "coordinators": {
        "coordinator flag the program lacks": _set(
            C, "command", value=[COORDINATOR.script, "--etcd-endpoints", ALL_ETCD]
        ),
        "coordinator without etcd": _env(C, COORDINATOR_ENV + "ETCD"),
        "coordinator without listen": _env(C, COORDINATOR_ENV + "LISTEN"),
        "coordinator ack_every the loader refuses": _env(C, COORDINATOR_ENV + "ACK_EVERY", "9"),
        "coordinator sees one etcd member": _env(C, COORDINATOR_ENV + "ETCD", "etcd-1:2379"),
        "coordinator misses a region": _env(C, COORDINATOR_ENV + "REGIONS", "us-east-1"),
        "coordinator misnamed": _set(C, "command", value=[COORDINATOR.script, "--id", "x"]),
        "coordinator advertises another": _env(C, COORDINATOR_ENV + "ADVERTISE", f"{FIRST_C}:1"),
        "coordinator on loopback": _env(C, COORDINATOR_ENV + "LISTEN", "127.0.0.1:50051"),
        "coordinator health on another port": _health_port(C, 50052),
    },
    "declarations": {"volume not declared": lambda c: c["volumes"].pop(STANDBY_DATA)},
    "images": {"unpinned image": _set(ETCD, "image", value="quay.io/coreos/etcd:latest")},
    "passwords": {"hard-coded password": _env(PRIMARY, "POSTGRES_PASSWORD", "hunter2")},
}
CASES = [(check, mutation) for check, cases in MUTATIONS.items() for mutation in cases]


@pytest.mark.parametrize(("check", "mutation"), CASES, ids=[m for _, m in CASES])
def test_check_catches_broken_compose(compose: Compose, check: str, mutation: str) -> None:
    broken = copy.deepcopy(compose)
    MUTATIONS[check][mutation](broken)
    assert broken != compose, f"the mutation changed nothing: {mutation}"
    assert COMPOSE_CHECKS[check](broken), f"the {check!r} check did not notice: {mutation}"
    assert not COMPOSE_CHECKS[check](compose), "a mutation leaked into the real compose file"


FILE_MUTATIONS: dict[str, dict[str, Callable[[str], str]]] = {
    "standby entrypoint": {
        "pg_basebackup without the slot": lambda t: t.replace('-S "$DEPLOY_SLOT_NAME"', ""),
    },
    "primary init": {
        "no slot created": lambda t: t.replace("pg_create_physical_replication_slot", "now"),
    },
    "Dockerfile": {
        "package not installed": lambda t: t.replace("pip install .;", "pip install x;"),
        "runs as root": lambda t: t + "\nUSER root\n",
        "another base image": lambda t: t.replace("3.11-slim-bookworm", "3.11"),
    },
}
FILE_CASES = [(check, mutation) for check, cases in FILE_MUTATIONS.items() for mutation in cases]


@pytest.mark.parametrize(("check", "mutation"), FILE_CASES, ids=[m for _, m in FILE_CASES])
def test_check_catches_broken_files(check: str, mutation: str) -> None:
    path, problems_in = FILE_CHECKS[check]
    text = path.read_text(encoding="utf-8")
    broken = FILE_MUTATIONS[check][mutation](text)
    assert broken != text, f"the mutation changed nothing: {mutation}"
    assert problems_in(broken), f"the {check!r} check did not notice: {mutation}"


def test_check_catches_broken_scripts(tmp_path: Path) -> None:
    not_executable = tmp_path / "plain.sh"
    not_executable.write_text("#!/usr/bin/env bash\ntrue\n", encoding="utf-8")
    not_executable.chmod(0o644)
    assert script_problems(not_executable), "a script without the x bit passed"

    bad_syntax = tmp_path / "broken.sh"
    bad_syntax.write_text("#!/usr/bin/env bash\nif then fi\n", encoding="utf-8")
    bad_syntax.chmod(0o755)
    assert script_problems(bad_syntax), "a script that bash -n rejects passed"

    assert script_problems(tmp_path / "absent.sh"), "a missing script passed"
