"""Asking the coordinators for the cluster's status: any replica answers from etcd."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from latitude.errors import LatitudeError
from latitude.v1 import admin_pb2, admin_pb2_grpc


class NoCoordinator(LatitudeError):
    """No coordinator answered."""


async def cluster_status(addresses: Sequence[str], timeout: float = 2.0) -> admin_pb2.ClusterStatus:
    """The first answer from any of ``addresses``, asked all at once."""
    if not addresses:
        raise NoCoordinator("no coordinator addresses given")
    errors: list[str] = []

    async def ask(address: str) -> admin_pb2.ClusterStatus:
        async with grpc.aio.insecure_channel(address) as channel:
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
