"""The registry as the failover decisions see it: one PrimaryView, a StandbyView per standby.

``coordinator.failover.decisions`` decides from these views alone, so it stays pure and is
tested without servers. This module is the one place that reads them out of the leader's
registry, and it decides which regions are not eligible for promotion, and why: no reports,
not a standby, in maintenance, or priority 0. It reads; it never sends a command.
"""

from __future__ import annotations

from coordinator.failover.decisions import PrimaryView, StandbyView
from coordinator.registry import Registry
from latitude.v1 import common_pb2


def primary_view(registry: Registry, write_region: str, *, now: float, since: float) -> PrimaryView:
    """``since``: when this leadership began (monotonic): a new leader's silence counts from
    then, not from a report it could never have received."""
    record = registry.regions[write_region]
    last = record.monitor.arrivals.last_arrival
    heard = since if last is None else max(last, since)
    down = 0.0 if record.down_since is None else now - record.down_since
    return PrimaryView(
        write_region, max(0.0, now - heard), down, postgres_address(registry, write_region)
    )


def standby_views(registry: Registry, write_region: str, *, now: float) -> list[StandbyView]:
    """Every region but the write region's, and whether (and why not) it could be promoted."""
    views = []
    for name, record in registry.regions.items():
        if name == write_region:
            continue
        db = record.report.database if record.report else None
        reporting = (
            db is not None
            and record.session is not None
            and not record.monitor.arrivals.overdue(now)
        )
        why = ""
        if not reporting:
            why = "its agent is not reporting"
        elif db.role != common_pb2.DATABASE_ROLE_STANDBY:
            why = f"its database is {common_pb2.DatabaseRole.Name(db.role)}"
        elif record.monitor.maintenance:
            why = "in maintenance"
        elif record.hello is not None and record.hello.priority == 0:
            why = "priority 0 (never promoted)"
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
                reporting,
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
