"""The coordinators' DNS front end on the real stack, asked with Debian's ``dig`` and with
dnspython's resolver: the same decisions as Resolve, per continent by EDNS Client Subnet; the
write region; REFUSED, NXDOMAIN, truncation then TCP; bad packets answered or dropped without
harm; and a region's failure moving the answers."""

from __future__ import annotations

import asyncio
import socket
import subprocess

import dns.asyncquery
import dns.asyncresolver
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from latitude.cli import status_json
from latitude.stack.harness import running_stack
from latitude.stack.stack import DNS_ZONE, Stack
from latitude.v1 import routing_pb2
from tests.integration.connections import eventually
from tests.integration.test_failover import kill_region
from tests.integration.test_metrics import scrape
from tests.integration.test_routing import CLIENTS, all_healthy, resolve

pytestmark = pytest.mark.stack

DIG = "/usr/bin/dig"


def servers(stack: Stack) -> list[tuple[str, int]]:
    """Every coordinator's DNS responder as (host, port)."""
    found = []
    for address in stack.dns_addresses(stack.state()).values():
        host, _, port = address.rpartition(":")
        found.append((host.strip("[]"), int(port)))
    return found


def postgres_ports(stack: Stack) -> dict[int, str]:
    """Region by its PostgreSQL port: in the local stack every database listens on the same
    address, so SRV ports tell the regions apart."""
    state = stack.state()
    return {state.ports[f"postgres-{r.name}"]: r.name for r in stack.topology.regions}


async def dig(server: tuple[str, int], *args: str) -> str:
    """dig's output (with a generous timeout: the machine is shared and loaded)."""
    host, port = server
    command = [DIG, f"@{host}", "-p", str(port), "+time=5", "+tries=2", *args]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def records(out: str, rdtype: str) -> list[list[str]]:
    """The records of ``rdtype`` in dig's output (any section), each split into fields:
    [name, ttl, class, type, data...]."""
    found = [line.split() for line in out.splitlines() if line and not line.startswith(";")]
    return [fields for fields in found if fields[3:4] == [rdtype]]


def network_of(ip: str) -> str:
    """The /24 dig sends as the client subnet (and the address Resolve locates it by)."""
    return ip.rsplit(".", 1)[0] + ".0"


@pytest.fixture
async def cluster(stack: Stack):
    await stack.up()
    await all_healthy(stack)
    yield stack


async def test_dig_and_the_resolver_send_each_continent_to_its_nearest_region(cluster: Stack):
    regions = postgres_ports(cluster)
    coordinators = cluster.coordinator_addresses(cluster.state())
    assert len(servers(cluster)) == len(coordinators) == 3
    assert status_json(await cluster.status())["dns"] == cluster.dns_addresses(cluster.state())
    for server, address in zip(servers(cluster), coordinators, strict=True):
        for city, (_, ip, nearest, _) in CLIENTS.items():
            subnet = f"{network_of(ip)}/24"
            srv = await dig(server, "+subnet=" + subnet, f"_postgresql._tcp.read.{DNS_ZONE}", "SRV")
            # The answer is for the client's /24, and dig says so ("81.2.69.0/24/24").
            why = await dig(server, "+subnet=" + subnet, "+short", f"read.{DNS_ZONE}", "TXT")
            assert f"CLIENT-SUBNET: {subnet}/24" in srv, (srv, why)
            ports = [int(r[-2]) for r in records(srv, "SRV")]
            assert regions[ports[0]] == nearest, (city, srv)
            # The same decision Resolve makes for that client.
            decision = await resolve(address, client_ip=network_of(ip))
            picked = [t.region for t in decision.targets if t.weight > 0]
            assert [regions[port] for port in ports] == picked, (city, srv, decision)
            a = await dig(server, "+subnet=" + subnet, "+short", f"read.{DNS_ZONE}", "A")
            assert a.split() == ["127.0.0.1"], a
        # dnspython's resolver, its ECS option set once for every query it sends.
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [server[0]]
        resolver.port = server[1]
        resolver.lifetime = 10
        for city, (_, ip, nearest, _) in CLIENTS.items():
            resolver.use_edns(0, 0, 1232, options=[dns.edns.ECSOption(network_of(ip), 24)])
            srv = await resolver.resolve(f"_postgresql._tcp.read.{DNS_ZONE}", "SRV")
            assert regions[srv.rrset[0].port] == nearest, (city, srv.rrset)
            (echo,) = srv.response.options
            assert (echo.srclen, echo.scopelen) == (24, 24)


