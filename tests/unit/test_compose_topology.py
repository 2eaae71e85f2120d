"""docker-compose.yml runs the programs as they are, with what they need and nothing else.

The file is generated from DEFAULT_TOPOLOGY (latitude/stack/compose.py; test_compose_fresh.py
keeps the committed one fresh), so what generation makes true by construction (one service per
member and region, slots, the etcd cluster, ordering) is not checked here; what the generator
can still get wrong is, without a Docker engine: the coordinators, and the agent each region's
container runs under its PID 1 (latitude.region_container, whose own parser reads the command),
go through the programs' own argument parsers and ``latitude.config.load``, as the programs
would at start; every variable is read by someone; agents hold no password; the scripts in
deploy/ and the Dockerfile do what the services rely on. tests/compose runs the file in a real
engine.

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
from latitude import region_container
from latitude.errors import ConfigError
from latitude.netaddr import parse_host_port
from latitude.stack.postgres import AGENT_ROLE
from latitude.stack.topology import DEFAULT_TOPOLOGY, Topology

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY_DIR = ROOT / "deploy"
PRIMARY_INIT = DEPLOY_DIR / "postgres" / "primary-init.sh"
PRIMARY_FIRST_START = DEPLOY_DIR / "postgres" / "primary-first-start.sh"
STANDBY_FIRST_START = DEPLOY_DIR / "postgres" / "standby-first-start.sh"
# A region container's PID 1, as its command names it.
SUPERVISOR = ["python", "-m", "latitude.region_container"]

PGDATA_MOUNT = "/var/lib/postgresql/data"
ETCD_CLIENT_PORT = 2379
# Read by both programs (the default of --log-level), besides their LATITUDE_<PROGRAM>_ settings.
LOG_LEVEL = "LATITUDE_LOG_LEVEL"

Compose = dict[str, Any]
Service = dict[str, Any]


def postgres_name(region: str) -> str:
    """A region's container: PostgreSQL, its keeper and its agent."""
    return f"postgres-{region}"


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
    """The DEPLOY_* and POSTGRES_* variables the service's deploy scripts read, and those they
    need set (the ones some reference uses without a ${VAR:-default})."""
    read: set[str] = set()
    required: set[str] = set()
    for path in deploy_scripts(service):
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        pattern = r"\$(\{?)((?:DEPLOY|POSTGRES)_\w+)(:?[-=+])?"
        for brace, name, default in re.findall(pattern, text):
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


def supervised_agent(args: list[str]) -> tuple[list[str], Path]:
    """The agent's command line in a region container whose command is ``args``: what its PID
    1 runs (latitude.region_container.agent_argv), from the PID 1's own parser; and the lease's
    directory, which that PID 1 makes before the agent starts. SystemExit when that parser
    refuses ``args``."""
    if args[: len(SUPERVISOR)] != SUPERVISOR:
        raise SystemExit(f"not the region container's PID 1 ({' '.join(SUPERVISOR)})")
    parsed = region_container.parse_args(args[len(SUPERVISOR) :])
    agent = region_container.agent_argv(parsed.region, parsed.pg_data, parsed.fence_lease)
    return [AGENT.script, *agent[3:]], parsed.fence_lease.parent


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
    if name in {postgres_name(r.name) for r in topology.regions}:
        return AGENT
    return COORDINATOR if name in topology.coordinators else None


def program_config(name: str, service: Service, program: Program) -> tuple[Any, list[str]]:
    """The settings the service's program would start with (None if it would not start), and
    what is wrong on the way: its command through its own parser, its environment (defaults
    substituted) through latitude.config.load."""
    args = args_of(service.get("command"))
    errors = io.StringIO()
    prepared = None  # a directory the container's PID 1 makes, which the host need not have
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(errors):
            if program is AGENT:  # a region's: run by the container's PID 1
                args, prepared = supervised_agent(args)
            if not args or args[0] != program.script:
                return None, [f"{name}: command must start with {program.script}, got {args}"]
            flags = program.flags(args[1:])
    except SystemExit as stop:
        said = errors.getvalue().strip().splitlines() or [str(stop.code or "exits")]
        return None, [f"{name}: {program.script} refuses {args[1:]}: {said[-1]}"]
    env = {key: interpolate(value) for key, value in environment(service).items()}
    problems = [
        f"{name}: sets neither {program.env_prefix}{setting.upper()} nor a --{setting} flag"
        for setting in program.required
        if not env.get(program.env_prefix + setting.upper()) and flags.get(setting) is None
    ]
    is_dir = Path.is_dir
    try:
        with mock.patch.object(Path, "is_dir", lambda p: p == prepared or is_dir(p)):
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
    asked = re.findall(r"open_channel\(\s*[\"']([^\"']+)[\"']", test[3])
    port = parse_host_port(listen, "listen")[1]
    if "HealthStub" not in test[3] or asked != [f"127.0.0.1:{port}"]:
        return [f"{name}: healthcheck asks {asked}, not grpc.health.v1 at 127.0.0.1:{port}"]
    return []


