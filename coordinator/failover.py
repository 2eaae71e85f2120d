"""Failover decisions: pure functions of what the registry knows, tested without servers.

- ``assess_primary``: is the primary's region failed, and is that confirmed by a second signal?
  Silence alone is not enough: if the standbys still stream WAL from the primary, the database
  is alive and only its agent is lost, which is an alert (DEGRADED), never a promotion.
- ``choose``: the standby with the most WAL replayed (priority breaks ties), refusing one past
  the lag budget unless forced, with the data-loss bound that choice implies.
- ``seconds_at_risk``: the data-loss bound in time, for the failover record.
"""

from __future__ import annotations

from dataclasses import dataclass

from latitude.table import human_bytes


@dataclass(frozen=True, slots=True)
class PrimaryView:
    region: str
    silent_for: float  # seconds since its agent's last report (inf if never)
    database_down: bool  # its agent reports the database DOWN
    address: str  # host:port of its PostgreSQL, as standbys' WAL receivers see it


@dataclass(frozen=True, slots=True)
class StandbyView:
    region: str
    replayed_lsn: int
    streaming_from: str  # upstream host:port while its WAL receiver streams, else ""
    heartbeat_ns: int  # newest heartbeat replayed (0 if none)
    priority: int
    eligible: bool  # reporting, database up as a standby, not in maintenance
    why_not: str = ""


@dataclass(frozen=True, slots=True)
class Assessment:
    failed: bool
    confirmed: bool
    reason: str


def assess_primary(
    primary: PrimaryView, standbys: list[StandbyView], *, fail_after: float
) -> Assessment:
    if primary.silent_for >= fail_after:
        cause = f"no report for {primary.silent_for:.1f} s"
    elif primary.database_down:
        cause = "its agent reports the database down"
    else:
        return Assessment(False, False, "reporting")
    streaming = [
        s.region for s in standbys if s.streaming_from and s.streaming_from == primary.address
    ]
    if streaming:
        return Assessment(
            True,
            False,
            f"{primary.region}: {cause}, but {', '.join(streaming)} still stream WAL from it: "
            "the database is alive, only its agent is lost",
        )
    return Assessment(True, True, f"{primary.region} failed: {cause}, no standby streams from it")


@dataclass(frozen=True, slots=True)
class Budget:
    max_bytes: int
    max_seconds: float


@dataclass(frozen=True, slots=True)
class Choice:
    region: str | None
    reason: str
    loss_bytes: int = 0
    loss_seconds: float = 0.0


def choose(
    standbys: list[StandbyView],
    *,
    primary_lsn: int,
    primary_heartbeat_ns: int,
    budget: Budget,
    forced: bool = False,
    target: str = "",
) -> Choice:
    """The standby to promote (``target`` if an operator named one)."""
    eligible = [s for s in standbys if s.eligible]
    if target:
        eligible = [s for s in eligible if s.region == target]
        if not eligible:
            why = next((s.why_not for s in standbys if s.region == target), "unknown region")
            return Choice(None, f"{target} cannot be promoted: {why}")
    if not eligible:
        reasons = "; ".join(f"{s.region}: {s.why_not}" for s in standbys) or "no standbys"
        return Choice(None, f"no standby can be promoted ({reasons})")
    best = max(eligible, key=lambda s: (s.replayed_lsn, s.priority, s.region))
    loss_bytes = max(0, primary_lsn - best.replayed_lsn)
    loss_seconds = 0.0
    if loss_bytes and primary_heartbeat_ns and best.heartbeat_ns:
        loss_seconds = max(0.0, (primary_heartbeat_ns - best.heartbeat_ns) / 1e9)
    reason = (
        f"most WAL replayed ({format_lsn(best.replayed_lsn)}), priority {best.priority}"
        if not target
        else f"chosen by the operator ({format_lsn(best.replayed_lsn)} replayed)"
    )
    over = loss_bytes > budget.max_bytes or loss_seconds > budget.max_seconds
    if over and not forced:
        return Choice(
            None,
            f"{best.region} is {human_bytes(loss_bytes)} / {loss_seconds:.1f} s behind, past the "
            f"lag budget ({human_bytes(budget.max_bytes)} / {budget.max_seconds:.0f} s): "
            "promote with force to accept the loss",
            loss_bytes,
            loss_seconds,
        )
    return Choice(best.region, reason + (" (forced past the lag budget)" if over else ""),
                  loss_bytes, loss_seconds)  # fmt: skip


def seconds_at_risk(
    *, kept_until_ns: int, writes_ended_ns: int, loss_bytes: int | None
) -> float | None:
    """How long before the old primary's writes certainly ended a lost commit can have been
    acknowledged: the data-loss bound in time.

    ``kept_until_ns`` is the newest heartbeat the promoted standby has replayed. The primary
    stamps a heartbeat with now(), the start of its transaction, so every commit acknowledged
    before that moment precedes the heartbeat's commit in the WAL; WAL is replayed in order,
    so the standby holds all of them. ``writes_ended_ns`` is when the old primary certainly
    acknowledged nothing more: when a FENCE command was confirmed, or else its fence deadline.
    Lost commits were acknowledged between the two moments, and the bound is the time between
    them. It cannot honestly be shorter: a primary that went silent may be cut off rather than
    dead, and it takes writes until it fences itself, so its last commit may come as late as
    its fence deadline.

    0 when ``loss_bytes`` is 0 (the final position is known and the standby has it all);
    None when the standby has replayed no heartbeat (nothing can be said). The heartbeat is on
    the primary's clock and the end on the coordinator's: the bound assumes them synchronised.
    """
    if loss_bytes == 0:
        return 0.0
    if not kept_until_ns:
        return None
    return max(0.0, (writes_ended_ns - kept_until_ns) / 1e9)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
