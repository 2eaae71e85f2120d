"""The stack's three-member etcd cluster: command lines, certificates, and health.

In plaintext, health comes from etcd's HTTP API. With TLS every member serves clients and peers
over https and takes only certificates from the stack's CA (``--client-cert-auth``: the
certificate's common name is the etcd user, see ``latitude.stack.etcd_auth``); ``/health`` is
asked over https with a client certificate, and the member's status over gRPC, since etcd's HTTP
gateway refuses a request whose client certificate has a common name.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from aetcd import rpc

from latitude import pki
from latitude.channels import open_channel
from latitude.pki import CertFiles

# The etcd users the stack's client certificates name (their common names).
ROOT_USER = "root"  # etcd's administrator: sets up users and roles, enables auth
CLIENT_USER = "latitude"  # the coordinators: read and write under the key prefix, nothing else


@dataclass(frozen=True, slots=True)
class EtcdMember:
    name: str
    host: str
    client_port: int
    peer_port: int

    def client_url(self, secure: bool = False) -> str:
        return f"{_scheme(secure)}://{_url_host(self.host)}:{self.client_port}"

    def peer_url(self, secure: bool = False) -> str:
        return f"{_scheme(secure)}://{_url_host(self.host)}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        """host:port, as etcd clients take it."""
        return f"{_url_host(self.host)}:{self.client_port}"


@dataclass(frozen=True, slots=True)
class EtcdCertificates:
    """A TLS cluster's certificates: each member's (it serves clients and peers, and is a
    client of its peers), and the client certificates of etcd's two users."""

    members: dict[str, CertFiles]
    client: CertFiles  # CN=latitude: what coordinators connect with
    root: CertFiles  # CN=root: setting up auth, health checks

    def member(self, name: str) -> CertFiles:
        return self.members[name]


def certificates(directory: Path, members: list[EtcdMember], ca: Path) -> EtcdCertificates:
    """Where ``issue_certificates`` writes a cluster's certificates (nothing is read)."""

    def files(name: str) -> CertFiles:
        return CertFiles(directory / f"{name}.crt", directory / f"{name}.key", ca)

    return EtcdCertificates(
        {m.name: files(m.name) for m in members}, files("etcd-client"), files("etcd-root")
    )


def issue_certificates(
    ca_dir: Path, members: list[EtcdMember], directory: Path | None = None
) -> EtcdCertificates:
    """Certificates from the CA in ``ca_dir`` (``latitude.pki``) for every member, naming its
    host (an IP SAN: clients and peers check it), and for etcd's users ``latitude`` and
    ``root``; written in ``directory`` (``ca_dir`` by default)."""
    directory = directory or ca_dir
    for member in members:
        pki.issue(ca_dir, member.name, hosts=[member.host], directory=directory)
    pki.issue(ca_dir, "etcd-client", common_name=CLIENT_USER, directory=directory)
    pki.issue(ca_dir, "etcd-root", common_name=ROOT_USER, directory=directory)
    return certificates(directory, members, ca_dir / "ca.crt")


def argv(
    etcd: str,
    member: EtcdMember,
    members: list[EtcdMember],
    data_dir: Path,
    token: str,
    *,
    tls: CertFiles | None = None,
) -> list[str]:
    """``member``'s command line; with ``tls`` (its own certificate), https for clients and
    peers, and only certificates from ``tls.ca`` accepted on either."""
    secure = tls is not None
    initial_cluster = ",".join(f"{m.name}={m.peer_url(secure)}" for m in members)
    return [
        etcd,
        "--name", member.name,
        "--data-dir", str(data_dir),
        "--listen-client-urls", member.client_url(secure),
        "--advertise-client-urls", member.client_url(secure),
        "--listen-peer-urls", member.peer_url(secure),
        "--initial-advertise-peer-urls", member.peer_url(secure),
        "--initial-cluster", initial_cluster,
        "--initial-cluster-token", token,
        # Ignored once the data directory holds a member, so a restart rejoins the same cluster.
        "--initial-cluster-state", "new",
        # Loopback-speed defaults; the leader lease TTL (3 s) must outlast an etcd election.
        "--heartbeat-interval", "100",
        "--election-timeout", "1000",
        # The leader rewrites small keys all the time (region health, history buckets, the
        # routing table): keep an hour of revisions, not all of them.
        "--auto-compaction-mode", "periodic",
        "--auto-compaction-retention", "1h",
        "--logger", "zap",
        "--log-outputs", "stderr",
        *([] if tls is None else tls_argv(tls)),
    ]  # fmt: skip