# --- checks on compose ----------------------------------------------------------------------
# Each takes the parsed compose file and the topology it should describe.


def settings_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    """Every variable a service sets is read there: by its latitude program (a field of the
    program's config), or by the deploy scripts it runs (DEPLOY_*); and the scripts get every
    input they need. No other service carries a LATITUDE_ name."""
    problems = []
    for name, service in compose["services"].items():
        env = environment(service)
        program = program_of(name, topology)
        read, required = script_inputs(service)
        for key in env:
            if key.startswith(("DEPLOY_", "POSTGRES_")):
                if key not in read:
                    problems.append(f"{name}: {key} is read by none of its deploy scripts")
            elif program is None:
                if key.startswith("LATITUDE_"):
                    problems.append(f"{name}: {key} looks like a setting, but {name} runs none")
            elif key not in program.settings:
                problems.append(
                    f"{name}: {key} is no setting of {program.script} "
                    f"(a {program.env_prefix}<FIELD> of {program.config.__name__}, or {LOG_LEVEL})"
                )
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


def coordinator_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    """Each coordinator would start, where agents reach it, with etcd at addresses its client
    takes (coordinator/etcd.py builds one gRPC target of IP addresses: no names), and its
    health check asks its own port."""
    services = compose["services"]
    etcd_addresses = {
        interpolate(str(spec.get("ipv4_address", "")))
        for member in topology.etcd_members
        for spec in (services.get(member, {}).get("networks") or {}).values()
        if isinstance(spec, dict)
    }
    problems = []
    for name in topology.coordinators:
        service = services.get(name)
        if service is None:
            problems.append(f"coordinator {name} is missing")
            continue
        config, found = program_config(name, service, COORDINATOR)
        problems += found
        if config is None:
            continue
        host, _ = parse_host_port(config.listen, "listen")
        if host not in {"0.0.0.0", "::"}:
            problems.append(f"{name}: listens on {config.listen}, out of the agents' reach")
        for endpoint in config.etcd:
            etcd_host = parse_host_port(endpoint, "etcd")[0]
            if etcd_host not in etcd_addresses:
                problems.append(
                    f"{name}: etcd endpoint {endpoint} is not an etcd member's fixed address "
                    f"{sorted(etcd_addresses)}"
                )
        problems += health_problems(name, service, config.listen)
    return problems


def agent_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    """Each region's container starts its PID 1 as root (it prepares the volume, then runs
    everything as the postgres uid that owns PGDATA), its agent would start beside the data
    directory it fences, and the health check asks the agent's own port."""
    problems = []
    if region_container.OS_USER != "postgres":
        problems.append("the region's programs must run as postgres, the owner of PGDATA")
    for region in topology.regions:
        name = postgres_name(region.name)
        service = compose["services"].get(name)
        if service is None:
            problems.append(f"region container {name} is missing")
            continue
        if service.get("user") != "root":
            problems.append(f"{name}: its PID 1 must start as root to prepare the volume")
        config, found = program_config(name, service, AGENT)
        problems += found
        if config is None:
            continue
        problems += health_problems(name, service, config.listen)
        data = mounts(service).get(PGDATA_MOUNT, "")
        if config.pg_data is None or not str(config.pg_data).startswith(f"{PGDATA_MOUNT}/"):
            problems.append(f"{name}: the agent's pg_data {config.pg_data} is not on the volume")
        elif data != f"pgdata-{region.name}":
            problems.append(f"{name}: {PGDATA_MOUNT} is {data!r}, not pgdata-{region.name}")
    return problems


