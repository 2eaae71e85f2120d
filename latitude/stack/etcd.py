"""The stack's three-member etcd cluster: command lines, and health through etcd's HTTP API."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class EtcdMember:
    name: str
    host: str
    client_port: int
    peer_port: int

    @property
    def client_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        """host:port, as etcd clients take it."""
        return f"{_url_host(self.host)}:{self.client_port}"


def argv(
    etcd: str, member: EtcdMember, members: list[EtcdMember], data_dir: Path, token: str
) -> list[str]:
    initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)
    return [
        etcd,
        "--name", member.name,
        "--data-dir", str(data_dir),
        "--listen-client-urls", member.client_url,
        "--advertise-client-urls", member.client_url,
        "--listen-peer-urls", member.peer_url,
        "--initial-advertise-peer-urls", member.peer_url,
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
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class MemberHealth:
    name: str
    endpoint: str
    healthy: bool
    is_leader: bool = False
    raft_term: int | None = None
    error: str = ""


async def health(member: EtcdMember, timeout: float = 1.0) -> MemberHealth:
    """Whether the member answers and sees a leader, and whether it is the raft leader."""
    try:
        status = await _post_json(member, "/v3/maintenance/status", {}, timeout)
        healthy = (await _get_json(member, "/health", timeout)).get("health") == "true"
    except (OSError, ValueError) as err:
        return MemberHealth(member.name, member.endpoint, False, error=_reason(err))
    member_id = status.get("header", {}).get("member_id")
    return MemberHealth(
        member.name,
        member.endpoint,
        healthy,
        is_leader=member_id is not None and member_id == status.get("leader"),
        raft_term=int(status.get("raftTerm", 0)) or None,
        error="" if healthy else "no leader",
    )


async def cluster_health(members: list[EtcdMember], timeout: float = 1.0) -> list[MemberHealth]:
    return list(await asyncio.gather(*(health(m, timeout) for m in members)))


async def _get_json(member: EtcdMember, path: str, timeout: float) -> dict:
    return await asyncio.to_thread(_request, member.client_url + path, None, timeout)


async def _post_json(member: EtcdMember, path: str, body: dict, timeout: float) -> dict:
    return await asyncio.to_thread(_request, member.client_url + path, body, timeout)


def _request(url: str, body: dict | None, timeout: float) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _reason(err: Exception) -> str:
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, OSError):
        return err.reason.strerror or str(err.reason)
    return str(err)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
