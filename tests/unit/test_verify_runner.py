"""The Verifier's orchestration against in-process fake agents (gRPC on port 0) holding a
table in memory: writes scripted between calls show the bracketing rule at work, a damaged
row is narrowed through several cuts, and a standby that does not catch up fails the check
naming it."""

from __future__ import annotations

import grpc
import pytest

from coordinator.verify.runner import Verifier, VerifyFailed
from coordinator.verify.settings import VerifySettings
from latitude.v1 import agent_pb2, agent_pb2_grpc

US, EU = "us", "eu"


class FakeAgent(agent_pb2_grpc.VerifyServiceServicer):
    """One region's database: table public.t (id int primary key) as {id: value}."""

    def __init__(self, region: str, rows: dict[int, str], *, standby: bool) -> None:
        self.region = region
        self.rows = dict(rows)
        self.standby = standby
        self.lsn = 100
        self.before_read = lambda method: None  # scripted writes
        self.lagging = False
        self.cuts: list[int] = []  # every Bounds call's piece size

    def _select(self, key_range: agent_pb2.KeyRange) -> list[int]:
        low = int(key_range.after.values[0]) if key_range.HasField("after") else None
        high = int(key_range.upto.values[0]) if key_range.HasField("upto") else None
        return sorted(
            k for k in self.rows if (low is None or k > low) and (high is None or k <= high)
        )

    async def _wait(self, context, min_lsn: int) -> None:
        if self.lagging and min_lsn:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{self.region} has replayed 0/64, not yet 0/{min_lsn:X}, after 0.1 s",
            )

    async def Tables(self, request, context):
        await self._wait(context, request.min_lsn)
        table = agent_pb2.VerifyTable(schema="public", name="t", key_columns=["id"])
        return agent_pb2.VerifyTablesReply(
            region=self.region, standby=self.standby, lsn=self.lsn, tables=[table]
        )

    async def Checksum(self, request, context):
        await self._wait(context, request.min_lsn)
        self.before_read("Checksum")
        reply = agent_pb2.ChecksumReply(lsn=self.lsn, standby=self.standby)
        for key_range in request.ranges:
            keys = self._select(key_range)
            digest = str(sum(hash((k, self.rows[k])) for k in keys))
            reply.ranges.add(rows=len(keys), digest=digest)
        return reply

    async def Bounds(self, request, context):
        self.cuts.append(request.every)
        keys = self._select(request.range)[request.every - 1 :: request.every]
        return agent_pb2.BoundsReply(keys=[agent_pb2.VerifyKey(values=[str(k)]) for k in keys])

    async def Rows(self, request, context):
        await self._wait(context, request.min_lsn)
        self.before_read("Rows")
        reply = agent_pb2.RowsReply(lsn=self.lsn, standby=self.standby)
        for k in self._select(request.range):
            reply.rows.add(key=agent_pb2.VerifyKey(values=[str(k)]), digest=self.rows[k])
        return reply


@pytest.fixture
async def agents():
    table = {k: f"v{k}" for k in range(1, 3001)}
    fakes = {US: FakeAgent(US, table, standby=False), EU: FakeAgent(EU, table, standby=True)}
    servers, addresses = [], {}
    for region, fake in fakes.items():
        server = grpc.aio.server()
        agent_pb2_grpc.add_VerifyServiceServicer_to_server(fake, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        addresses[region] = f"127.0.0.1:{port}"
    try:
        yield fakes, addresses
    finally:
        for server in servers:
            await server.stop(None)


SETTINGS = VerifySettings(rows_per_range=1000, replay_wait=0.1)


async def test_a_damaged_row_is_narrowed_through_several_cuts(agents):
    fakes, addresses = agents
    fakes[EU].rows[1777] = "damaged"

    # One range of 3000 rows: cut into pieces of 375, the differing one into pieces of 47,
    # compared by row.
    settings = VerifySettings(rows_per_range=3000, replay_wait=0.1)
    report = await Verifier(US, addresses, settings).run()

    (table,) = report.tables
    assert (report.ranges, report.ranges_agreeing) == (2, 1)  # and the open end
    (mismatch,) = table.mismatches
    assert mismatch.range == "id <= 3000" and list(mismatch.regions) == [EU]
    assert [(r.key, dict(r.regions)) for r in mismatch.rows] == [("1777", {EU: "differs"})]
    assert not mismatch.rows_truncated
    assert fakes[EU].cuts == [3000, 375, 47] and fakes[US].cuts == []  # the standby cuts


async def test_a_range_written_between_the_looks_agrees_once_replay_caught_up(agents):
    fakes, addresses = agents
    primary, standby = fakes[US], fakes[EU]
    writes = iter([1])

    def write_once(method: str) -> None:
        # The first look finds the standby behind a write the primary has; by the bracket
        # the standby has replayed it.
        if next(writes, None) is not None:
            primary.rows[2500] = "new"
            standby.before_read = lambda m: standby.rows.__setitem__(2500, "new")

    primary.before_read = write_once

    report = await Verifier(US, addresses, SETTINGS).run()

    assert report.consistent and report.ranges_agreeing == report.ranges == 4, report


async def test_a_range_written_through_every_recheck_is_unsettled_not_a_mismatch(agents):
    fakes, addresses = agents
    primary = fakes[US]
    counter = iter(range(1_000_000))

    def keep_writing(method: str) -> None:
        primary.rows[2500] = f"write {next(counter)}"  # the standby never catches up

    primary.before_read = keep_writing

    report = await Verifier(US, addresses, SETTINGS).run()

    (table,) = report.tables
    (mismatch,) = table.mismatches
    assert mismatch.unsettled and not mismatch.regions and not mismatch.rows
    assert (report.ranges, report.ranges_agreeing, report.ranges_unsettled) == (4, 3, 1)
    assert not report.consistent


async def test_a_standby_that_does_not_replay_fails_the_check_naming_it(agents):
    fakes, addresses = agents
    fakes[EU].lagging = True

    with pytest.raises(VerifyFailed, match=r"^eu has replayed 0/64, not yet 0/64") as failed:
        await Verifier(US, addresses, SETTINGS).run()
    assert failed.value.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_write_region_in_recovery_has_nothing_to_compare_with(agents):
    fakes, addresses = agents
    fakes[US].standby = True

    with pytest.raises(VerifyFailed, match="the write region us's database is in recovery"):
        await Verifier(US, addresses, SETTINGS).run()
