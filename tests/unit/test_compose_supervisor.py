"""The region container's PID 1 (latitude.region_container, latitude.supervisor): what ends the
container, the order things stop in, what its programs are told and what they never see.

The decisions are pure; one test runs the supervisor over real short-lived processes (``sleep``
and ``sh``), which is quick, to see the stop order and the exit status it gives a dead agent.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from latitude import region_container
from latitude.stack import services
from latitude.stack.postgres import PostgresNode
from latitude.supervisor import Program, Supervisor, exit_status, stop_order
from tests.unit.test_compose_topology import agent_flags

PGDATA = Path("/var/lib/postgresql/data/pgdata")
LEASE = Path("/run/latitude/fence.lease")


@pytest.mark.parametrize(
    ("status", "essential", "stopping", "expected"),
    [
        (0, True, False, 1),  # an agent that returns still leaves the region unguarded
        (3, True, False, 3),
        (-signal.SIGKILL, True, False, 1),
        (1, False, False, None),  # the postmaster, stopped by a fence
        (0, False, False, None),
        (1, True, True, None),  # being stopped: no verdict of its own
    ],
)
def test_exit_status(status: int, essential: bool, stopping: bool, expected) -> None:
    assert exit_status(status, essential=essential, stopping=stopping) == expected


def test_stop_order_keeps_the_given_order_and_skips_what_is_not_running() -> None:
    agent, keeper = Program("agent", ["a"]), Program("keeper", ["k"])
    postgres = Program("postgres", ["p"], essential=False, stop=lambda grace: None)
    agent.pid, keeper.pid = 10, 11
    keeper.status = 0  # already ended
    assert [p.name for p in stop_order([agent, keeper, postgres])] == ["agent", "postgres"]
    never_started = Program("agent", ["a"])
    assert stop_order([never_started]) == []


def test_programs_stop_agent_first_then_keeper_then_postgres(monkeypatch) -> None:
    monkeypatch.setattr(region_container.Programs, "path", lambda self, name: f"/bin/{name}")
    names = [p.name for p in region_container.programs("us-east-1", PGDATA, LEASE, {})]
    assert names == ["agent", "keeper", "postgres"]
    agent, keeper, postgres = region_container.programs("us-east-1", PGDATA, LEASE, {})
    assert agent.essential and keeper.essential and not postgres.essential
    assert postgres.stop is not None, "the postmaster that runs at the end may be another"
    assert {agent.user, keeper.user, postgres.user} == {"postgres"}


def test_secrets_stay_with_the_first_start() -> None:
    environ = {
        "POSTGRES_PASSWORD": "s",
        "POSTGRES_USER": "postgres",
        "DEPLOY_REPLICATION_PASSWORD": "r",
        "PGPASSWORD": "p",
        "LATITUDE_AGENT_REGION": "us-east-1",
        "PATH": "/usr/bin",
    }
    assert region_container.program_env(environ) == {
        "LATITUDE_AGENT_REGION": "us-east-1",
        "PATH": "/usr/bin",
    }


def test_agent_and_keeper_get_the_native_stacks_arguments() -> None:
    """The same builders as ``latitude up`` (latitude.stack.services), so the two cannot
    differ in what the agent is told of its database and lease."""
    node = PostgresNode("us-east-1", "127.0.0.1", 5432, PGDATA, PGDATA.parent / "postgresql.log")
    agent = region_container.agent_argv("us-east-1", PGDATA, LEASE)
    assert agent[:3] == [sys.executable, "-m", "agent.main"]
    assert agent[3:] == services.agent_database_flags(node, LEASE)
    keeper = region_container.keeper_argv("us-east-1", PGDATA, LEASE)
    assert keeper[1:3] == ["-m", "agent.keeper"]
    assert keeper[keeper.index("--pg-data") + 1] == str(PGDATA)
    assert keeper[keeper.index("--lease") + 1] == str(LEASE)


def test_agent_argv_parses_as_the_agent_would() -> None:
    """The flags reach the agent's own parser intact: the hard fence needs pg_data."""
    flags = agent_flags(region_container.agent_argv("eu-west-1", PGDATA, LEASE)[3:])
    assert flags["pg_data"] == str(PGDATA)
    assert flags["fence_lease"] == str(LEASE)
    assert flags["replication_passfile"] == str(PGDATA.parent / "pgpass")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--pg-data", "/x", "--first-start", "/s"], "--region"),
        (["--region", "r", "--pg-data", "x", "--first-start", "/s"], "absolute"),
    ],
)
def test_bad_arguments_are_named(argv: list[str], named: str, capsys) -> None:
    with pytest.raises(SystemExit):
        region_container.parse_args(argv)
    assert named in capsys.readouterr().err


