"""Where a DNS client is located (ECS, else the source) and the scope its answer holds for."""

from __future__ import annotations

import dns.edns
import pytest

from coordinator.dns import ecs
from coordinator.dns.ecs import ClientSubnet, client_subnet, key_bytes


def subnet(address: str, length: int) -> list[dns.edns.Option]:
    return [dns.edns.ECSOption(address, length)]


def test_a_subnet_locates_the_client_by_its_network_not_the_resolver():
    found = client_subnet(subnet("81.2.69.0", 24), "127.0.0.1")
    assert (found.address, found.prefix, found.decision_scope) == ("81.2.69.0", 24, 24)
    echo = found.echo(located=True)
    assert (echo.address, echo.srclen, echo.scopelen) == ("81.2.69.0", 24, 24)
    assert found.echo(located=False).scopelen == 0


def test_a_longer_subnet_is_answered_for_its_24_and_a_shorter_one_says_24():
    longer = client_subnet(subnet("81.2.69.128", 25), "127.0.0.1")
    assert (longer.address, longer.prefix, longer.decision_scope) == ("81.2.69.0", 24, 24)
    shorter = client_subnet(subnet("81.2.0.0", 16), "127.0.0.1")
    assert (shorter.address, shorter.prefix, shorter.decision_scope) == ("81.2.0.0", 16, 24)
    assert shorter.echo(located=True).srclen == 16  # the query's own, as RFC 7871 asks


def test_ipv6_subnets_are_decided_per_48():
    found = client_subnet(subnet("2001:db8:1:2::", 64), "::1")
    assert (found.address, found.prefix, found.decision_scope) == ("2001:db8:1::", 48, 48)


def test_without_a_subnet_the_source_network_is_used_with_scope_0():
    found = client_subnet([], "203.0.113.77")
    assert found == ClientSubnet("203.0.113.0", 24, None)
    assert found.decision_scope == 0 and found.echo(located=True) is None
    mapped = client_subnet([], "::ffff:203.0.113.77")
    assert (mapped.address, mapped.prefix) == ("203.0.113.0", 24)


def test_source_prefix_0_asks_that_nothing_about_the_client_be_used():
    found = client_subnet(subnet("0.0.0.0", 0), "198.51.100.9")
    assert (found.address, found.prefix, found.decision_scope) == ("198.51.100.0", 24, 0)
    assert found.echo(located=True).scopelen == 0


def test_two_subnets_are_ambiguous():
    with pytest.raises(ValueError, match="more than one EDNS Client Subnet option"):
        client_subnet(subnet("81.2.69.0", 24) + subnet("8.8.8.0", 24), "127.0.0.1")


def test_the_cache_key_is_the_network_and_its_length():
    assert key_bytes(client_subnet([], "10.1.2.3")) == bytes([10, 1, 2, 0, 24])


@pytest.mark.parametrize(
    ("address", "srclen"),
    [
        ("81.2.69.0", 24),
        ("81.2.69.128", 25),
        ("81.2.0.0", 16),
        ("81.2.69.7", 32),
        ("0.0.0.0", 0),
        ("2001:db8:1:2::", 64),
        ("2001:db8::", 32),
        ("::ffff:81.2.69.0", 120),
    ],
)
def test_located_by_the_option_as_sent_agrees_with_the_parsed_option(address, srclen):
    option = dns.edns.ECSOption(address, srclen)
    subnet = ecs.client_subnet([option], "192.0.2.1")
    data = option.to_wire()
    assert ecs.located_by(data, "192.0.2.1") == (subnet.address, subnet.decision_scope)
    assert ecs.located_by(None, "192.0.2.1") == ("192.0.2.0", 0)
