"""Asking the coordinators for the cluster's status: any replica answers from etcd.

Every call takes ``tls``: the caller's certificate (latitude.pki.CertFiles) for a cluster that
runs mutual TLS, whose role decides what it may call (latitude.authz); None: plaintext."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from latitude.channels import open_channel
from latitude.errors import LatitudeError
from latitude.pki import CertFiles
from latitude.v1 import admin_pb2, admin_pb2_grpc


class NoCoordinator(LatitudeError):
    """No coordinator answered."""


async def cluster_status(
    addresses: Sequence[str], timeout: float = 2.0, *, tls: CertFiles | None = None
) -> admin_pb2.ClusterStatus:
    """The first answer from any of ``addresses``, asked all at once."""
    if not addresses:
        raise NoCoordinator("no coordinator addresses given")
    errors: list[str] = []

    async def ask(address: str) -> admin_pb2.ClusterStatus:
        async with open_channel(address, tls) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            try:
                return await stub.GetStatus(admin_pb2.GetStatusRequest(), timeout=timeout)
            except grpc.aio.AioRpcError as err:
                errors.append(f"{address}: {err.code().name} {err.details() or ''}".strip())
                raise

    tasks = [asyncio.create_task(ask(a)) for a in addresses]
    try:
        for next_done in asyncio.as_completed(tasks):
            try:
                return await next_done
            except grpc.aio.AioRpcError:
                continue
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    raise NoCoordinator("no coordinator answered (" + "; ".join(errors) + ")")


LEADER_METADATA = "latitude-leader-address"


async def call_leader(
    addresses: Sequence[str], method: str, request, timeout: float, *, tls: CertFiles | None = None
):
    """Call an AdminService method that only the leader carries out: try the coordinators,
    following the leader address a follower names."""
    errors: list[str] = []
    queue = list(addresses)
    tried: set[str] = set()
    while queue:
        address = queue.pop(0)
        if address in tried:
            continue
        tried.add(address)
        async with open_channel(address, tls) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            try:
                return await getattr(stub, method)(request, timeout=timeout)
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.FAILED_PRECONDITION and (
                    err.details() == "not the leader"
                ):
                    leader = dict(err.trailing_metadata() or ()).get(LEADER_METADATA)
                    if leader:
                        queue.insert(0, leader)
                    continue
                if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    errors.append(f"{address}: {err.code().name}")
                    continue
                raise LatitudeError(err.details() or err.code().name) from err
    raise NoCoordinator("no leader answered (" + ("; ".join(errors) or "no leader") + ")")


async def call_any(
    addresses: Sequence[str], method: str, request, timeout: float, *, tls: CertFiles | None = None
):
    """Call an AdminService method any coordinator answers (a read): the first that does."""
    errors: list[str] = []
    for address in addresses:
        async with open_channel(address, tls) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            try:
                return await getattr(stub, method)(request, timeout=timeout)
            except grpc.aio.AioRpcError as err:
                if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    errors.append(f"{address}: {err.code().name} {err.details() or ''}".strip())
                    continue
                raise LatitudeError(err.details() or err.code().name) from err
    raise NoCoordinator("no coordinator answered (" + ("; ".join(errors) or "none given") + ")")
