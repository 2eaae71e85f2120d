"""``latitude verify`` through the coordinators and the agents of the real stack: agreement, a
table without a primary key, a table written to during the check, and bad requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys

import grpc
import pytest

from latitude import verify_view
from latitude.admin_client import cluster_status
from latitude.channels import open_channel
from latitude.errors import LatitudeError
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2, admin_pb2_grpc
from tests.integration.connections import CLI_TLS, TLS, eventually, session
from tests.integration.test_operations import events_after, newest_sequence

pytestmark = pytest.mark.stack


def addresses(stack: Stack) -> list[str]:
    return stack.coordinator_addresses(stack.state())


@pytest.fixture
async def cluster(stack: Stack):
    await stack.up()
    yield stack


async def write_region(stack: Stack) -> str:
    return (await cluster_status(addresses(stack), 2.0, tls=TLS)).write_region


async def fresh_table(stack: Stack, name: str, ddl: str, fill: str) -> None:
    async with session(stack, await write_region(stack)) as conn:
        await conn.execute(f"DROP TABLE IF EXISTS {name}")
        await conn.execute(ddl)
        await conn.execute(fill)


async def test_verify_agrees_and_compares_a_table_without_a_primary_key_whole(cluster: Stack):
    await fresh_table(
        cluster, "verify_items",
        "CREATE TABLE verify_items (id bigint PRIMARY KEY, name text, at timestamptz)",
        "INSERT INTO verify_items SELECT g, 'item ' || g, now() FROM generate_series(1, 3000) g",
    )  # fmt: skip
    await fresh_table(
        cluster, "verify_log",
        "CREATE TABLE verify_log (level int, line text)",
        # Duplicate rows: a sum of row hashes counts them, an xor would cancel them out.
        "INSERT INTO verify_log SELECT g % 3, 'same' FROM generate_series(1, 300) g",
    )  # fmt: skip
    view = await cluster_status(addresses(cluster), 2.0, tls=TLS)
    assert all(r.agent_address for r in view.regions), "every agent advertises its address"
    seen: list[admin_pb2.VerifyProgress] = []
    request = admin_pb2.VerifyRequest(
        tables=["public.verify_items", "public.verify_log"], rows_per_range=250
    )
    since = await newest_sequence(cluster)

    report = await verify_view.verify(addresses(cluster), request, 60.0, seen.append, tls=TLS)

    assert report.consistent and report.agreeing_fraction == 1.0, report
    assert report.primary_region == view.write_region
    assert list(report.regions) == sorted(r.region for r in view.regions)
    items, log = report.tables
    assert (items.table, items.rows, items.ranges) == ("public.verify_items", 3000, 13)
    assert (log.table, log.rows, log.ranges) == ("public.verify_log", 300, 1)
    assert not log.key_columns and log.note == "no primary key: compared whole"
    assert report.rows == 3300 and report.rows_per_second > 0
    assert seen and seen[-1].phase == "done" and seen[-1].ranges_done == 14
    # The agents beside their databases run the check's backends at a lower CPU priority.
    async with session(cluster, view.write_region) as conn:
        backends = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'latitude-verify'"
        )
    assert backends and all(os.getpriority(os.PRIO_PROCESS, b["pid"]) == 10 for b in backends)
    text = verify_view.format_report(report)
    assert text.startswith("consistent: 100 % of 14 key ranges agree")
    # The leader keeps the outcome in the event history (and so in incidents).
    kinds = [admin_pb2.EVENT_KIND_CONSISTENCY_CHECKED]
    (event,) = await eventually(
        lambda: events_after(cluster, since, kinds=kinds), 10, "the check's event"
    )
    assert event.message == "data consistent: 100 % of 14 key ranges agree"
    assert event.attributes["check"] == "data" and event.attributes["consistent"] == "true"
    assert "no primary key: compared whole" in text

    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "latitude.cli", "verify", "--coordinators",
        ",".join(addresses(cluster)), "--table", "public.verify_log", "--json", *CLI_TLS,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(command.communicate(), 60.0)
    assert command.returncode == 0, err.decode()
    assert json.loads(out)["agreeing_fraction"] == 1.0
    assert "waiting for the standbys to replay" in err.decode()


async def test_verify_on_a_table_written_during_the_check_reports_no_false_mismatch(
    cluster: Stack,
):
    await fresh_table(
        cluster, "verify_busy",
        "CREATE TABLE verify_busy (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)",
        "INSERT INTO verify_busy SELECT g FROM generate_series(1, 2000) g",
    )  # fmt: skip
    region = await write_region(cluster)
    writes = 0

    async def write() -> None:
        nonlocal writes
        async with session(cluster, region) as conn:
            while True:
                ids = random.sample(range(1, 2001), 20)
                await conn.execute("UPDATE verify_busy SET n = n + 1 WHERE id = any($1)", ids)
                writes += 1

    request = admin_pb2.VerifyRequest(tables=["public.verify_busy"], rows_per_range=100)
    writer = asyncio.create_task(write())
    try:
        await asyncio.sleep(0.2)
        busy = await verify_view.verify(addresses(cluster), request, 60.0, tls=TLS)
        written_during = writes
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    assert written_during > 10, "the table was written to throughout the check"

    # Every range either agreed at one consistent point or is said to have kept changing:
    # never a mismatch that is only replication catching up.
    (table,) = busy.tables
    assert all(m.unsettled and not m.regions for m in table.mismatches), table.mismatches
    assert busy.ranges_agreeing + busy.ranges_unsettled == busy.ranges == 21

    quiet = await verify_view.verify(addresses(cluster), request, 60.0, tls=TLS)
    assert quiet.consistent and quiet.agreeing_fraction == 1.0, quiet


async def test_verify_refuses_bad_requests_naming_the_field(cluster: Stack):
    async with open_channel(addresses(cluster)[0], TLS) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        for request, expected in [
            (admin_pb2.VerifyRequest(tables=["nodot"]), "tables[0]: expected schema.name"),
            (admin_pb2.VerifyRequest(rows_per_range=3), "rows_per_range: at least 10"),
            (admin_pb2.VerifyRequest(ranges_per_call=1000), "ranges_per_call: at most 256"),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in stub.Verify(request, timeout=10.0):
                    pass
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert expected in refused.value.details()
    missing = admin_pb2.VerifyRequest(tables=["public.no_such_table"])
    with pytest.raises(LatitudeError, match="no region has a table public.no_such_table"):
        await verify_view.verify(addresses(cluster), missing, 30.0, tls=TLS)


async def test_a_table_dropped_during_the_check_is_said_to_be_gone(cluster: Stack):
    await fresh_table(
        cluster, "verify_doomed",
        "CREATE TABLE verify_doomed (id int PRIMARY KEY, v text)",
        "INSERT INTO verify_doomed SELECT g, 'v' FROM generate_series(1, 4000) g",
    )  # fmt: skip
    # Paced to take about two seconds, so that the drop lands in the middle of it.
    request = admin_pb2.VerifyRequest(
        tables=["public.verify_doomed"], rows_per_range=100, max_rows_per_second=2000
    )
    seen: list[admin_pb2.VerifyProgress] = []
    check = asyncio.create_task(
        verify_view.verify(addresses(cluster), request, 60.0, seen.append, tls=TLS)
    )
    while not any(p.ranges_done for p in seen):
        assert not check.done(), check.result()
        await asyncio.sleep(0.02)
    async with session(cluster, await write_region(cluster)) as conn:
        await conn.execute("DROP TABLE verify_doomed")

    report = await check

    (table,) = report.tables
    assert table.note.startswith("gone during the check, not compared to the end"), table
    assert "verify_doomed" in table.note
    assert "public.verify_doomed was dropped or renamed during the check" in report.notes
    assert 0 < table.ranges < 41