async def test_write_names_the_primary_everywhere_with_a_short_ttl(cluster: Stack):
    primary_port = cluster.state().ports[f"postgres-{cluster.topology.primary.name}"]
    for server in servers(cluster):
        for ip in ("81.2.69.160", "202.166.126.1"):
            out = await dig(server, f"+subnet={network_of(ip)}/24", f"write.{DNS_ZONE}", "A")
            assert "status: NOERROR" in out and "flags: qr aa rd" in out, out
            assert records(out, "A") == [[f"write.{DNS_ZONE}", "5", "IN", "A", "127.0.0.1"]], out
            assert f"CLIENT-SUBNET: {network_of(ip)}/24/0" in out, out  # scope 0: one answer
        srv = await dig(server, "+short", f"_postgresql._tcp.write.{DNS_ZONE}", "SRV")
        assert srv.split() == ["10", "1000", str(primary_port), f"postgres.us-east-1.{DNS_ZONE}"]
        txt = await dig(server, "+short", f"write.{DNS_ZONE}", "TXT")
        assert '"reason=writes go to the primary in us-east-1"' in txt, txt
        assert '"write_region=us-east-1"' in txt and '"table_version=' in txt, txt


async def test_refused_outside_the_zone_nxdomain_inside_and_the_apex(cluster: Stack):
    server = servers(cluster)[0]
    outside = await dig(server, "example.com", "A")
    assert "status: REFUSED" in outside, outside
    missing = await dig(server, f"nothing.{DNS_ZONE}", "A")
    assert "status: NXDOMAIN" in missing and "flags: qr aa rd" in missing, missing
    (soa,) = records(missing, "SOA")
    assert soa[:6] == [DNS_ZONE, "5", "IN", "SOA", f"ns.{DNS_ZONE}", f"hostmaster.{DNS_ZONE}"]
    soa = await dig(server, "+short", DNS_ZONE, "SOA")
    assert soa.startswith(f"ns.{DNS_ZONE} hostmaster.{DNS_ZONE} "), soa
    ns = await dig(server, "+short", DNS_ZONE, "NS")
    assert ns.split() == [f"ns.{DNS_ZONE}"]


async def test_a_large_answer_truncates_over_udp_and_comes_whole_over_tcp(cluster: Stack):
    server = servers(cluster)[0]
    # Without EDNS a UDP answer holds 512 bytes; the read TXT (every target) holds more.
    out = await dig(server, "+noedns", f"read.{DNS_ZONE}", "TXT")
    assert "Truncated, retrying in TCP mode" in out, out
    assert "status: NOERROR" in out and '"table_version=' in out, out
    query = dns.message.make_query(f"read.{DNS_ZONE}", "TXT")
    over_udp = await dns.asyncquery.udp(query, server[0], port=server[1], timeout=10)
    assert over_udp.flags & dns.flags.TC and not over_udp.answer
    over_tcp = await dns.asyncquery.tcp(query, server[0], port=server[1], timeout=10)
    assert over_tcp.rcode() == dns.rcode.NOERROR and not over_tcp.flags & dns.flags.TC
    assert over_tcp.answer[0].rdtype == dns.rdatatype.TXT


