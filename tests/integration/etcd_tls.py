"""A real etcd cluster with TLS and auth in a test's directory, and a stranger's direct write.

``tls_etcd`` runs what a TLS stack runs (``latitude.stack.etcd``'s command lines and
certificates, ``latitude.stack.etcd_auth``'s users and role) on free loopback ports.
``direct_write`` is the attacker's move: put one key straight into etcd with whatever
credentials it has, and say what etcd answered.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from aetcd import rpc

from coordinator.etcd import Etcd
from latitude import pki
from latitude.channels import open_channel
from latitude.pki import CertFiles
from latitude.stack import etcd, etcd_auth, ports
from latitude.stack.config import StackConfig
from latitude.stack.etcd import EtcdCertificates, EtcdMember
from latitude.stack.stack import Stack

PREFIX = "/latitude"


@dataclass(frozen=True)
class TlsEtcd:
    members: list[EtcdMember]
    certs: EtcdCertificates
    ca_dir: Path
    processes: dict[str, subprocess.Popen]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def kill(self, name: str) -> None:
        """Kill one member, as a crash would."""
        self.processes[name].kill()
        self.processes[name].wait()


@contextmanager
def tls_etcd(directory: Path, size: int = 3, *, ready_timeout: float = 30.0) -> Iterator[TlsEtcd]:
    """A ``size``-member etcd cluster serving TLS only, auth enabled for ``PREFIX``."""
    ca_dir = directory / "tls"
    pki.create_ca(ca_dir)
    names = [f"etcd-{i}" for i in range(1, size + 1)]
    allocated = ports.allocate("127.0.0.1", [f"{n}.{kind}" for n in names for kind in "cp"])
    members = [EtcdMember(n, "127.0.0.1", allocated[f"{n}.c"], allocated[f"{n}.p"]) for n in names]
    certs = etcd.issue_certificates(ca_dir, members)
    binary = StackConfig().etcd_path()
    running: dict[str, subprocess.Popen] = {}
    try:
        for member in members:
            tls = certs.member(member.name)
            data = directory / member.name
            argv = etcd.argv(binary, member, members, data, "tls-test", tls=tls)
            with open(directory / f"{member.name}.log", "ab") as log:
                running[member.name] = subprocess.Popen(argv, stdout=log, stderr=log)
        cluster = TlsEtcd(members, certs, ca_dir, running)
        asyncio.run(_ready(cluster, ready_timeout))
        asyncio.run(etcd_auth.enable_auth(cluster.endpoints, certs.root, PREFIX))
        yield cluster
    finally:
        for process in running.values():
            process.terminate()
        for process in running.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _ready(cluster: TlsEtcd, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        health = await etcd.cluster_health(cluster.members, 0.5, tls=cluster.certs.root)
        if all(h.healthy for h in health):
            return
        if time.monotonic() > deadline:
            problems = ", ".join(f"{h.name}: {h.error}" for h in health if not h.healthy)
            raise AssertionError(f"the TLS etcd cluster did not become healthy: {problems}")
        await asyncio.sleep(0.1)


def stack_etcd(stack: Stack, timeout: float = 1.0) -> Etcd:
    """A client of ``stack``'s etcd for tests: in TLS mode as etcd's administrator (root),
    since tests keep their keys under prefixes of their own, outside the coordinators' role."""
    certs = stack.etcd_certs(stack.state())
    endpoints = [m.endpoint for m in stack.etcd_members(stack.state())]
    return Etcd(endpoints, timeout=timeout, tls=None if certs is None else certs.root)


async def direct_write(
    endpoint: str,
    key: bytes,
    *,
    tls: CertFiles | None = None,
    trust: Path | None = None,
    timeout: float = 3.0,
) -> grpc.StatusCode:
    """Put ``key`` straight into the etcd member at ``endpoint``: OK when written, else the
    status etcd (or the TLS handshake) answered. ``tls``: a client certificate and the CA to
    trust; ``trust`` alone: TLS with no client certificate; neither: plaintext."""
    if trust is not None:
        credentials = grpc.ssl_channel_credentials(await asyncio.to_thread(trust.read_bytes))
        channel = grpc.aio.secure_channel(endpoint, credentials)
    else:
        channel = open_channel(endpoint, tls)
    async with channel:
        try:
            request = rpc.PutRequest(key=key, value=b"forged")
            await rpc.KVStub(channel).Put(request, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK
