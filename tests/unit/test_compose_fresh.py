"""The committed docker-compose.yml, deploy/postgres/agent-role.sql and deploy/postgres/server.conf
must be exactly what scripts/gen-compose makes of DEFAULT_TOPOLOGY (latitude/stack/compose.py),
and the generator must follow the topology it is given."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from latitude.stack import compose
from latitude.stack.postgres import AGENT_GRANTS
from latitude.stack.topology import RegionSpec, Topology

ROOT = Path(__file__).resolve().parents[2]
STALE = "{} is stale: run scripts/gen-compose and commit the result"


@pytest.mark.parametrize(
    ("relative", "render"),
    [
        (compose.COMPOSE_FILE, compose.render_compose),
        (compose.AGENT_ROLE_SQL, compose.render_agent_role_sql),
        (compose.SERVER_CONF, compose.render_server_conf),
    ],
)
def test_committed_file_is_generated(relative: str, render) -> None:
    committed = (ROOT / relative).read_text(encoding="utf-8")
    assert committed == render(), STALE.format(relative)


def test_compose_text_reads_back_as_the_document() -> None:
    """The hand-rolled YAML writer says what the document says, quoting included."""
    assert yaml.safe_load(compose.render_compose()) == compose.compose_document()


@pytest.mark.parametrize("word", ["on", "no", "True", "null", "5s", "0.0.0.0:1", "a b", "x:", "*"])
def test_scalars_that_yaml_would_misread_are_quoted(word: str) -> None:
    document = {"services": {"s": {"environment": {"X": word}, "command": [word]}}}
    text = "\n".join(compose._yaml(document, 0))
    assert yaml.safe_load(text) == document


@pytest.mark.parametrize("value", [True, 1.5, None])
def test_writer_refuses_what_it_cannot_write(value) -> None:
    with pytest.raises(TypeError, match="no YAML for"):
        compose._yaml({"x": value}, 0)


def test_server_conf_carries_every_setting_quoted() -> None:
    conf = compose.render_server_conf()
    assert "listen_addresses = '*'\n" in conf
    assert len([line for line in conf.splitlines() if " = '" in line]) == len(
        compose.POSTGRES_SETTINGS
    )


def test_agent_role_sql_carries_every_grant() -> None:
    sql = compose.render_agent_role_sql()
    assert all(f"{grant};\n" in sql for grant in AGENT_GRANTS)
    assert "PASSWORD :'agent_password'" in sql


OTHER = Topology(
    regions=(
        RegionSpec("eu-west-1", 53.3, -6.3),
        RegionSpec("sa-east-1", -23.5, -46.6, initial_primary=True),
    ),
    etcd_members=("etcd-a",),
    coordinators=("c-1", "c-2"),
)


def test_generation_follows_the_topology() -> None:
    services = compose.compose_document(OTHER)["services"]
    regions = ["postgres-eu-west-1", "postgres-sa-east-1"]
    assert list(services) == ["etcd-a", "c-1", "c-2", *regions]
    standby = services["postgres-eu-west-1"]["environment"]
    assert standby["DEPLOY_PRIMARY_HOST"] == "postgres-sa-east-1"
    assert standby["DEPLOY_SLOT_NAME"] == OTHER.regions[0].slot_name
    assert "POSTGRES_PASSWORD" not in standby, "only the initial primary runs initdb"
    primary = services["postgres-sa-east-1"]
    assert primary["environment"]["DEPLOY_STANDBY_SLOTS"] == OTHER.regions[0].slot_name
    assert "--region=sa-east-1" in primary["command"]
    assert any(
        v.startswith("./deploy/postgres/primary-first-start.sh:") for v in primary["volumes"]
    )
    agent = primary["environment"]
    assert agent["LATITUDE_AGENT_LATITUDE"] == "-23.5"
    assert agent["LATITUDE_AGENT_COORDINATORS"] == "c-1:50051,c-2:50051"
    assert agent["LATITUDE_AGENT_PEER_AGENTS"] == "eu-west-1=postgres-eu-west-1:50061"
    assert services["c-2"]["environment"]["LATITUDE_COORDINATOR_ETCD"] == (
        "${LATITUDE_SUBNET_PREFIX:-172.29.53}.11:2379"
    )
    assert "127.0.0.1:${LATITUDE_PORT_C_2_GRPC:-50052}:50051" in services["c-2"]["ports"]
