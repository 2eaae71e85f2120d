"""The data-level check's pure parts: cutting key ranges, judging checksums and rows, the
request's settings, the targets, the SQL and the report's view."""

from __future__ import annotations

import socket

import pytest

from agent.config import AgentConfig
from agent.main import advertised_address
from agent.verify_sql import KeyColumn, TableSql
from coordinator.verify.judge import (
    DIFFERS,
    EXTRA,
    MISSING,
    RowDifference,
    Sum,
    Verdict,
    agreeing_fraction,
    bracket,
    differing,
    pause,
    pieces,
    row_differences,
)
from coordinator.verify.keyspace import WHOLE, KeyRange, describe, describe_key, split
from coordinator.verify.settings import InvalidVerify, VerifySettings
from coordinator.verify.targets import NoTargets, verify_targets
from latitude import verify_view
from latitude.errors import ConfigError
from latitude.v1 import admin_pb2

A, B = Sum(10, "1:2"), Sum(10, "1:3")


# -- key ranges -------------------------------------------------------------------------------


def test_cuts_cover_the_range_without_gap_or_overlap():
    assert split(WHOLE, [("10",), ("20",)]) == [
        KeyRange(None, ("10",)),
        KeyRange(("10",), ("20",)),
        KeyRange(("20",), None),  # the open end: rows only a standby has land here
    ]
    assert split(WHOLE, []) == [WHOLE]
    inner = KeyRange(("0",), ("30",))
    assert split(inner, [("10",), ("30",)]) == [
        KeyRange(("0",), ("10",)),
        KeyRange(("10",), ("30",)),  # a cut at the upper bound leaves no empty last piece
    ]


def test_ranges_are_written_as_people_write_them():
    assert describe(WHOLE, ["id"]) == "whole table"
    assert describe(KeyRange(("1",), ("2",)), []) == "whole table"
    assert describe(KeyRange(None, ("1000",)), ["id"]) == "id <= 1000"
    assert describe(KeyRange(("1000",), None), ["id"]) == "id > 1000"
    assert describe(KeyRange(("1",), ("2",)), ["id"]) == "id in (1, 2]"
    composite = KeyRange(("7", "b"), ("9", "it's"))
    assert describe(composite, ["a", "b"]) == "(a, b) in ((7, 'b'), (9, 'it''s')]"
    assert describe_key(("2026-01-01 00:00:00+00",)) == "'2026-01-01 00:00:00+00'"


def test_a_range_travels_with_only_the_bounds_it_has():
    message = KeyRange(None, ("5", "x")).to_proto()
    assert not message.HasField("after") and list(message.upto.values) == ["5", "x"]
    assert not WHOLE.to_proto().HasField("upto")


# -- judging ----------------------------------------------------------------------------------


def test_the_first_look_names_the_regions_that_differ():
    assert differing(A, {"eu": A, "ap": A}) == []
    assert differing(A, {"eu": B, "ap": A, "au": Sum(11, "1:2")}) == ["au", "eu"]


def test_a_bracketed_range_agrees_differs_or_changed_meanwhile():
    assert bracket(A, {"eu": A}, A) == (Verdict.AGREE, [])
    # The primary held the same rows before and after the standby's read: a real mismatch.
    assert bracket(A, {"eu": B, "ap": A}, A) == (Verdict.DIFFER, ["eu"])
    # The primary changed between its two reads: no verdict, however the standby looked.
    assert bracket(A, {"eu": B}, B) == (Verdict.CHANGING, [])
    assert bracket(A, {"eu": A}, B) == (Verdict.CHANGING, [])


def test_rows_are_named_missing_extra_or_different_by_key():
    primary = {("1",): "h1", ("2",): "h2", ("3",): "h3"}
    others = {
        "eu": dict(primary),
        "ap": {("1",): "h1", ("3",): "changed", ("4",): "h4"},
    }
    found, changing = row_differences(primary, others, primary)
    assert changing == 0
    assert found == [
        RowDifference(("2",), {"ap": MISSING}),
        RowDifference(("3",), {"ap": DIFFERS}),
        RowDifference(("4",), {"ap": EXTRA}),
    ]


def test_rows_that_changed_on_the_primary_between_its_reads_get_no_verdict():
    before = {("1",): "h1", ("2",): "h2"}
    after = {("1",): "h1", ("2",): "h2-new", ("3",): "h3"}  # 2 updated, 3 inserted
    found, changing = row_differences(before, {"eu": {("1",): "x", ("2",): "h2"}}, after)
    assert changing == 2
    assert found == [RowDifference(("1",), {"eu": DIFFERS})]


def test_a_mismatching_range_is_cut_until_small_enough_to_compare_by_row():
    assert pieces(200, row_limit=200, fanout=8) == 0
    assert pieces(10_000, row_limit=200, fanout=8) == 1250
    assert pieces(201, row_limit=200, fanout=8) == 26
    assert pieces(5, row_limit=0, fanout=8) == 1


def test_a_paced_check_waits_until_its_rows_fit_the_pace():
    assert pause(50_000, elapsed=1.0, max_rows_per_second=0) == 0.0
    assert pause(50_000, elapsed=1.0, max_rows_per_second=10_000) == 4.0
    assert pause(50_000, elapsed=6.0, max_rows_per_second=10_000) == 0.0


def test_the_consistency_figure():
    assert agreeing_fraction(999, 1000) == 0.999
    assert agreeing_fraction(0, 0) == 1.0


# -- settings and targets ---------------------------------------------------------------------


