"""The coordinator's DNS settings, from each source, and their errors naming the field."""

from __future__ import annotations

import pytest

from coordinator.config import CoordinatorConfig
from coordinator.main import parse_args
from latitude import config as configuration
from latitude.cli import format_dns
from latitude.errors import ConfigError


def load(env=None, argv=()) -> CoordinatorConfig:
    _, flags = parse_args(list(argv))
    return configuration.load(
        CoordinatorConfig,
        section="coordinator",
        env_prefix="LATITUDE_COORDINATOR_",
        env=env or {},
        flags=flags,
    )


def test_off_by_default_with_the_test_zone_and_a_short_ttl():
    config = load()
    assert (config.dns_address, config.dns_zone, config.dns_ttl) == ("", "latitude.test.", 5)


def test_from_the_environment_and_flags():
    env = {"LATITUDE_COORDINATOR_DNS_ADDRESS": "127.0.0.1:5353"}
    config = load(env, ["--dns-zone", "db.example.", "--dns-ttl", "2"])
    assert (config.dns_address, config.dns_zone, config.dns_ttl) == (
        "127.0.0.1:5353",
        "db.example.",
        2,
    )


def test_rate_limit_on_by_default_and_from_each_source(tmp_path):
    config = load()
    limits = ("dns_rate_limit", "dns_rate_limit_slip", "dns_rate_limit_window")
    assert tuple(getattr(config, name) for name in limits) == (20.0, 2, 15.0)
    env = {"LATITUDE_COORDINATOR_DNS_RATE_LIMIT": "0"}
    config = load(env, ["--dns-rate-limit-slip", "1", "--dns-rate-limit-window", "5"])
    assert tuple(getattr(config, name) for name in limits) == (0.0, 1, 5.0)
    file = tmp_path / "latitude.toml"
    file.write_text("[coordinator]\ndns_rate_limit = 50\n")
    _, flags = parse_args([])
    config = configuration.load(
        CoordinatorConfig,
        section="coordinator",
        env_prefix="LATITUDE_COORDINATOR_",
        file=file,
        env={},
        flags=flags,
    )
    assert config.dns_rate_limit == 50


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dns-address", "localhost:53"], "dns_address: the host must be an IP address"),
        (["--dns-address", "127.0.0.1"], "dns_address: expected host:port"),
        (["--dns-zone", "a..b"], "dns_zone: 'a..b' is not a domain name"),
        (["--dns-zone", "."], "dns_zone: '.' is not a zone latitude can serve"),
        (["--dns-ttl", "-1"], "dns_ttl: must be within 0..86400 s, got -1"),
        (["--dns-rate-limit", "-1"], "dns_rate_limit: must be within 0..1000000 responses/s"),
        (["--dns-rate-limit-slip", "11"], "dns_rate_limit_slip: must be within 0..10, got 11"),
        (["--dns-rate-limit-window", "0"], "dns_rate_limit_window: must be within 1..3600 s"),
    ],
)
def test_bad_settings_name_the_field(argv, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load(argv=argv)


def test_status_says_where_to_dig():
    assert format_dns({}) == ""
    assert format_dns({"coordinator-1": "127.0.0.1:5301", "coordinator-2": "127.0.0.1:5302"}) == (
        "\ndns        dig @127.0.0.1 -p 5301 write.latitude.test.  "
        "(any coordinator: 127.0.0.1:5301 127.0.0.1:5302)"
    )