def credential_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    """Agents log in as their own role (not the superuser) with a password from a file on the
    credentials volume that the primary's first start writes (read-only to the other regions);
    no agent's environment carries a password (the region's PID 1 passes its programs what
    region_container.program_env leaves), and no other program's either."""
    services = compose["services"]
    primary = services.get(postgres_name(topology.primary.name), {})
    written = {source: target for target, source in mounts(primary).items()}
    problems = []
    for name, service in services.items():
        programs_see = environment(service)
        if program_of(name, topology) is AGENT:
            programs_see = region_container.program_env(programs_see)
        problems += [
            f"{name}: {key} holds a password ({value})"
            for key, value in programs_see.items()
            if "PASSWORD" in value or (key.endswith("PASSWORD") and value)
        ]
    for region in topology.regions:
        name = postgres_name(region.name)
        env = {k: interpolate(v) for k, v in environment(services.get(name, {})).items()}
        user = env.get("LATITUDE_AGENT_DB_USER", "postgres")
        if user != AGENT_ROLE:
            problems.append(f"{name} logs in as {user}, not {AGENT_ROLE}")
        password_file = env.get("LATITUDE_AGENT_DB_PASSWORD_FILE", "")
        volume = next(
            (
                (source, target)
                for target, source in mounts(services.get(name, {})).items()
                if password_file.startswith(f"{target}/")
            ),
            None,
        )
        if volume is None or written.get(volume[0]) is None:
            problems.append(
                f"{name}: db_password_file {password_file!r} is not on a volume the initial "
                f"primary writes ({sorted(written)})"
            )
        elif not region.initial_primary and not any(
            isinstance(v, str) and v.startswith(f"{volume[0]}:") and v.endswith(":ro")
            for v in services[name].get("volumes") or []
        ):
            problems.append(f"{name} must mount {volume[0]} read-only")
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


def password_problems(compose: Compose, topology: Topology = DEFAULT_TOPOLOGY) -> list[str]:
    return [
        f"{name}: {key} must come from the environment as ${{VAR:-default}}"
        for name, service in compose["services"].items()
        for key, value in environment(service).items()
        if key.endswith("PASSWORD") and not re.fullmatch(r"\$\{[A-Z_]+:-[^}]*\}", value)
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
        return [
            f"expected one pg_basebackup call in {STANDBY_FIRST_START.name}, found {len(calls)}"
        ]
    options = calls[0].split("pg_basebackup", 1)[1]
    problems = [
        f"pg_basebackup call lacks {option!r}: {calls[0].strip()}"
        for option in ('-h "$DEPLOY_PRIMARY_HOST"', '-S "$DEPLOY_SLOT_NAME"', "-X stream", "-R")
        if option not in options
    ]
    if not re.search(r'^mv -- "\$partial" "\$PGDATA"$', script, re.MULTILINE):
        problems.append(f"{STANDBY_FIRST_START.name} must move a whole clone into place")
    return problems


def primary_first_start_problems(script: str) -> list[str]:
    """The server settings reach postgresql.conf (the agent's pg_ctl start has no -c), and
    TCP logins need a password."""
    required = {
        '>>"$PGDATA/postgresql.conf"': "append the server settings to postgresql.conf",
        "--auth-host=scram-sha-256": "make TCP logins need a password",
        '"$DEPLOY_INIT_SCRIPT"': "run primary-init.sh",
        "listen_addresses=''": "initialise on a server no one reaches over TCP",
    }
    return [
        f"{PRIMARY_FIRST_START.name} must {why}"
        for needle, why in required.items()
        if needle not in script
    ]


def primary_init_problems(script: str) -> list[str]:
    required = {
        "DEPLOY_STANDBY_SLOTS": "read the slot names from DEPLOY_STANDBY_SLOTS",
        "pg_create_physical_replication_slot": "create the physical slots",
        "WITH LOGIN REPLICATION": "create the replication role",
        "host replication": "allow replication connections in pg_hba.conf",
        "\\i :role_sql": "create the agents' role (run agent-role.sql)",
        "umask 077": "write the agents' password readable by its owner only",
    }
    return [
        f"{PRIMARY_INIT.name} must {why}"
        for needle, why in required.items()
        if needle not in script
    ]


def dockerfile_problems(text: str) -> list[str]:
    instructions = one_line(text)
    problems = []
    base = re.search(
        r"^ARG PYTHON_IMAGE=(\S+)\nFROM \$\{PYTHON_IMAGE\}$", instructions, re.MULTILINE
    )
    if base is None or base.group(1) != "python:3.11-slim-bookworm":
        problems.append(
            "Dockerfile must build FROM ${PYTHON_IMAGE}, an ARG defaulting to "
            "python:3.11-slim-bookworm"
        )
    if not re.search(r"^RUN .*\bpip install \.(?=[\s;&]|$)", instructions, re.MULTILINE):
        problems.append("Dockerfile must install the package with `pip install .`")
    if not re.search(r"apt-get install [^\n]*\bpostgresql-15\b", instructions):
        problems.append("Dockerfile must install postgresql-15 (the regions' servers)")
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
    "settings": settings_problems,
    "dependencies": dependency_problems,
    "agents": agent_problems,
    "coordinators": coordinator_problems,
    "credentials": credential_problems,
    "declarations": declaration_problems,
    "passwords": password_problems,
}