def test_settings_take_defaults_and_bounds():
    settings = VerifySettings.from_request(admin_pb2.VerifyRequest(tables=["public.t", "s.u"]))
    assert settings.tables == (("public", "t"), ("s", "u"))
    assert (settings.rows_per_range, settings.replay_wait, settings.ranges_per_call) == (
        1000, 30.0, 32,
    )  # fmt: skip
    assert settings.attempts == 3


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (admin_pb2.VerifyRequest(tables=["t"]), "tables[0]: expected schema.name, got 't'"),
        (admin_pb2.VerifyRequest(tables=["a.b.c"]), "tables[0]"),
        (admin_pb2.VerifyRequest(rows_per_range=9), "rows_per_range: at least 10"),
        (admin_pb2.VerifyRequest(ranges_per_call=257), "ranges_per_call: at most 256"),
        (admin_pb2.VerifyRequest(replay_wait_seconds=-1), "replay_wait_seconds: must not be"),
        (admin_pb2.VerifyRequest(attempts=21), "attempts: at most 20"),
        (admin_pb2.VerifyRequest(max_rows_per_second=-5), "max_rows_per_second: must not be"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(request_, message):
    with pytest.raises(InvalidVerify, match=message.replace("[", r"\[").replace("]", r"\]")):
        VerifySettings.from_request(request_)


def published(**agents: str) -> dict[str, bytes]:
    return {
        name: admin_pb2.RegionStatus(region=name, agent_address=address).SerializeToString()
        for name, address in agents.items()
    }


def test_targets_are_every_region_with_its_agent():
    regions = published(us="10.0.0.1:7000", eu="10.0.0.2:7000")
    assert verify_targets(regions, "us") == ("us", {"eu": "10.0.0.2:7000", "us": "10.0.0.1:7000"})


def test_targets_need_a_primary_and_every_agents_address():
    with pytest.raises(NoTargets, match="no write region"):
        verify_targets(published(us="a:1"), "")
    with pytest.raises(NoTargets, match="no agent address known for eu"):
        verify_targets(published(us="a:1", eu=""), "us")
    with pytest.raises(NoTargets, match="write region ap is not among"):
        verify_targets(published(us="a:1"), "ap")


# -- the SQL ----------------------------------------------------------------------------------


def test_ranges_compare_by_the_keys_own_type_and_order():
    table = TableSql("s", 'we"ird', (KeyColumn("a", "integer"), KeyColumn("b", "text")))
    assert table.relation == '"s"."we""ird"'
    sql = table.checksum(True, True)
    assert 'ROW("a", "b") > ROW($1::text::integer, $2::text::text)' in sql
    assert 'ROW("a", "b") <= ROW($3::text::integer, $4::text::text)' in sql
    assert "hashtextextended(r, 0)" in sql and "hashtextextended(r, 1)" in sql
    assert table.checksum(False, False).endswith("WHERE true) AS s")
    # Every n-th key, and a limit, after the bounds' parameters.
    assert table.bounds(False, True).endswith("WHERE rn % $3 = 0 ORDER BY rn LIMIT $4")
    assert table.rows(True, False).endswith('ORDER BY "a", "b" LIMIT $3')


def test_a_table_without_a_key_is_one_range_of_rows_without_keys():
    table = TableSql("public", "log", ())
    assert "WHERE true" in table.checksum(False, False)
    assert "ARRAY[]::text[]" in table.rows(False, False)
    assert "md5(t::text)" in table.rows(False, False)


# -- the report -------------------------------------------------------------------------------


def test_the_figure_is_never_rounded_up_to_agreement():
    assert verify_view.percent(1.0) == "100 %"
    assert verify_view.percent(0.999) == "99.9 %"
    assert verify_view.percent(0.99999) == "99.99 %"
    assert verify_view.percent(2 / 3) == "66.67 %"


def test_the_report_names_tables_ranges_and_rows():
    report = admin_pb2.VerifyReport(
        primary_region="us", lsn=0x3000060, regions=["ap", "us"], ranges=9,
        ranges_agreeing=8, agreeing_fraction=8 / 9, rows=4000, elapsed_seconds=0.5,
        rows_per_second=8000, notes=["ap is not a standby"],
    )  # fmt: skip
    table = report.tables.add(table="public.ledger", key_columns=["id"], ranges=9, rows=4000)
    table.ranges_agreeing = 8
    mismatch = table.mismatches.add(range="id in (1000, 1500]", regions=["ap"])
    mismatch.rows.add(key="1234", regions={"ap": "differs"})
    report.tables.add(table="public.log", ranges=1, ranges_agreeing=1, rows=3,
                      note="no primary key: compared whole")  # fmt: skip

    text = verify_view.format_report(report)

    assert text.startswith("NOT CONSISTENT: 88.89 % of 9 key ranges agree")
    assert "primary us at 0/3000060" in text and "note: ap is not a standby" in text
    assert "public.log     (none)" in text
    assert "id in (1000, 1500]  ap" in text
    assert "public.ledger  1234  ap      differs" in text
    assert verify_view.report_json(report)["tables"][1]["key_columns"] == []


# -- where the coordinators reach an agent ----------------------------------------------------


def test_an_agent_advertises_its_listen_address_with_the_port_it_bound():
    assert advertised_address("127.0.0.1:0", 4242) == "127.0.0.1:4242"
    assert advertised_address("[::1]:0", 4242) == "[::1]:4242"
    # A wildcard is not an address: the host's name stands in for it.
    assert advertised_address("0.0.0.0:50061", 50061) == f"{socket.gethostname()}:50061"


def test_an_agent_refuses_to_advertise_a_wildcard():
    config = AgentConfig(region="us", coordinators=("c:1",), advertise="0.0.0.0:50061")
    with pytest.raises(ConfigError, match="advertise: '0.0.0.0:50061' is a wildcard"):
        config.validate()
    AgentConfig(region="us", coordinators=("c:1",), advertise="agent-us:50061").validate()
