"""Reported addresses must be where the configuration says each region is (region_hosts):
parsing, each refusal naming its field, and the setting from a file, the environment and a
flag."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from coordinator.agent_service import AgentService
from coordinator.config import CoordinatorConfig
from coordinator.region_hosts import RegionHosts
from coordinator.validation import InvalidMessage
from latitude import config as configuration
from latitude.errors import ConfigError
from latitude.v1 import agent_pb2, common_pb2
from tests.unit.agent_contexts import Aborted, Context, Events

REGIONS = ("us-east-1", "eu-west-1")
RULES = ["us-east-1=10.0.1.0/24", "us-east-1=db.us.example", "eu-west-1=10.213.110.0/24"]
HOSTS = RegionHosts.parse([*RULES, "eu-west-1=fd00:e::/64"], REGIONS)


def hello(region="eu-west-1", address="10.213.110.5:5432", **fields) -> agent_pb2.Hello:
    endpoint = common_pb2.Endpoint(
        name="pg", kind=common_pb2.ENDPOINT_KIND_POSTGRES, address=address
    )
    return agent_pb2.Hello(region=region, agent_id="a", endpoints=[endpoint], **fields)


def report(upstream: str) -> agent_pb2.Report:
    database = common_pb2.DatabaseStatus(upstream_address=upstream)
    return agent_pb2.Report(sequence=1, database=database)


def refused(check, *args) -> str:
    with pytest.raises(InvalidMessage) as error:
        check(*args)
    return str(error.value)


def test_addresses_on_the_regions_hosts_are_believed():
    HOSTS.check_hello(hello(agent_address="10.213.110.9:50061"))
    HOSTS.check_hello(hello("us-east-1", "DB.us.example:5432", agent_address="10.0.1.7:1"))
    HOSTS.check_hello(hello(address="[fd00:e::5]:5432"))
    HOSTS.check_report(report("10.0.1.5:5432"))  # streaming from another region's server
    HOSTS.check_report(report(""))  # a primary streams from nothing


def test_an_endpoint_outside_its_region_is_refused_naming_the_field():
    assert refused(HOSTS.check_hello, hello(address="10.0.1.5:5432")) == (
        "hello.endpoints[0].address: host 10.0.1.5 is not one of eu-west-1's configured hosts "
        "(region_hosts)"
    )


def test_a_host_name_is_compared_as_written_never_resolved():
    assert refused(HOSTS.check_hello, hello(address="db.us.example.evil.test:5432")) == (
        "hello.endpoints[0].address: host db.us.example.evil.test is not one of eu-west-1's "
        "configured hosts (region_hosts)"
    )


def test_the_agent_address_is_checked_too():
    assert refused(HOSTS.check_hello, hello(agent_address="203.0.113.9:50061")) == (
        "hello.agent_address: host 203.0.113.9 is not one of eu-west-1's configured hosts "
        "(region_hosts)"
    )


def test_an_http_endpoint_is_checked_by_its_urls_host():
    web = common_pb2.Endpoint(
        name="web", kind=common_pb2.ENDPOINT_KIND_HTTP, address="http://203.0.113.9:8080/"
    )
    message = hello()
    message.endpoints.append(web)
    assert refused(HOSTS.check_hello, message) == (
        "hello.endpoints[1].address: host 203.0.113.9 is not one of eu-west-1's configured "
        "hosts (region_hosts)"
    )


def test_an_upstream_on_no_regions_hosts_is_refused_naming_the_field():
    assert refused(HOSTS.check_report, report("203.0.113.9:5432")) == (
        "report.database.upstream_address: host 203.0.113.9 is on no region's configured hosts "
        "(region_hosts)"
    )
    assert refused(HOSTS.check_report, report("/var/run/postgresql")).startswith(
        "report.database.upstream_address: expected host:port"
    )


def test_an_upstream_found_allowed_once_is_not_parsed_again_and_admits_nothing_else():
    hosts = RegionHosts.parse(["us-east-1=10.0.0.0/24", "eu-west-1=10.0.1.0/24"], REGIONS)
    for _ in range(3):
        hosts.check_report(report("10.0.1.5:5432"))
    assert hosts._allowed_upstreams == {"10.0.1.5:5432"}
    assert refused(hosts.check_report, report("203.0.113.9:5432")).startswith(
        "report.database.upstream_address: host 203.0.113.9"
    )


def test_without_the_setting_nothing_is_checked():
    hosts = RegionHosts.parse([], REGIONS)
    assert not hosts.checked
    hosts.check_hello(hello(address="203.0.113.9:5432"))
    hosts.check_report(report("203.0.113.9:5432"))


@pytest.mark.parametrize(
    "items, message",
    [
        (["eu-west-1"], "region_hosts: expected region=host-or-CIDR, got 'eu-west-1'"),
        (["mars-1=10.0.0.0/8"], "region_hosts: 'mars-1' is not one of the regions"),
        (
            ["eu-west-1=10.0.0.0/33", "us-east-1=10.0.1.0/24"],
            "region_hosts: '10.0.0.0/33' for eu-west-1 is neither an IP address, a CIDR nor a "
            "host name",
        ),
        (
            ["eu-west-1=10.213.110.0/24"],
            "region_hosts: no hosts for us-east-1 (once one region is listed, every region "
            "must be)",
        ),
    ],
)
def test_bad_rules_are_refused_naming_the_setting(items, message):
    with pytest.raises(ConfigError) as error:
        RegionHosts.parse(items, REGIONS)
    assert str(error.value).startswith(message)


def load(**sources) -> CoordinatorConfig:
    return configuration.load(
        CoordinatorConfig, section="coordinator", env_prefix="LATITUDE_COORDINATOR_", **sources
    )


def test_the_setting_from_a_file_the_environment_and_a_flag(tmp_path: Path):
    regions = "us-east-1,eu-west-1"
    file = tmp_path / "coordinator.toml"
    file.write_text(
        '[coordinator]\nregions = ["us-east-1", "eu-west-1"]\n'
        'region_hosts = ["us-east-1=10.0.1.0/24", "eu-west-1=10.213.110.0/24"]\n'
    )
    assert load(file=file).hosts.rules["eu-west-1"].allows("10.213.110.5")
    env = {
        "LATITUDE_COORDINATOR_REGIONS": regions,
        "LATITUDE_COORDINATOR_REGION_HOSTS": "us-east-1=10.0.1.5, eu-west-1=db.eu.example",
    }
    assert load(env=env).hosts.rules["eu-west-1"].allows("db.eu.example")
    flags = {"regions": regions, "region_hosts": "us-east-1=10.0.1.5,eu-west-1=10.0.2.5"}
    assert not load(flags=flags).hosts.rules["eu-west-1"].allows("10.0.1.5")
    with pytest.raises(ConfigError, match="region_hosts: no hosts for eu-west-1"):
        load(flags={"regions": regions, "region_hosts": "us-east-1=10.0.1.5"})


async def test_connect_refuses_a_hello_outside_its_region_with_invalid_argument():
    message = hello(address="10.0.1.5:5432", capacity=100)
    message.location.latitude = 53.3
    context = Context([agent_pb2.AgentMessage(hello=message)], None, tls=False)
    config = SimpleNamespace(
        regions=REGIONS, hosts=HOSTS, streams_per_caller=64, streams_total=4096
    )
    node = SimpleNamespace(is_leader=True, config=config, events=Events(), registry=None)
    with pytest.raises(Aborted):
        await AgentService(node).Connect(None, context)
    assert context.status == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "hello.endpoints[0].address: host 10.0.1.5 is not one of eu-west-1's configured hosts "
        "(region_hosts)",
    )
