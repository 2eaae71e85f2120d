"""AdminService on every replica: the global view is read from etcd, not from memory, so any
coordinator answers the same thing the leader last published."""

from __future__ import annotations

import asyncio
import time

import grpc

from coordinator.etcd import EtcdError, MemberProbe
from coordinator.node import CoordinatorNode
from latitude.v1 import admin_pb2, admin_pb2_grpc


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, node: CoordinatorNode, members: MemberProbe) -> None:
        self._node = node
        self._members = members

    async def GetStatus(self, request, context):
        store = self._node.store
        try:
            (leader, _), published, members, write_region, failover = await asyncio.gather(
                store.leader(),
                store.read_prefix("regions"),
                self._members.statuses(),
                store.read("write_region"),
                store.read("failover/current"),
            )
        except EtcdError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"etcd unreachable: {err}")
        now = time.time()
        status = admin_pb2.ClusterStatus(responder_id=self._node.id)
        status.generated_at.FromNanoseconds(int(now * 1e9))
        if leader is not None:
            status.leader.leader_id = leader.id
            status.leader.address = leader.address
            status.leader.epoch = leader.epoch
            status.leader.elected_at.FromNanoseconds(int(leader.elected_at * 1e9))
        for name in sorted(published):
            region = admin_pb2.RegionStatus.FromString(published[name])
            if region.HasField("last_report_at"):
                age = now - region.last_report_at.ToNanoseconds() / 1e9
                region.last_report_age_seconds = max(0.0, age)
            status.regions.append(region)
        status.write_region = (write_region or b"").decode()
        if failover:
            record = admin_pb2.FailoverStatus.FromString(failover)
            if not record.HasField("finished_at"):
                status.failover.CopyFrom(record)
        for member in members:
            status.etcd_members.append(
                admin_pb2.EtcdMember(
                    name=member.endpoint,
                    id=member.member_id,
                    client_urls=[f"http://{member.endpoint}"],
                    healthy=member.healthy,
                    is_leader=member.is_leader,
                    error=member.error,
                )
            )
        return status
