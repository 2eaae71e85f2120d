"""``latitude verify``: asking a coordinator for the data-level check, its progress as one line,
its report as tables a person reads at a glance."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
from google.protobuf import json_format

from latitude.admin_client import NoCoordinator, cluster_status
from latitude.channels import open_channel
from latitude.errors import LatitudeError
from latitude.lsn import format_lsn
from latitude.pki import CertFiles
from latitude.table import render
from latitude.v1 import admin_pb2, admin_pb2_grpc

_RETRY = (grpc.StatusCode.UNAVAILABLE,)


async def verify(
    addresses: Sequence[str],
    request: admin_pb2.VerifyRequest,
    timeout: float,
    on_progress: Callable[[admin_pb2.VerifyProgress], None] = lambda _: None,
    *,
    tls: CertFiles | None = None,
) -> admin_pb2.VerifyReport:
    """Run Verify on the first coordinator that answers, the leader first (any coordinator
    can run the check, but only the leader records its outcome as an event, and so as an
    incident when rows differ); its progress goes to ``on_progress``, its report is
    returned."""
    errors: list[str] = []
    for address in await _leader_first(addresses, tls):
        async with open_channel(address, tls) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            started = False
            try:
                async for update in stub.Verify(request, timeout=timeout):
                    started = True
                    if update.HasField("report"):
                        return update.report
                    on_progress(update.progress)
            except grpc.aio.AioRpcError as err:
                if err.code() in _RETRY and not started:
                    errors.append(f"{address}: {err.code().name} {err.details() or ''}".strip())
                    continue
                if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise LatitudeError(f"verify did not finish within {timeout:g} s") from err
                raise LatitudeError(err.details() or err.code().name) from err
            raise LatitudeError(f"{address} ended the check without a report")
    raise NoCoordinator("no coordinator answered (" + ("; ".join(errors) or "none given") + ")")


async def _leader_first(addresses: Sequence[str], tls: CertFiles | None) -> list[str]:
    """``addresses`` with the leader's first when one is known; as given when none answers."""
    try:
        leader = (await cluster_status(addresses, tls=tls)).leader.address
    except NoCoordinator:
        return list(addresses)
    return [leader, *(a for a in addresses if a != leader)] if leader else list(addresses)


def format_progress(progress: admin_pb2.VerifyProgress) -> str:
    table = f" {progress.table}" if progress.table else ""
    return (
        f"[{progress.elapsed_seconds:6.1f} s] tables {progress.tables_done}/"
        f"{progress.tables_total}{table}: {progress.ranges_done} ranges, "
        f"{progress.rows_done} rows; {progress.phase}"
    )


def percent(fraction: float) -> str:
    """99.95 % and not 100 % while anything disagrees: the figure is never rounded up to
    agreement."""
    value = fraction * 100
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    if text == "100" and fraction < 1:
        text = "99.99"
    return f"{text} %"


def format_report(report: admin_pb2.VerifyReport) -> str:
    verdict = "consistent" if report.consistent else "NOT CONSISTENT"
    lines = [
        f"{verdict}: {percent(report.agreeing_fraction)} of {report.ranges} key ranges agree "
        f"({report.ranges_agreeing} agree, {report.ranges_unsettled} unsettled) across "
        f"{', '.join(report.regions)}",
        f"primary {report.primary_region} at {format_lsn(report.lsn)}, replayed by every "
        f"standby first; {report.rows} rows in {report.elapsed_seconds:.1f} s "
        f"({report.rows_per_second:,.0f} rows/s)",
    ]
    lines += [f"note: {n}" for n in report.notes]
    rows = [
        [
            t.table,
            ", ".join(t.key_columns) or "(none)",
            t.rows,
            f"{t.ranges_agreeing}/{t.ranges}",
            sum(not m.unsettled for m in t.mismatches),
            sum(m.unsettled for m in t.mismatches),
            f"{t.elapsed_seconds:.1f} s",
            t.note,
        ]
        for t in report.tables
    ]
    headers = ["TABLE", "KEY", "ROWS", "AGREE", "MISMATCHES", "UNSETTLED", "TOOK", "NOTE"]
    lines += ["", render(headers, rows)]
    mismatches = [
        [t.table, m.range, _regions(m), len(m.rows) or "-", "yes" if m.rows_truncated else ""]
        for t in report.tables
        for m in t.mismatches
    ]
    if mismatches:
        headers = ["TABLE", "KEY RANGE", "REGIONS", "ROWS", "MORE"]
        lines += ["", render(headers, mismatches)]
    differing = [
        [t.table, row.key, region, how]
        for t in report.tables
        for m in t.mismatches
        for row in m.rows
        for region, how in sorted(row.regions.items())
    ]
    if differing:
        lines += ["", render(["TABLE", "KEY", "REGION", "HOW"], differing)]
    return "\n".join(lines)


def _regions(mismatch: admin_pb2.RangeMismatch) -> str:
    if mismatch.unsettled:
        return "unsettled: changed through every re-check"
    return ", ".join(mismatch.regions)


def report_json(report: admin_pb2.VerifyReport) -> dict:
    return json_format.MessageToDict(
        report, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
