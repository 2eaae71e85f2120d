"""The consistency check's verdicts: pure functions of the regions' database readings.

Every region is compared with the primary (the write region's database):

- IN_SYNC: the primary itself, or a standby on its timeline that has replayed all it had
  written when it was read;
- LAGGING: a standby on the primary's timeline history, behind it. A standby on an earlier
  timeline is on that history when the timeline is in the primary's history file and the
  standby has not replayed past the point where the next timeline forked from it;
- DIVERGED: another system identifier, a timeline the primary did not go through, WAL past a
  fork point, or a fenced former primary: it needs REJOIN (pg_rewind) or a new base backup;
- CONFLICTING_PRIMARY: a second writable, unfenced primary;
- UNKNOWN: no usable reading (no report, a stale one, the database down or not answering), or
  nothing to compare it with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from latitude.enums import short_name
from latitude.lsn import format_lsn
from latitude.table import human_bytes
from latitude.v1 import admin_pb2, common_pb2

STALE_AFTER = 5.0

_PRIMARY = common_pb2.DATABASE_ROLE_PRIMARY
_STANDBY = common_pb2.DATABASE_ROLE_STANDBY
IN_SYNC = admin_pb2.CONSISTENCY_VERDICT_IN_SYNC
LAGGING = admin_pb2.CONSISTENCY_VERDICT_LAGGING
DIVERGED = admin_pb2.CONSISTENCY_VERDICT_DIVERGED
CONFLICTING = admin_pb2.CONSISTENCY_VERDICT_CONFLICTING_PRIMARY
UNKNOWN = admin_pb2.CONSISTENCY_VERDICT_UNKNOWN


@dataclass(frozen=True, slots=True)
class Reading:
    """What is known of one region's database."""

    region: str
    database: common_pb2.DatabaseStatus | None  # None: no reading at all
    why_missing: str = ""  # when database is None
    # The leader's replay lag for a standby (RegionStatus.replay_lag_bytes): the primary as
    # it was when the standby was read, so a reading older than the primary's is not unfair.
    lag_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class _Verdict:
    verdict: int
    detail: str
    behind: int = 0


def assess(
    readings: Sequence[Reading],
    write_region: str,
    *,
    now: float,
    stale_after: float = STALE_AFTER,
    note: str = "",
) -> admin_pb2.ConsistencyReport:
    """The report for ``readings``; ``note`` is added to every region's detail."""
    usable: dict[str, common_pb2.DatabaseStatus] = {}
    missing: dict[str, str] = {}
    for reading in readings:
        why = _unusable(reading, now, stale_after)
        if why:
            missing[reading.region] = why
        else:
            usable[reading.region] = reading.database
    primary = _reference(usable, write_region)
    report = admin_pb2.ConsistencyReport()
    report.checked_at.FromNanoseconds(int(now * 1e9))
    if primary is not None:
        db = usable[primary]
        report.primary_region = primary
        report.primary_timeline_id = db.timeline_id
        report.primary_lsn = db.current_lsn
    for reading in sorted(readings, key=lambda r: r.region):
        name, db = reading.region, reading.database
        if name in missing:
            judged = _Verdict(UNKNOWN, missing[name])
        elif primary is None:
            judged = _without_primary(name, db, usable, write_region)
        elif name == primary:
            fenced = "; fenced: it accepts no writes" if db.fenced else ""
            judged = _Verdict(IN_SYNC, f"the primary, timeline {db.timeline_id}{fenced}")
        else:
            judged = _compare(db, usable[primary], primary, reading.lag_bytes)
        region = admin_pb2.RegionConsistency(
            region=name,
            verdict=judged.verdict,
            behind_bytes=judged.behind,
            detail=f"{judged.detail} ({note})" if note else judged.detail,
        )
        if db is not None:
            region.role = db.role
            region.timeline_id = db.timeline_id
            region.lsn = db.current_lsn if db.role == _PRIMARY else db.replayed_lsn
            region.system_identifier = db.system_identifier
            if db.HasField("observed_at"):
                region.observed_at.CopyFrom(db.observed_at)
        report.regions.append(region)
    writable = [n for n, db in usable.items() if db.role == _PRIMARY and not db.fenced]
    report.consistent = (
        primary is not None
        and writable == [primary]
        and all(r.verdict in (IN_SYNC, LAGGING) for r in report.regions)
    )
    return report


def _unusable(reading: Reading, now: float, stale_after: float) -> str:
    db = reading.database
    if db is None:
        return reading.why_missing or "no reading"
    if db.role == common_pb2.DATABASE_ROLE_UNSPECIFIED:
        return "no report yet"
    if db.role == common_pb2.DATABASE_ROLE_DOWN:
        return f"database down: {db.probe_error or 'no answer'}"
    if db.role == common_pb2.DATABASE_ROLE_UNKNOWN:
        return f"database not answering: {db.probe_error or 'unknown role'}"
    age = now - db.observed_at.ToNanoseconds() / 1e9
    if age > stale_after:
        return f"last reading {age:.1f} s old: its agent is silent"
    return ""


