"""etcd with TLS and auth, as a TLS stack runs it: the coordinators' certificate works, a
stranger's direct write does not (no certificate, another CA's, or one whose user has no role)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from coordinator import keys
from coordinator.election import Election
from coordinator.etcd import Etcd, EtcdPermissionDenied, MemberProbe
from coordinator.store import Candidate, EtcdStore
from latitude import pki
from latitude.stack import etcd, etcd_auth
from tests.integration.etcd_tls import PREFIX, TlsEtcd, direct_write, tls_etcd

pytestmark = pytest.mark.stack

LEADER = keys.under(PREFIX, keys.LEADER).encode()
FAILOVER = keys.under(PREFIX, keys.FAILOVER).encode()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEtcd]:
    with tls_etcd(tmp_path_factory.mktemp("etcd-tls"), size=3) as running:
        yield running


@pytest.fixture
async def client(cluster: TlsEtcd):
    """The coordinators' client: every member over one channel, the `latitude` certificate."""
    made = Etcd(cluster.endpoints, tls=cluster.certs.client)
    yield made
    await made.delete_prefix(PREFIX.encode() + b"/")
    await made.close()


async def wait_for(condition, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_the_coordinators_certificate_reads_and_writes_under_the_prefix(client: Etcd):
    key = keys.under(PREFIX, keys.WRITE_REGION).encode()
    await client.put(key, b"us-east-1")
    assert (await client.get(key)).value == b"us-east-1"
    t = client.transactions
    applied, _ = await client.txn([t.value(key) == b"us-east-1"], [t.put(key, b"eu-west-1")])
    assert applied and (await client.get(key)).value == b"eu-west-1"
    kvs, revision = await client.get_prefix(PREFIX.encode() + b"/")
    assert [kv.key for kv in kvs] == [key] and revision > 0


async def test_the_coordinators_role_ends_at_the_prefix(client: Etcd):
    with pytest.raises(EtcdPermissionDenied, match="permission denied"):
        await client.put(b"/elsewhere", b"x")
    with pytest.raises(EtcdPermissionDenied):
        await client.put(PREFIX.encode() + b"-other/x", b"x")


async def test_an_election_over_tls(cluster: TlsEtcd, client: Etcd):
    stores = [EtcdStore(Etcd(cluster.endpoints, tls=cluster.certs.client), PREFIX) for _ in "ab"]
    elections = [
        Election(s, Candidate(f"c{i}", f"127.0.0.1:{7000 + i}")) for i, s in enumerate(stores)
    ]
    tasks = [asyncio.create_task(e.run()) for e in elections]
    try:
        await wait_for(lambda: any(e.is_leader for e in elections), 10, "a leader")
        leader = next(e for e in elections if e.is_leader)
        await wait_for(lambda: all(e.leader == leader.leader for e in elections), 5, "followers")
        assert sum(e.is_leader for e in elections) == 1
        assert await leader._store.write(leader.leadership, {keys.FAILOVER: b"{}"})
        # A reader's certificate is from the same CA, but etcd knows no user "reader".
        reader = pki.issue(cluster.ca_dir, "reader", identity=pki.Identity("reader"))
        for key in (LEADER, FAILOVER):
            assert await direct_write(cluster.endpoints[0], key, tls=reader) == (
                grpc.StatusCode.PERMISSION_DENIED
            )
        assert leader.is_leader and (await client.get(FAILOVER)).value == b"{}"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for store in stores:
            await store.close()


async def test_no_certificate_no_connection(cluster: TlsEtcd, client: Etcd):
    endpoint = cluster.endpoints[1]
    # Plaintext to a TLS port, and TLS that trusts the CA but shows no certificate.
    assert await direct_write(endpoint, LEADER) == grpc.StatusCode.UNAVAILABLE
    assert await direct_write(endpoint, LEADER, trust=cluster.certs.client.ca) == (
        grpc.StatusCode.UNAVAILABLE
    )
    assert await client.get(LEADER) is None
    # The control: the same member takes the same write from etcd's administrator.
    assert await direct_write(endpoint, LEADER, tls=cluster.certs.root) == grpc.StatusCode.OK


async def test_another_cas_certificate_is_refused(cluster: TlsEtcd, client: Etcd, tmp_path: Path):
    pki.create_ca(tmp_path / "other")
    # Its CA trusts ours, so only etcd's check of the client certificate stands in the way.
    stranger = pki.issue(tmp_path / "other", "latitude", common_name="latitude")
    stranger = pki.CertFiles(stranger.cert, stranger.key, cluster.certs.client.ca)
    assert await direct_write(cluster.endpoints[2], FAILOVER, tls=stranger) == (
        grpc.StatusCode.UNAVAILABLE
    )
    assert await client.get(FAILOVER) is None
    root = cluster.certs.root
    assert await direct_write(cluster.endpoints[2], FAILOVER, tls=root) == grpc.StatusCode.OK


async def test_member_status_and_health_over_tls(cluster: TlsEtcd):
    probe = MemberProbe(cluster.endpoints, tls=cluster.certs.client)
    try:
        statuses = await probe.statuses(timeout=2.0)
    finally:
        await probe.close()
    assert [s.healthy for s in statuses] == [True, True, True]
    assert sum(s.is_leader for s in statuses) == 1
    assert [s.client_url for s in statuses] == [f"https://{e}" for e in cluster.endpoints]
    health = await etcd.cluster_health(cluster.members, 2.0, tls=cluster.certs.client)
    assert [h.healthy for h in health] == [True, True, True]
    assert sum(h.is_leader for h in health) == 1 and all(h.raft_term for h in health)
    # Asked in plaintext, a TLS member answers nothing.
    plain = await etcd.health(cluster.members[0], 2.0)
    assert not plain.healthy and plain.error


async def test_setting_up_auth_again_changes_nothing(cluster: TlsEtcd, client: Etcd):
    await etcd_auth.enable_auth(cluster.endpoints, cluster.certs.root, PREFIX)
    await client.put(LEADER, b"x")
    with pytest.raises(EtcdPermissionDenied):
        await client.put(b"/elsewhere", b"x")


def coordinator_argv(cluster: TlsEtcd, name: str, tls: pki.CertFiles) -> list[str]:
    flags = {
        "--id": name,
        "--listen": "127.0.0.1:0",
        "--etcd": ",".join(cluster.endpoints),
        "--etcd-ca": str(tls.ca),
        "--etcd-cert": str(tls.cert),
        "--etcd-key": str(tls.key),
    }
    return [sys.executable, "-m", "coordinator.main", *(x for f in flags.items() for x in f)]


async def test_a_coordinator_started_with_the_etcd_flags_is_elected(cluster: TlsEtcd, client):
    argv = coordinator_argv(cluster, "tls-c1", cluster.certs.client)
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while (leader := await client.get(LEADER)) is None:
            assert process.returncode is None, "the coordinator exited"
            assert loop.time() < deadline, "no coordinator was elected through TLS etcd"
            await asyncio.sleep(0.1)
        assert json.loads(leader.value)["id"] == "tls-c1"
    finally:
        process.terminate()
        await process.wait()


async def test_a_coordinator_with_part_of_the_etcd_settings_says_what_is_missing(cluster):
    argv = coordinator_argv(cluster, "tls-c2", cluster.certs.client)
    process = await asyncio.create_subprocess_exec(
        *argv[: argv.index("--etcd-key")],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, stderr = await process.communicate()
    assert process.returncode == 1
    assert "etcd_key: TLS to etcd needs etcd_ca, etcd_cert and etcd_key together" in (
        stderr.decode()
    )


async def test_a_dead_member_is_skipped(cluster: TlsEtcd, client: Etcd):
    """Last in this module: it leaves the cluster with two members of three. A follower dies
    (the raft leader's death would add an election, a second or two, that is not at issue)."""
    probe = MemberProbe(cluster.endpoints, tls=cluster.certs.client)
    try:
        statuses = await probe.statuses(timeout=2.0)
    finally:
        await probe.close()
    follower = next(m for m, s in zip(cluster.members, statuses, strict=True) if not s.is_leader)
    await client.put(LEADER, b"before")
    cluster.kill(follower.name)
    # Each call goes to the next member in turn: over several, the dead one's turn comes up.
    for n in range(6):
        await client.put(LEADER, str(n).encode())
        assert (await client.get(LEADER)).value == str(n).encode()