async def test_malformed_packets_get_formerr_or_are_dropped_and_the_server_goes_on(cluster):
    server = servers(cluster)[0]
    metrics = cluster.http_address(cluster.state(), cluster.topology.coordinators[0])
    before = await scrape(metrics)
    garbage = [
        b"",
        b"\x01",
        b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fnope",  # a label past the end
        b"\xab\xce\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x01\x00\x01\x00\x00\x29",
        bytes(range(256)) * 20,  # over 4 KiB: no DNS question
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        for packet in garbage:
            sock.sendto(packet, server)
        answered = {}
        while len(answered) < 2:
            reply, _ = sock.recvfrom(4096)
            answered[reply[:2]] = dns.message.from_wire(reply).rcode()
    assert answered == {b"\xab\xcd": dns.rcode.FORMERR, b"\xab\xce": dns.rcode.FORMERR}
    # Half a TCP message, then the client leaves.
    _, writer = await asyncio.open_connection(*server)
    writer.write(b"\x00\x30\xab\xcd")
    await writer.drain()
    writer.close()
    out = await dig(server, "+short", f"write.{DNS_ZONE}", "A")
    assert out.split() == ["127.0.0.1"]
    # Counted: by type and rcode (FORMERR has no readable question), and what was dropped.
    after = await scrape(metrics)
    name = "latitude_dns_query_duration_seconds_count"
    formerr = {"type": "none", "rcode": "formerr"}
    assert after.value(name, **formerr) - before.value(name, **formerr) == 2
    assert after.value(name, type="A", rcode="noerror") > before.value(
        name, type="A", rcode="noerror"
    )
    dropped = "latitude_dns_dropped_packets_total"
    for reason, count in (("malformed", 2), ("oversized", 1)):
        assert after.value(dropped, reason=reason) - before.value(dropped, reason=reason) == count


@pytest.mark.timeout(420)
def test_failed_regions_move_the_answers_within_one_table_propagation():
    """On a stack of its own: a standby region killed, then the primary's."""
    with running_stack() as stack:
        asyncio.run(failed_regions_move_the_answers(stack))


async def failed_regions_move_the_answers(stack: Stack) -> None:
    london_ip = network_of(CLIENTS["London"][1])
    await all_healthy(stack)
    regions = postgres_ports(stack)
    server = servers(stack)[0]
    address = stack.coordinator_addresses(stack.state())[0]  # the same replica

    async def srv(name: str) -> list[str]:
        out = await dig(
            server, "+short", f"+subnet={london_ip}/24", f"_postgresql._tcp.{name}", "SRV"
        )
        return [regions[int(line.split()[2])] for line in out.splitlines()]

    async def table_version(name: str) -> int:
        out = await dig(server, "+short", f"+subnet={london_ip}/24", name, "TXT")
        return int(out.split('"table_version=', 1)[1].split('"', 1)[0])

    assert (await srv(f"read.{DNS_ZONE}"))[0] == "eu-west-1"
    await kill_region(stack, "eu-west-1")

    async def moved() -> routing_pb2.RoutingDecision | None:
        decision = await resolve(address, client_ip=london_ip)
        return decision if decision.targets[0].region != "eu-west-1" else None

    # Once the replica's Resolve has moved, its DNS answer has too: the same table.
    decision = await eventually(moved, 60, "Resolve to move London's reads off eu-west-1")
    assert decision.targets[0].region == "us-east-1"
    assert (await srv(f"read.{DNS_ZONE}"))[0] == "us-east-1"
    assert await table_version(f"read.{DNS_ZONE}") >= decision.table_version

    # The primary's region: write answers are the old primary, none (during the failover:
    # empty NOERROR), or the new one; never another region.
    await kill_region(stack, "us-east-1")
    seen: list[tuple[str, ...]] = []

    async def promoted() -> bool:
        answer = tuple(await srv(f"write.{DNS_ZONE}"))
        if not seen or seen[-1] != answer:
            seen.append(answer)
        return answer == ("ap-southeast-1",)

    await eventually(promoted, 90, "write to name ap-southeast-1's database")
    assert set(seen) <= {("us-east-1",), (), ("ap-southeast-1",)}, seen
    assert seen[-1] == ("ap-southeast-1",)