def _reference(usable: dict[str, common_pb2.DatabaseStatus], write_region: str) -> str | None:
    """The region to compare with: the write region's primary; without a write region, the
    one writable primary there is."""
    if write_region:
        db = usable.get(write_region)
        return write_region if db is not None and db.role == _PRIMARY else None
    writable = [n for n, db in usable.items() if db.role == _PRIMARY and not db.fenced]
    return writable[0] if len(writable) == 1 else None


def _without_primary(
    name: str,
    db: common_pb2.DatabaseStatus,
    usable: dict[str, common_pb2.DatabaseStatus],
    write_region: str,
) -> _Verdict:
    if db.role == _PRIMARY and not db.fenced:
        if write_region and name != write_region:
            return _Verdict(
                CONFLICTING, f"a writable primary outside the write region ({write_region})"
            )
        others = [n for n, d in usable.items() if d.role == _PRIMARY and not d.fenced]
        if len(others) > 1:
            return _Verdict(CONFLICTING, f"one of {len(others)} writable primaries")
    if name == write_region:
        role = short_name(common_pb2.DatabaseRole, db.role, lower=True)
        return _Verdict(UNKNOWN, f"holds the write region, but its database is a {role}")
    why = (
        f"the write region {write_region} has no usable reading"
        if write_region
        else ("no write region and no single writable primary")
    )
    return _Verdict(UNKNOWN, f"nothing to compare with: {why}")


def _compare(
    db: common_pb2.DatabaseStatus,
    primary: common_pb2.DatabaseStatus,
    primary_region: str,
    lag_bytes: int | None,
) -> _Verdict:
    ours, theirs = db.system_identifier, primary.system_identifier
    if ours and theirs and ours != theirs:
        return _Verdict(
            DIVERGED,
            f"system identifier {ours} is not the primary's ({theirs}): another cluster, "
            "it needs a new base backup",
        )
    timeline, lsn = db.timeline_id, db.current_lsn if db.role == _PRIMARY else db.replayed_lsn
    if db.role == _PRIMARY:
        if not db.fenced:
            return _Verdict(
                CONFLICTING,
                f"a second writable primary (timeline {timeline}, at {format_lsn(lsn)}): "
                "split brain",
            )
        return _Verdict(
            DIVERGED, f"a fenced former primary on timeline {timeline}: it needs REJOIN"
        )
    if not timeline:
        return _Verdict(UNKNOWN, "its timeline is unknown")
    if timeline > primary.timeline_id:
        return _Verdict(
            DIVERGED,
            f"timeline {timeline} is past the primary's ({primary.timeline_id}): a history "
            "the primary did not go through",
        )
    streams = db.wal_receiver_streaming and db.upstream_region == primary_region
    behind = max(0, primary.current_lsn - lsn)
    older = db.observed_at.ToNanoseconds() < primary.observed_at.ToNanoseconds()
    if lag_bytes is not None and older:
        behind = min(behind, lag_bytes)
    if timeline < primary.timeline_id:
        forks = {s.timeline_id: s.end_lsn for s in primary.timeline_history}
        if not forks:
            if streams:
                return _Verdict(
                    LAGGING,
                    f"on timeline {timeline}, streaming from the primary (whose timeline "
                    "history is unreadable)",
                    behind,
                )
            return _Verdict(
                UNKNOWN,
                f"on timeline {timeline} and not streaming from the primary, whose timeline "
                "history is unreadable",
            )
        if timeline not in forks:
            listed = ", ".join(str(t) for t in sorted(forks)) or "none"
            return _Verdict(
                DIVERGED,
                f"timeline {timeline} is not in the primary's history (timelines {listed}, "
                f"then {primary.timeline_id})",
            )
        fork = forks[timeline]
        if lsn > fork:
            return _Verdict(
                DIVERGED,
                f"timeline {timeline} forked from the primary's history at {format_lsn(fork)}"
                f", and it replayed past that, to {format_lsn(lsn)}",
            )
        return _Verdict(
            LAGGING,
            f"on timeline {timeline}, which the primary left at {format_lsn(fork)}; "
            f"{human_bytes(behind)} behind" + ("" if streams else "; not streaming from it"),
            behind,
        )
    if behind == 0:
        return _Verdict(IN_SYNC, "replayed everything the primary had written")
    return _Verdict(
        LAGGING,
        f"{human_bytes(behind)} behind the primary" + ("" if streams else "; not streaming"),
        behind,
    )
