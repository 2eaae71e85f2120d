"""What a finished data-level check records: exact severities, messages and attributes."""

from __future__ import annotations

from coordinator.verify.record import event_of, record
from latitude.v1 import admin_pb2 as pb


def report(**fields) -> pb.VerifyReport:
    base = dict(
        primary_region="us-east-1",
        ranges=9,
        ranges_agreeing=9,
        agreeing_fraction=1.0,
        rows=4000,
        consistent=True,
        regions=["ap-southeast-1", "eu-west-1", "us-east-1"],
    )
    return pb.VerifyReport(**(base | fields))


def unlike(table: str, *regions: str) -> pb.TableVerdict:
    return pb.TableVerdict(
        table=table,
        ranges=9,
        ranges_agreeing=8,
        mismatches=[pb.RangeMismatch(range="id in (1000, 1500]", regions=list(regions))],
    )


def test_an_agreeing_check_is_information():
    found = event_of(report())
    assert found.severity == pb.SEVERITY_INFO
    assert found.message == "data consistent: 100 % of 9 key ranges agree"
    assert found.attributes["check"] == "data" and found.attributes["consistent"] is True
    assert found.region == ""


def test_rows_unlike_in_one_region_are_critical_and_name_it():
    found = event_of(
        report(
            consistent=False,
            ranges_agreeing=8,
            agreeing_fraction=8 / 9,
            tables=[unlike("public.ledger", "ap-southeast-1"), pb.TableVerdict(table="public.ok")],
        )
    )
    assert found.severity == pb.SEVERITY_CRITICAL
    assert found.message == (
        "data NOT consistent: 88.89 % of 9 key ranges agree; unlike in ap-southeast-1: "
        "public.ledger"
    )
    assert found.region == "ap-southeast-1"
    assert found.attributes["tables_unlike"] == "public.ledger"
    assert found.attributes["regions_unlike"] == "ap-southeast-1"


def test_many_tables_unlike_in_several_regions_are_summed_up():
    tables = [unlike(f"public.t{n}", "eu-west-1", "ap-southeast-1") for n in range(7)]
    found = event_of(report(consistent=False, agreeing_fraction=0.5, tables=tables))
    assert found.message.endswith(
        "unlike in ap-southeast-1, eu-west-1: public.t0, public.t1, public.t2, public.t3, "
        "public.t4 and 2 more"
    )
    assert found.region == ""
    assert found.attributes["tables_unlike"].count(",") == 6


def test_ranges_that_never_settled_are_a_warning_not_a_divergence():
    found = event_of(report(consistent=False, agreeing_fraction=0.9, ranges_unsettled=1))
    assert found.severity == pb.SEVERITY_WARNING
    assert found.message == "data not confirmed: 90 % of 9 key ranges agree; 1 ranges kept changing"
    assert found.attributes["tables_unlike"] == ""


def test_record_queues_one_consistency_event():
    class Events:
        def __init__(self) -> None:
            self.calls = []

        def record(self, kind, severity, **fields) -> None:
            self.calls.append((kind, severity, fields))

    events = Events()
    record(events, report())
    ((kind, severity, fields),) = events.calls
    assert (kind, severity) == (pb.EVENT_KIND_CONSISTENCY_CHECKED, pb.SEVERITY_INFO)
    assert fields["message"].startswith("data consistent") and fields["region"] == ""