def test_postmaster_status_without_a_server(tmp_path: Path) -> None:
    assert region_container.postmaster_status(tmp_path) == ""


def _trapping(name: str, order: Path) -> list[str]:
    """A program that, on SIGTERM, notes its name in ``order`` and exits 0."""
    trap = f"trap 'echo {name} >> {order}; exit 0' TERM; while :; do sleep 0.05; done"
    return ["sh", "-c", trap]


def _database(order: Path) -> Program:
    """The database as the region container has it: its own process, stopped by a callable
    (which here only notes that it was called, and ends the process)."""

    def stop(grace: float) -> None:
        with order.open("a") as out:
            out.write("postgres\n")
        assert database.process is not None
        database.process.terminate()
        database.process.wait(5)  # as the real one returns once the server is gone

    database = Program("postgres", ["sleep", "30"], essential=False, stop=stop)
    return database


def test_sigterm_stops_agent_then_keeper_then_postgres(tmp_path: Path) -> None:
    order = tmp_path / "order"
    agent = Program("agent", _trapping("agent", order), grace=2)
    keeper = Program("keeper", _trapping("keeper", order), grace=2)
    database = _database(order)
    supervisor = Supervisor([agent, keeper, database])
    for program in (database, keeper, agent):
        supervisor.start(program)
    time.sleep(0.2)  # the traps are set
    supervisor.request_stop()  # what SIGTERM's handler does
    assert supervisor.run() == 0
    assert order.read_text() == "agent\nkeeper\npostgres\n"
    assert (agent.status, keeper.status) == (0, 0)


def test_a_dead_agent_ends_the_container_after_stopping_the_rest_in_order(
    tmp_path: Path,
) -> None:
    """Real processes: the "agent" exits 3 on its own; the supervisor then stops the "keeper"
    (TERM), then the database (its stop callable), and returns the agent's status."""
    order = tmp_path / "order"
    agent = Program("agent", ["sh", "-c", "sleep 0.3; exit 3"], grace=2)
    keeper = Program("keeper", _trapping("keeper", order), grace=2)
    database = _database(order)
    supervisor = Supervisor([agent, keeper, database])
    for program in (database, keeper, agent):
        supervisor.start(program)
    started = time.monotonic()
    assert supervisor.run() == 3
    assert order.read_text() == "keeper\npostgres\n"
    assert time.monotonic() - started < 5


def test_a_stopped_postmaster_does_not_end_the_container(tmp_path: Path) -> None:
    """A fence stops the postmaster; the supervisor reaps it and carries on."""
    database = Program("postgres", ["true"], essential=False, stop=lambda grace: None)
    agent = Program("agent", ["sleep", "30"], grace=2)
    supervisor = Supervisor([agent, database])
    supervisor.start(database)
    supervisor.start(agent)
    until = time.monotonic() + 5
    while database.status is None and time.monotonic() < until:
        assert supervisor.reap() is None
        time.sleep(0.02)
    assert database.status == 0
    supervisor.shutdown()
    assert agent.status == -signal.SIGTERM