FILE_CHECKS: dict[str, tuple[Path, Callable[[str], list[str]]]] = {
    "standby first start": (STANDBY_FIRST_START, standby_script_problems),
    "primary first start": (PRIMARY_FIRST_START, primary_first_start_problems),
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
    mounted = {path for service in compose["services"].values() for path in deploy_scripts(service)}
    for path in mounted:
        assert path.is_file(), f"docker-compose.yml mounts {path}, which does not exist"
    scripts = {path for path in mounted if path.suffix == ".sh"}
    assert {PRIMARY_INIT, PRIMARY_FIRST_START, STANDBY_FIRST_START} <= scripts, (
        f"docker-compose.yml should mount the deploy scripts, mounts {sorted(scripts)}"
    )
    assert shutil.which("bash"), "bash is needed to syntax-check the deploy scripts"
    every_script = scripts | set(DEPLOY_DIR.rglob("*.sh"))
    problems = [problem for path in sorted(every_script) for problem in script_problems(path)]
    assert not problems, "\n".join(problems)


def test_settings_may_come_from_flags(compose: Compose) -> None:
    """The coordinator's own precedence: a flag in the command stands in for an environment
    variable, so a required setting given as a flag is enough. (A region's agent gets flags
    from its PID 1 only: those region_container.agent_argv gives.)"""
    changed = copy.deepcopy(compose)
    env = dict(changed["services"][C]["environment"])
    value = env.pop(COORDINATOR.env_prefix + "LISTEN")
    changed["services"][C]["environment"] = env
    changed["services"][C]["command"] = [COORDINATOR.script, "--listen", value]
    problems = coordinator_problems(changed)
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


T = DEFAULT_TOPOLOGY
PRIMARY = postgres_name(T.primary.name)
STANDBY = postgres_name(T.standbys[0].name)
STANDBY_DATA = f"pgdata-{T.standbys[0].name}"
# The region container (its agent) and the coordinator the mutations break.
A, C = STANDBY, T.coordinators[1]
REGION_COMMAND = [
    *SUPERVISOR,
    f"--region={T.standbys[0].name}",
    f"--pg-data={PGDATA_MOUNT}/pgdata",
    "--first-start=/usr/local/bin/latitude-first-start.sh",
]
ETCD = T.etcd_members[1]
ALL_ETCD = ",".join(f"{m}:{ETCD_CLIENT_PORT}" for m in T.etcd_members)
AGENT_ENV, COORDINATOR_ENV = AGENT.env_prefix, COORDINATOR.env_prefix


MUTATIONS: dict[str, dict[str, Callable[[Compose], None]]] = {
    # Variables nothing reads, or that a script needs and does not get.
    "settings": {
        "agent keeps an old variable": _env(A, "LATITUDE_DATABASE_DSN", "postgresql://x"),
        "agent sets no field": _env(A, AGENT_ENV + "PGDATA", PGDATA_MOUNT),
        "agent relies on PGPASSWORD": _env(A, "PGPASSWORD", "${POSTGRES_PASSWORD:-x}"),
        "coordinator gets an agent setting": _env(C, AGENT_ENV + "REGION", "us-east-1"),
        "coordinator setting by an old name": _env(C, "LATITUDE_ETCD_ENDPOINTS", ALL_ETCD),
        "region gets a latitude setting of no program": _env(PRIMARY, "LATITUDE_REGION", "x"),
        "script input no script reads": _env(PRIMARY, "DEPLOY_SLOT_NAME", "slot_x"),
        "postgres input no script reads": _env(STANDBY, "POSTGRES_PASSWORD", "${P:-x}"),
        "script input missing": _env(STANDBY, "DEPLOY_REPLICATION_USER"),
        "primary script input missing": _env(PRIMARY, "DEPLOY_CREDENTIALS_DIR"),
    },
    "dependencies": {
        "dependency on nothing": _set(A, "depends_on", "postgres-x", value={}),
        "dependency cycle": _set(ETCD, "depends_on", C, value={}),
    },
    # The agent, as it would start.
    "agents": {
        "region runs another program": _set(A, "command", value=[COORDINATOR.script]),
        "region runs the agent alone": _set(A, "command", value=[AGENT.script]),
        "PID 1 flag it lacks": _set(A, "command", value=[*REGION_COMMAND, "--pgdata=/x"]),
        "PID 1 without its region": _set(
            A, "command", value=REGION_COMMAND[:3] + REGION_COMMAND[4:]
        ),
        "data directory off the volume": _set(
            A, "command", value=[*REGION_COMMAND[:4], "--pg-data=/tmp/pgdata", REGION_COMMAND[5]]
        ),
        "another region's volume": _set(
            A, "volumes", value=[f"pgdata-{T.primary.name}:{PGDATA_MOUNT}"]
        ),
        "agent without its region": _env(A, AGENT_ENV + "REGION"),
        "agent without coordinators": _env(A, AGENT_ENV + "COORDINATORS"),
        "agent without its database": _env(A, AGENT_ENV + "DB_HOST"),
        "agent capacity the loader refuses": _env(A, AGENT_ENV + "CAPACITY", "0"),
        "agent port that is no number": _env(A, AGENT_ENV + "DB_PORT", "54x2"),
        "agent default the loader refuses": _env(A, AGENT_ENV + "PRIORITY", "${P:--1}"),
        "agent health on another port": _env(A, AGENT_ENV + "LISTEN", "0.0.0.0:50062"),
        "agent without a health check": _set(A, "healthcheck"),
        "PID 1 not root": _set(A, "user", value="postgres"),
    },
    # The coordinator, as it would start.
    "coordinators": {
        "coordinator flag the program lacks": _set(
            C, "command", value=[COORDINATOR.script, "--etcd-endpoints", ALL_ETCD]
        ),
        "coordinator without etcd": _env(C, COORDINATOR_ENV + "ETCD"),
        "coordinator without listen": _env(C, COORDINATOR_ENV + "LISTEN"),
        "coordinator ack_every the loader refuses": _env(C, COORDINATOR_ENV + "ACK_EVERY", "9"),
        "coordinator names etcd by host name": _env(C, COORDINATOR_ENV + "ETCD", ALL_ETCD),
        "coordinator on loopback": _env(C, COORDINATOR_ENV + "LISTEN", "127.0.0.1:50051"),
        "coordinator health on another port": _health_port(C, 50052),
    },
    "credentials": {
        "agent as the superuser": _env(A, AGENT_ENV + "DB_USER", "postgres"),
        "agent with the superuser's password": _env(
            A, AGENT_ENV + "DB_PASSWORD", "${POSTGRES_PASSWORD:-latitude-local}"
        ),
        "agent's password file elsewhere": _env(A, AGENT_ENV + "DB_PASSWORD_FILE", "/tmp/pw"),
        "agent may write the credentials": _set(
            A, "volumes", value=[f"{STANDBY_DATA}:{PGDATA_MOUNT}", "agent-credentials:/c"]
        ),
        "agent's environment with the replication password": _env(
            A, AGENT_ENV + "REPLICATION_PASSWORD", "${LATITUDE_REPLICATION_PASSWORD:-x}"
        ),
        "coordinator gets a password": _env(C, "PGPASSWORD", "${LATITUDE_REPLICATION_PASSWORD}"),
    },
    "declarations": {"volume not declared": lambda c: c["volumes"].pop(STANDBY_DATA)},
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
    "standby first start": {
        "pg_basebackup without the slot": lambda t: t.replace('-S "$DEPLOY_SLOT_NAME"', ""),
        "clone never moved into place": lambda t: t.replace('mv -- "$partial"', 'cp -- "$x"'),
    },
    "primary first start": {
        "settings on no file": lambda t: t.replace('>>"$PGDATA/postgresql.conf"', ">/dev/null"),
        "TCP logins by trust": lambda t: t.replace("--auth-host=scram-sha-256", "--auth=trust"),
    },
    "primary init": {
        "no slot created": lambda t: t.replace("pg_create_physical_replication_slot", "now"),
        "no agents' role": lambda t: t.replace("\\i :role_sql", ""),
    },
    "Dockerfile": {
        "package not installed": lambda t: t.replace("pip install .;", "pip install x;"),
        "runs as root": lambda t: t + "\nUSER root\n",
        "another base image": lambda t: t.replace("=python:3.11-slim-bookworm", "=python:3.11"),
        "fixed base image": lambda t: t.replace("FROM ${PYTHON_IMAGE}", "FROM python:3.11"),
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
