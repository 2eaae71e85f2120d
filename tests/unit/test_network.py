"""The stack's network layout and the nftables rules that cut its links, without a kernel."""

from __future__ import annotations

import pytest

from latitude.errors import StackError
from latitude.stack.network import Layout, Network, ruleset

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")


def test_a_layout_puts_the_control_plane_and_each_region_on_addresses_of_one_24():
    layout = Layout.plan("latitude-0badcafe", REGIONS)
    base = layout.subnet.removesuffix("0/24")
    assert layout.subnet.startswith("10.213.")
    assert layout.observer == base + "1"
    assert [p.name for p in layout.parties] == ["control", *REGIONS]
    assert len({p.address for p in layout.parties} | {layout.observer}) == 4 + 1
    assert all(p.address.startswith(base) for p in layout.parties)
    # Interface names fit the kernel's 15 characters.
    assert all(len(n) <= 15 for n in [layout.bridge, *(p.veth for p in layout.parties)])


def test_components_run_where_their_party_is():
    layout = Layout.plan("latitude-0badcafe", REGIONS)
    control = layout.party("control").address
    assert layout.address_of("etcd-2") == control
    assert layout.address_of("etcd-2.peer") == control
    assert layout.address_of("coordinator-3") == control
    assert layout.address_of("postgres-eu-west-1") == layout.party("eu-west-1").address
    assert layout.address_of("agent-ap-southeast-1") == layout.party("ap-southeast-1").address
    assert layout.address_of("keeper-us-east-1") == layout.party("us-east-1").address
    with pytest.raises(StackError, match="no party"):
        layout.party_of("mystery")


def test_two_stacks_get_distinct_names_and_a_24_no_bridge_holds():
    one = Layout.plan("latitude-00000001", REGIONS)
    two = Layout.plan("latitude-00000002", REGIONS, taken=["127.0.0.1", one.observer])
    assert one.id != two.id and one.bridge != two.bridge
    assert {p.netns for p in one.parties}.isdisjoint(p.netns for p in two.parties)
    assert one.subnet != two.subnet
    # The same token and a free range give the same layout: it is a function of the stack.
    assert Layout.plan("latitude-00000001", REGIONS) == one
    again = Layout.plan("latitude-00000001", REGIONS, taken=[one.observer])
    assert again.subnet != one.subnet


def test_a_layout_survives_the_state_file():
    layout = Layout.plan("latitude-0badcafe", REGIONS)
    assert Layout.from_json(layout.to_json()) == layout


def test_the_ruleset_replaces_the_table_whole_and_drops_on_input_by_source():
    script = ruleset(["10.213.7.4", "10.213.7.2"])
    lines = script.splitlines()
    # Created if missing, then deleted and written again: one atomic nft -f.
    assert lines[:2] == ["table inet latitude_chaos", "delete table inet latitude_chaos"]
    assert "elements = { 10.213.7.2, 10.213.7.4 };" in script
    assert "type filter hook input priority -10; policy accept;" in script
    assert "ip saddr @blocked drop" in script
    # Every packet from a blocked address, whatever its connection's state: no accept of
    # established traffic before the drop.
    assert "established" not in script and "reject" not in script
    assert "hook output" not in script


def test_an_empty_ruleset_blocks_nothing_and_an_observer_cut_drops_what_goes_to_it():
    assert "elements" not in ruleset([])
    script = ruleset([], observer="10.213.7.1")
    assert "elements = { 10.213.7.1 };" in script
    assert "type filter hook output priority -10; policy accept;" in script
    assert "ip daddr 10.213.7.1 drop" in script


def test_cuts_block_both_ends_of_exactly_the_links_cut():
    network = Network(Layout.plan("latitude-0badcafe", REGIONS))
    addr = {p.name: p.address for p in network.layout.parties}
    network._cuts = {frozenset(("us-east-1", "control"))}
    assert network.blocked_for("us-east-1") == ([addr["control"]], None)
    assert network.blocked_for("control") == ([addr["us-east-1"]], None)
    assert network.blocked_for("eu-west-1") == ([], None)
    network._cuts.add(frozenset(("us-east-1", "observer")))
    blocked, observer = network.blocked_for("us-east-1")
    assert observer == network.layout.observer and blocked == [addr["control"]]


async def test_cutting_a_party_from_itself_or_an_unknown_party_is_refused():
    network = Network(Layout.plan("latitude-0badcafe", REGIONS))
    with pytest.raises(StackError, match="itself"):
        await network.cut("eu-west-1", "eu-west-1")
    with pytest.raises(StackError, match="unknown party"):
        await network.cut("eu-west-1", "mars-1")
