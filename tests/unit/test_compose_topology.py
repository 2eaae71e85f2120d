"""docker-compose.yml describes the same stack as DEFAULT_TOPOLOGY.

No Docker engine runs where these tests run, so the compose file, the Dockerfile and the scripts in
deploy/ are checked by reading them. Each check is a function that returns the problems it finds:
the ``test_*_match`` tests assert that the real files have none, and ``test_check_catches_*`` hand
each check a deliberately broken copy, so that no check can pass by looking at nothing.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from latitude.stack.topology import DEFAULT_TOPOLOGY, Topology

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY_DIR = ROOT / "deploy"
PRIMARY_INIT = DEPLOY_DIR / "postgres" / "primary-init.sh"
STANDBY_ENTRYPOINT = DEPLOY_DIR / "postgres" / "standby-entrypoint.sh"

PGDATA_MOUNT = "/var/lib/postgresql/data"
INITDB_DIR = "/docker-entrypoint-initdb.d/"
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
HEALTHY = "service_healthy"

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
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.partition("=") for item in raw)
        return {key: value for key, _, value in pairs}
    return {key: "" if value is None else str(value) for key, value in raw.items()}


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
    args = args_of(service.get("command"))
    settings: dict[str, str] = {}
    for flag, value in itertools.pairwise(args):
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


def healthcheck_python(service: Service) -> str | None:
    test = args_of((service.get("healthcheck") or {}).get("test"))
    if len(test) >= 4 and test[0] == "CMD" and test[1].startswith("python") and test[2] == "-c":
        return test[3]
    return None


# --- checks on compose ----------------------------------------------------------------------


def service_set_problems(compose: Compose, topology: Topology) -> list[str]:
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


def replication_settings_problems(compose: Compose, topology: Topology) -> list[str]:
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


def primary_problems(compose: Compose, topology: Topology) -> list[str]:
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
    for key in ("LATITUDE_PRIMARY_HOST", "LATITUDE_SLOT_NAME"):
        if key in env:
            problems.append(f"{name} is the initial primary but has the standby setting {key}")
    init_scripts = [
        source
        for target, source in mounts(service).items()
        if target.startswith(INITDB_DIR) and Path(source).name == PRIMARY_INIT.name
    ]
    if not init_scripts:
        problems.append(f"{name} does not mount {PRIMARY_INIT.name} into {INITDB_DIR}")
    slots = [s.strip() for s in env.get("LATITUDE_STANDBY_SLOTS", "").split(",") if s.strip()]
    expected = sorted(r.slot_name for r in topology.standbys)
    if sorted(slots) != expected:
        problems.append(f"{name}: LATITUDE_STANDBY_SLOTS is {slots}, expected the slots {expected}")
    return problems


def standby_problems(compose: Compose, topology: Topology) -> list[str]:
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
        if env.get("LATITUDE_PRIMARY_HOST") != primary:
            problems.append(
                f"{name}: clones from LATITUDE_PRIMARY_HOST={env.get('LATITUDE_PRIMARY_HOST')!r}, "
                f"expected the initial primary {primary!r}"
            )
        if env.get("LATITUDE_SLOT_NAME") != region.slot_name:
            problems.append(
                f"{name}: LATITUDE_SLOT_NAME={env.get('LATITUDE_SLOT_NAME')!r}, "
                f"expected RegionSpec.slot_name {region.slot_name!r}"
            )
    return problems


def dependency_problems(compose: Compose) -> list[str]:
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


def ordering_problems(compose: Compose, topology: Topology) -> list[str]:
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


def etcd_problems(compose: Compose, topology: Topology) -> list[str]:
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
        if config.get("name") != member:
            problems.append(f"{member}: --name is {config.get('name')!r}, expected {member!r}")
        entries = [e for e in config.get("initial-cluster", "").split(",") if e]
        cluster = dict(entry.partition("=")[::2] for entry in entries)
        if cluster != expected_cluster or len(entries) != len(expected_cluster):
            problems.append(
                f"{member}: --initial-cluster is {entries}, expected exactly {expected_cluster}"
            )
        if config.get("initial-advertise-peer-urls") != expected_cluster[member]:
            problems.append(
                f"{member}: --initial-advertise-peer-urls is "
                f"{config.get('initial-advertise-peer-urls')!r}, "
                f"expected {expected_cluster[member]!r}"
            )
        client_url = f"http://{member}:{ETCD_CLIENT_PORT}"
        if config.get("advertise-client-urls") != client_url:
            problems.append(f"{member}: --advertise-client-urls must be {client_url}")
        if config.get("initial-cluster-state") != "new":
            problems.append(f"{member}: --initial-cluster-state must be new (a static cluster)")
        data_dir = config.get("data-dir", "")
        if not mounts(service).get(data_dir):
            problems.append(f"{member}: data dir {data_dir!r} is not on a volume")
        health = " ".join(args_of((service.get("healthcheck") or {}).get("test")))
        if "etcdctl" not in health or "endpoint health" not in health:
            problems.append(f"{member}: healthcheck must run `etcdctl endpoint health`: {health!r}")
    if len(tokens) != 1 or None in tokens:
        problems.append(f"etcd members must share one --initial-cluster-token, got {tokens}")
    return problems


def agent_problems(compose: Compose, topology: Topology) -> list[str]:
    services = compose["services"]
    problems = []
    for region in topology.regions:
        name = agent_name(region.name)
        service = services.get(name)
        if service is None:
            problems.append(f"agent {name} is missing")
            continue
        env = environment(service)
        flags = long_flags(args_of(service.get("command")))
        if env.get("LATITUDE_REGION") != region.name:
            problems.append(f"{name}: LATITUDE_REGION is {env.get('LATITUDE_REGION')!r}")
        if flags.get("region") != region.name:
            problems.append(f"{name}: --region is {flags.get('region')!r}, expected {region.name}")
        host = re.search(r"@([^:/?]+)", env.get("LATITUDE_DATABASE_DSN", ""))
        if host is None or host.group(1) != postgres_name(region.name):
            problems.append(
                f"{name}: LATITUDE_DATABASE_DSN {env.get('LATITUDE_DATABASE_DSN')!r} does not "
                f"point at {postgres_name(region.name)}"
            )
        database = services.get(postgres_name(region.name), {})
        pgdata_volume = mounts(database).get(PGDATA_MOUNT)
        if not pgdata_volume or mounts(service).get(PGDATA_MOUNT) != pgdata_volume:
            problems.append(
                f"{name} must mount its region's PGDATA volume {pgdata_volume!r} at "
                f"{PGDATA_MOUNT}, got {mounts(service).get(PGDATA_MOUNT)!r}"
            )
        if env.get("LATITUDE_PGDATA") != environment(database).get("PGDATA"):
            problems.append(f"{name}: LATITUDE_PGDATA differs from {postgres_name(region.name)}")
        if service.get("user") != "postgres":
            problems.append(f"{name} must run as the postgres user that owns PGDATA")
        hosts = sorted(h for h, _ in addresses(env.get("LATITUDE_COORDINATORS", "")))
        if hosts != sorted(topology.coordinators):
            problems.append(f"{name}: LATITUDE_COORDINATORS names {hosts}")
    return problems


def coordinator_problems(compose: Compose, topology: Topology) -> list[str]:
    expected = sorted((m, str(ETCD_CLIENT_PORT)) for m in topology.etcd_members)
    problems = []
    for name in topology.coordinators:
        service = compose["services"].get(name)
        if service is None:
            problems.append(f"coordinator {name} is missing")
            continue
        env = environment(service)
        args = args_of(service.get("command"))
        flags = long_flags(args)
        if not args or args[0] != "latitude-coordinator":
            problems.append(f"{name}: command must start with latitude-coordinator, got {args}")
        if flags.get("id") != name:
            problems.append(f"{name}: --id is {flags.get('id')!r}")
        for source, value in (
            ("--etcd", flags.get("etcd", "")),
            ("LATITUDE_ETCD_ENDPOINTS", env.get("LATITUDE_ETCD_ENDPOINTS", "")),
        ):
            if sorted(addresses(value)) != expected:
                problems.append(f"{name}: {source} is {value!r}, expected every etcd member")
        code = healthcheck_python(service)
        if code is not None:
            try:
                compile(code, f"{name} healthcheck", "exec")
            except SyntaxError as err:
                problems.append(f"{name}: healthcheck is not valid Python: {err}")
    return problems


def declaration_problems(compose: Compose) -> list[str]:
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


def image_problems(compose: Compose) -> list[str]:
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


def password_problems(compose: Compose) -> list[str]:
    problems = []
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if "PASSWORD" in key and not re.fullmatch(r"\$\{[A-Z_]+:-[^}]*\}", value):
                problems.append(
                    f"{name}: {key} must come from the environment as ${{VAR:-default}}"
                )
    return problems


def referenced_scripts(compose: Compose) -> set[Path]:
    return {
        (ROOT / source).resolve()
        for service in compose["services"].values()
        for source in mounts(service).values()
        if source.startswith("./deploy/")
    }


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
    lines = one_line(script).splitlines()
    calls = [
        line for line in lines if "pg_basebackup " in line and not line.lstrip().startswith("#")
    ]
    if len(calls) != 1:
        return [f"expected one pg_basebackup call in {STANDBY_ENTRYPOINT.name}, found {len(calls)}"]
    call = calls[0]
    problems = [
        f"pg_basebackup call lacks {option!r}: {call.strip()}"
        for option in (
            '-h "$LATITUDE_PRIMARY_HOST"',
            '-S "$LATITUDE_SLOT_NAME"',
            "-X stream",
            "-R",
        )
        if option not in call.split("pg_basebackup", 1)[1]
    ]
    if not re.search(r'^exec "\$@"$', script, re.MULTILINE):
        problems.append(f"{STANDBY_ENTRYPOINT.name} must end by exec'ing the command (postgres)")
    return problems


def primary_init_problems(script: str) -> list[str]:
    required = {
        "LATITUDE_STANDBY_SLOTS": "read the slot names from LATITUDE_STANDBY_SLOTS",
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
    "services": lambda c: service_set_problems(c, DEFAULT_TOPOLOGY),
    "replication settings": lambda c: replication_settings_problems(c, DEFAULT_TOPOLOGY),
    "primary": lambda c: primary_problems(c, DEFAULT_TOPOLOGY),
    "standbys": lambda c: standby_problems(c, DEFAULT_TOPOLOGY),
    "dependencies": dependency_problems,
    "ordering": lambda c: ordering_problems(c, DEFAULT_TOPOLOGY),
    "etcd": lambda c: etcd_problems(c, DEFAULT_TOPOLOGY),
    "agents": lambda c: agent_problems(c, DEFAULT_TOPOLOGY),
    "coordinators": lambda c: coordinator_problems(c, DEFAULT_TOPOLOGY),
    "declarations": declaration_problems,
    "images": image_problems,
    "passwords": password_problems,
}


@pytest.mark.parametrize("check", COMPOSE_CHECKS)
def test_compose_matches_topology(compose: Compose, check: str) -> None:
    problems = COMPOSE_CHECKS[check](compose)
    assert not problems, f"docker-compose.yml ({check}):\n" + "\n".join(problems)


def test_referenced_deploy_scripts_exist_and_parse(compose: Compose) -> None:
    scripts = referenced_scripts(compose)
    assert {PRIMARY_INIT, STANDBY_ENTRYPOINT} <= scripts, (
        f"docker-compose.yml should mount both deploy scripts, mounts {sorted(scripts)}"
    )
    assert shutil.which("bash"), "bash is needed to syntax-check the deploy scripts"
    every_script = scripts | set(DEPLOY_DIR.rglob("*.sh"))
    problems = [problem for path in sorted(every_script) for problem in script_problems(path)]
    assert not problems, "\n".join(problems)


def test_standby_entrypoint_clones_through_the_slot() -> None:
    problems = standby_script_problems(STANDBY_ENTRYPOINT.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_primary_init_creates_role_and_slots() -> None:
    problems = primary_init_problems(PRIMARY_INIT.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_dockerfile_installs_the_package() -> None:
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    problems = dockerfile_problems(DOCKERFILE.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


# --- every check can fail -------------------------------------------------------------------


def _set_env(service: str, key: str, value: str) -> Callable[[Compose], None]:
    def mutate(c: Compose) -> None:
        c["services"][service]["environment"][key] = value

    return mutate


def _replace_arg(service: str, old: str, new: str) -> Callable[[Compose], None]:
    def mutate(c: Compose) -> None:
        args = args_of(c["services"][service]["command"])
        assert old in args, f"{old!r} is not in {service}'s command {args}"
        c["services"][service]["command"] = [new if arg == old else arg for arg in args]

    return mutate


def _set_key(service: str, key: str, value: Any) -> Callable[[Compose], None]:
    def mutate(c: Compose) -> None:
        c["services"][service][key] = value

    return mutate


def _add_dependency(service: str, dependency: str) -> Callable[[Compose], None]:
    def mutate(c: Compose) -> None:
        own = dict(c["services"][service].get("depends_on") or {})
        own[dependency] = {"condition": "service_started"}
        c["services"][service]["depends_on"] = own

    return mutate


def _drop_dependency(service: str, dependency: str) -> Callable[[Compose], None]:
    def mutate(c: Compose) -> None:
        own = dict(c["services"][service]["depends_on"])
        del own[dependency]
        c["services"][service]["depends_on"] = own

    return mutate


PRIMARY = postgres_name(DEFAULT_TOPOLOGY.primary.name)
STANDBY = postgres_name(DEFAULT_TOPOLOGY.standbys[0].name)
AGENT = agent_name(DEFAULT_TOPOLOGY.standbys[0].name)
ETCD = DEFAULT_TOPOLOGY.etcd_members[1]
COORDINATOR = DEFAULT_TOPOLOGY.coordinators[1]
ALL_ETCD = ",".join(f"{m}:{ETCD_CLIENT_PORT}" for m in DEFAULT_TOPOLOGY.etcd_members)
INITIAL_CLUSTER = ",".join(
    f"{m}=http://{m}:{ETCD_PEER_PORT}" for m in DEFAULT_TOPOLOGY.etcd_members
)

MUTATIONS: dict[str, tuple[str, Callable[[Compose], None]]] = {
    "agent missing": ("services", lambda c: c["services"].pop(AGENT)),
    "unknown region": (
        "services",
        lambda c: c["services"].update({"postgres-us-west-2": c["services"][STANDBY]}),
    ),
    "wal_log_hints off": (
        "replication settings",
        _replace_arg(PRIMARY, "wal_log_hints=on", "wal_log_hints=off"),
    ),
    "primary runs the standby entrypoint": (
        "primary",
        lambda c: c["services"][PRIMARY].update(entrypoint=c["services"][STANDBY]["entrypoint"]),
    ),
    "primary misses a slot": (
        "primary",
        _set_env(PRIMARY, "LATITUDE_STANDBY_SLOTS", DEFAULT_TOPOLOGY.standbys[0].slot_name),
    ),
    "standby uses another slot": ("standbys", _set_env(STANDBY, "LATITUDE_SLOT_NAME", "slot_x")),
    "standby clones a standby": ("standbys", _set_env(STANDBY, "LATITUDE_PRIMARY_HOST", STANDBY)),
    "standby without its entrypoint": ("standbys", _set_key(STANDBY, "entrypoint", None)),
    "dependency on nothing": ("dependencies", _add_dependency(AGENT, "postgres-us-west-2")),
    "dependency cycle": ("dependencies", _add_dependency(ETCD, COORDINATOR)),
    "coordinator misses an etcd member": (
        "ordering",
        _drop_dependency(COORDINATOR, DEFAULT_TOPOLOGY.etcd_members[-1]),
    ),
    "standby does not wait for a healthy primary": (
        "ordering",
        _set_key(STANDBY, "depends_on", {PRIMARY: {"condition": "service_started"}}),
    ),
    "agent waits for another region": (
        "ordering",
        _set_key(AGENT, "depends_on", {PRIMARY: {"condition": HEALTHY}}),
    ),
    "initial cluster misses a member": (
        "etcd",
        _replace_arg(ETCD, INITIAL_CLUSTER, INITIAL_CLUSTER.rsplit(",", 1)[0]),
    ),
    "etcd member misnamed": ("etcd", _replace_arg(ETCD, f"--name={ETCD}", "--name=etcd-9")),
    "agent in the wrong region": ("agents", _set_env(AGENT, "LATITUDE_REGION", "us-east-1")),
    "agent on another region's data": (
        "agents",
        _set_key(AGENT, "volumes", [f"pgdata-{DEFAULT_TOPOLOGY.primary.name}:{PGDATA_MOUNT}"]),
    ),
    "coordinator sees one etcd member": (
        "coordinators",
        _replace_arg(COORDINATOR, ALL_ETCD, ALL_ETCD.split(",")[0]),
    ),
    "volume not declared": (
        "declarations",
        lambda c: c["volumes"].pop(f"pgdata-{DEFAULT_TOPOLOGY.standbys[0].name}"),
    ),
    "unpinned image": ("images", _set_key(ETCD, "image", "quay.io/coreos/etcd:latest")),
    "hard-coded password": ("passwords", _set_env(PRIMARY, "POSTGRES_PASSWORD", "hunter2")),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_check_catches_broken_compose(compose: Compose, mutation: str) -> None:
    check, mutate = MUTATIONS[mutation]
    broken = copy.deepcopy(compose)
    mutate(broken)
    assert COMPOSE_CHECKS[check](broken), f"the {check!r} check did not notice: {mutation}"


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

    standby = STANDBY_ENTRYPOINT.read_text(encoding="utf-8")
    assert standby_script_problems(standby.replace('-S "$LATITUDE_SLOT_NAME"', "")), (
        "a pg_basebackup without the slot passed"
    )
    primary = PRIMARY_INIT.read_text(encoding="utf-8")
    assert primary_init_problems(primary.replace("pg_create_physical_replication_slot", "now")), (
        "a primary init that creates no slot passed"
    )


def test_check_catches_broken_dockerfile() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert dockerfile_problems(text.replace("pip install .;", "pip install latitude;")), (
        "a Dockerfile that does not install the package passed"
    )
    assert dockerfile_problems(text + "\nUSER root\n"), "a Dockerfile that runs as root passed"
    assert dockerfile_problems(text.replace("python:3.11-slim-bookworm", "python:3.11")), (
        "a Dockerfile on another base image passed"
    )
