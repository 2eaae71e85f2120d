"""What a finished data-level check leaves in the event history.

A check that finds the regions' data unlike is the most serious thing an operator can learn
about a replicated database, and it must not live only in the terminal of whoever ran it: the
report becomes a CONSISTENCY_CHECKED event (``check=data``), critical when anything differs,
which the incidents correlation turns into a ``data_divergence`` incident that the next clean
check resolves. Only the leader records events, so ``latitude verify`` asks the leader first.

Pure: the event's fields from the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from latitude.v1 import admin_pb2
from latitude.verify_view import percent

# The attribute that tells a data-level check's event from the WAL-position check's.
CHECK = "check"
DATA = "data"
# Tables named in the message, at most: the report has all of them.
_NAMED = 5


@dataclass(frozen=True, slots=True)
class VerifyEvent:
    severity: int
    message: str
    attributes: Mapping[str, object]
    # The one region whose rows differ from the primary's; empty when several do, or none.
    region: str = ""


def event_of(report: admin_pb2.VerifyReport) -> VerifyEvent:
    """The event a finished check records."""
    share = f"{percent(report.agreeing_fraction)} of {report.ranges} key ranges agree"
    unlike = [t.table for t in report.tables if t.mismatches]
    attributes: dict[str, object] = {
        CHECK: DATA,
        "consistent": report.consistent,
        "primary_region": report.primary_region,
        "agreeing_fraction": f"{report.agreeing_fraction:.6f}",
        "ranges": report.ranges,
        "rows": report.rows,
        "tables_unlike": ",".join(unlike),
    }
    if report.consistent:
        return VerifyEvent(admin_pb2.SEVERITY_INFO, f"data consistent: {share}", attributes)
    named = ", ".join(unlike[:_NAMED])
    if len(unlike) > _NAMED:
        named += f" and {len(unlike) - _NAMED} more"
    regions = sorted({r for t in report.tables for m in t.mismatches for r in m.regions})
    attributes["regions_unlike"] = ",".join(regions)
    where = f" in {', '.join(regions)}" if regions else ""
    if unlike:
        message = f"data NOT consistent: {share}; unlike{where}: {named}"
        severity = admin_pb2.SEVERITY_CRITICAL
    else:  # nothing differed, but some ranges never settled under writes
        message = f"data not confirmed: {share}; {report.ranges_unsettled} ranges kept changing"
        severity = admin_pb2.SEVERITY_WARNING
    return VerifyEvent(severity, message, attributes, regions[0] if len(regions) == 1 else "")


def record(events, report: admin_pb2.VerifyReport) -> None:
    """Queue the check's event (``events`` records nothing unless this coordinator leads)."""
    found = event_of(report)
    events.record(
        admin_pb2.EVENT_KIND_CONSISTENCY_CHECKED,
        found.severity,
        region=found.region,
        message=found.message,
        attributes=found.attributes,
    )