def tls_argv(tls: CertFiles) -> list[str]:
    """A member's TLS flags: its certificate for clients and peers, and only certificates
    signed by ``tls.ca`` accepted from either (the client's common name is its etcd user)."""
    files = {
        "--trusted-ca-file": tls.ca,
        "--cert-file": tls.cert,
        "--key-file": tls.key,
        "--peer-trusted-ca-file": tls.ca,
        "--peer-cert-file": tls.cert,
        "--peer-key-file": tls.key,
    }
    flags = ["--client-cert-auth", "--peer-client-cert-auth"]
    for flag, path in files.items():
        flags += [flag, str(path)]
    return flags


@dataclass(frozen=True, slots=True)
class MemberHealth:
    name: str
    endpoint: str
    healthy: bool
    is_leader: bool = False
    raft_term: int | None = None
    error: str = ""


async def health(
    member: EtcdMember, timeout: float = 1.0, *, tls: CertFiles | None = None
) -> MemberHealth:
    """Whether the member answers and sees a leader, and whether it is the raft leader.
    ``tls``: a client certificate from the cluster's CA (any user will do)."""
    try:
        if tls is None:
            status = await _post_json(member, "/v3/maintenance/status", {}, timeout)
            healthy = (await _get_json(member, "/health", None, timeout)).get("health") == "true"
        else:
            status, answer = await asyncio.gather(
                _grpc_status(member, tls, timeout), _get_json(member, "/health", tls, timeout)
            )
            healthy = answer.get("health") == "true"
    except (OSError, ValueError) as err:
        return MemberHealth(member.name, member.endpoint, False, error=_reason(err))
    except grpc.RpcError as err:
        reason = err.details() if isinstance(err, grpc.aio.AioRpcError) else str(err)
        return MemberHealth(member.name, member.endpoint, False, error=reason or "no answer")
    member_id = status.get("header", {}).get("member_id")
    return MemberHealth(
        member.name,
        member.endpoint,
        healthy,
        is_leader=member_id is not None and member_id == status.get("leader"),
        raft_term=int(status.get("raftTerm", 0)) or None,
        error="" if healthy else "no leader",
    )


async def cluster_health(
    members: list[EtcdMember], timeout: float = 1.0, *, tls: CertFiles | None = None
) -> list[MemberHealth]:
    return list(await asyncio.gather(*(health(m, timeout, tls=tls) for m in members)))


async def _grpc_status(member: EtcdMember, tls: CertFiles, timeout: float) -> dict:
    """Maintenance.Status over gRPC, shaped as the HTTP API answers it."""
    async with open_channel(member.endpoint, tls) as channel:
        reply = await rpc.MaintenanceStub(channel).Status(rpc.StatusRequest(), timeout=timeout)
    return {
        "header": {"member_id": str(reply.header.member_id)},
        "leader": str(reply.leader),
        "raftTerm": str(reply.raftTerm),
    }


async def _get_json(member: EtcdMember, path: str, tls: CertFiles | None, timeout: float) -> dict:
    url = member.client_url(tls is not None) + path
    return await asyncio.to_thread(_request, url, None, timeout, tls)


async def _post_json(member: EtcdMember, path: str, body: dict, timeout: float) -> dict:
    return await asyncio.to_thread(_request, member.client_url() + path, body, timeout, None)


def _request(url: str, body: dict | None, timeout: float, tls: CertFiles | None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    context = None if tls is None else _ssl_context(tls)
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        return json.loads(response.read())


def _ssl_context(tls: CertFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


def _reason(err: Exception) -> str:
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, OSError):
        return err.reason.strerror or str(err.reason)
    return str(err)


def _scheme(secure: bool) -> str:
    return "https" if secure else "http"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
