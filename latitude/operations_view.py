"""Views of the event history and of the consistency check."""

from __future__ import annotations

import datetime

from google.protobuf import json_format

from latitude.enums import short_name
from latitude.errors import LatitudeError
from latitude.lsn import format_lsn
from latitude.table import human_bytes, render
from latitude.v1 import admin_pb2, common_pb2

_KIND_PREFIX = "EVENT_KIND_"


def event_kind(name: str) -> int:
    """An EventKind from what a person types: "failover_started", "FAILOVER-STARTED", ..."""
    wanted = name.strip().upper().replace("-", "_").removeprefix(_KIND_PREFIX)
    try:
        kind = admin_pb2.EventKind.Value(_KIND_PREFIX + wanted)
    except ValueError:
        kind = admin_pb2.EVENT_KIND_UNSPECIFIED
    if kind == admin_pb2.EVENT_KIND_UNSPECIFIED:
        known = ", ".join(_kind(k) for k in admin_pb2.EventKind.values() if k)
        raise LatitudeError(f"--kind: unknown event kind {name!r} (known: {known})")
    return kind


def _kind(kind: int) -> str:
    return admin_pb2.EventKind.Name(kind).removeprefix(_KIND_PREFIX).lower()


def _time(timestamp) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp.ToNanoseconds() / 1e9)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def format_events(events) -> str:
    if not events:
        return "no events"
    return render(
        ["TIME", "SEVERITY", "REGION", "KIND", "MESSAGE"],
        [
            [
                _time(e.time),
                short_name(admin_pb2.Severity, e.severity, lower=True),
                e.region or "-",
                _kind(e.kind),
                e.message,
            ]
            for e in events
        ],
    )


def events_json(events) -> list[dict]:
    return [json_format.MessageToDict(e, preserving_proto_field_name=True) for e in events]


def _verdict(verdict: int) -> str:
    return short_name(admin_pb2.ConsistencyVerdict, verdict)


def _lsn(lsn: int) -> str:
    return format_lsn(lsn) if lsn else "-"


def format_consistency(report: admin_pb2.ConsistencyReport) -> str:
    if report.primary_region:
        primary = (
            f"primary {report.primary_region} on timeline {report.primary_timeline_id} at "
            f"{_lsn(report.primary_lsn)}"
        )
    else:
        primary = "no primary to compare with"
    head = f"{'consistent' if report.consistent else 'NOT CONSISTENT'}: {primary}"
    rows = [
        [
            r.region,
            short_name(common_pb2.DatabaseRole, r.role, lower=True) if r.role else "-",
            _verdict(r.verdict),
            r.timeline_id or "-",
            _lsn(r.lsn),
            human_bytes(r.behind_bytes) if r.behind_bytes else "-",
            r.detail,
        ]
        for r in report.regions
    ]
    table = render(["REGION", "ROLE", "VERDICT", "TIMELINE", "LSN", "BEHIND", "DETAIL"], rows)
    return f"{head}\n\n{table}"


def consistency_json(report: admin_pb2.ConsistencyReport) -> dict:
    return json_format.MessageToDict(report, preserving_proto_field_name=True)
