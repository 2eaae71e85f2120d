"""The registry as the failover decisions see it: one PrimaryView, a StandbyView per standby.

``coordinator.failover`` decides from these views alone, so it stays pure and is tested
without servers. This module is the one place that reads them out of the leader's registry,
and it decides which regions are not eligible for promotion, and why: no reports, not a
standby, in maintenance, or priority 0. It reads; it never sends a command.
"""

from __future__ import annotations

import time

from coordinator.failover import PrimaryView, StandbyView
from coordinator.registry import Registry
from latitude.v1 import common_pb2


def primary_view(registry: Registry, write_region: str) -> PrimaryView:
    record = registry.regions[write_region]
    db = record.report.database if record.report else None
    return PrimaryView(
        write_region,
        record.monitor.arrivals.silence(time.monotonic()),
        db is not None and db.role == common_pb2.DATABASE_ROLE_DOWN,
        postgres_address(registry, write_region),
    )


def standby_views(registry: Registry, write_region: str) -> list[StandbyView]:
    """Every region but the write region's, and whether (and why not) it could be promoted."""
    views = []
    now = time.monotonic()
    for name, record in registry.regions.items():
        if name == write_region:
            continue
        db = record.report.database if record.report else None
        why = ""
        if db is None or record.session is None or record.monitor.arrivals.overdue(now):
            why = "its agent is not reporting"
        elif db.role != common_pb2.DATABASE_ROLE_STANDBY:
            why = f"its database is {common_pb2.DatabaseRole.Name(db.role)}"
        elif record.monitor.maintenance:
            why = "in maintenance"
        elif record.hello is not None and record.hello.priority == 0:
            why = "priority 0 (never promoted automatically)"
        views.append(
            StandbyView(
                name,
                # A promotion replays everything received first, so what counts is
                # what it has received (in synchronous mode: every acknowledged commit).
                max(db.replayed_lsn, db.received_lsn) if db else 0,
                db.upstream_address if db and db.wal_receiver_streaming else "",
                db.heartbeat_at.ToNanoseconds() if db and db.HasField("heartbeat_at") else 0,
                record.hello.priority if record.hello else 0,
                not why,
                why,
            )
        )
    return views


def postgres_address(registry: Registry, region: str) -> str:
    """host:port of ``region``'s PostgreSQL as its agent announced it ("" before its hello)."""
    hello = registry.regions[region].hello
    if hello is None:
        return ""
    return next(
        (e.address for e in hello.endpoints if e.kind == common_pb2.ENDPOINT_KIND_POSTGRES),
        "",
    )
