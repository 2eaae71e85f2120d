"""Carrying out a Verify over the regions' agents (their VerifyService).

1. The primary's position p0 and its tables; then every standby's tables once it has replayed
   p0 (bounded by replay_wait: past it, the check fails naming the region and both positions).
   A region whose database is not in recovery (a second primary, one taken out of replication)
   cannot replay anything: it is compared as it stands, and the report says so.
2. Per table: cuts every rows_per_range rows, read from a standby (the primary is spared the
   scan); a table without a primary key is one range, the whole table.
3. Ranges go in batches of ranges_per_call: the primary's checksums first (one REPEATABLE READ
   snapshot, position p), then every standby's in parallel once each has replayed p.
4. Ranges that differ are bracketed (see coordinator.verify.judge) up to ``attempts`` times.
5. Confirmed mismatches are narrowed: cut into pieces, bracketed again, down to ranges small
   enough to compare row by row (row hashes by key, bracketed the same way).

The primary does one checksum pass over each table and nothing else heavy; the work per call
and per agent is bounded (ranges per call, two connections per agent, a statement timeout),
and max_rows_per_second spreads it over more time when asked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from coordinator.verify.judge import (
    Sum,
    Verdict,
    agreeing_fraction,
    bracket,
    differing,
    pause,
    pieces,
    row_differences,
)
from coordinator.verify.keyspace import WHOLE, Key, KeyRange, describe, describe_key, split
from coordinator.verify.settings import VerifySettings
from latitude.channels import open_channel
from latitude.errors import LatitudeError
from latitude.lsn import format_lsn
from latitude.pki import CertFiles
from latitude.v1 import admin_pb2, agent_pb2, agent_pb2_grpc

_CALL_MARGIN = 40.0  # beyond its replay wait: past the agent's statement timeout (30 s)
_BOUNDS_LIMIT = 1_000_000
# A standby cancels a read that conflicts with its replay (ABORTED): read again, a few times.
_ABORTED_RETRIES = 3


class VerifyFailed(LatitudeError):
    """The check could not be carried out; ``code`` is the gRPC status to answer with."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Table:
    schema: str
    name: str
    key: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class _Tally:
    verdict: admin_pb2.TableVerdict
    started: float
    pending: list[KeyRange] = field(default_factory=list)


class Verifier:
    """One run of the check. ``agents``: region -> its agent's address."""

    def __init__(
        self,
        primary: str,
        agents: Mapping[str, str],
        settings: VerifySettings,
        progress: Callable[[admin_pb2.VerifyProgress], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tls: CertFiles | None = None,
    ) -> None:
        if primary not in agents:
            raise VerifyFailed(f"no agent address for the primary's region {primary}",
                               grpc.StatusCode.FAILED_PRECONDITION)  # fmt: skip
        self.primary = primary
        self.others = sorted(r for r in agents if r != primary)
        self._agents = dict(agents)
        self._settings = settings
        self._progress = progress
        self._clock = clock
        self._sleep = sleep
        self._tls = tls  # the coordinator's certificate: agents serve Verify to coordinators
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, agent_pb2_grpc.VerifyServiceStub] = {}
        self._started = 0.0
        self._report = admin_pb2.VerifyReport(primary_region=primary)
        self._table_label = ""
        self._tables_done = 0
        self._tables_total = 0
        self._phase = ""
        self._cutter = primary
        self._verdicts: dict[str, admin_pb2.TableVerdict] = {}  # the table being compared

    # -- calls -----------------------------------------------------------------------------

    async def _call(self, region: str, method: str, request, wait: float = 0.0):
        stub = self._stubs[region]
        for attempt in range(_ABORTED_RETRIES + 1):
            try:
                return await getattr(stub, method)(request, timeout=wait + _CALL_MARGIN)
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.ABORTED or attempt == _ABORTED_RETRIES:
                    raise self._failure(region, err) from err
        raise AssertionError("unreachable")

    def _failure(self, region: str, err: grpc.aio.AioRpcError) -> VerifyFailed:
        code = err.code()
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            message = f"{err.details()} (the standby is lagging or not replaying)"
        else:
            message = f"{region}'s agent at {self._agents[region]}: {code.name} "
            message += err.details() or ""
        if code not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
            code = grpc.StatusCode.UNAVAILABLE
        return VerifyFailed(message.strip(), code)

    async def _everywhere(self, regions: Sequence[str], method: str, make) -> dict:
        """``method`` on every region in ``regions`` at once; ``make(region)`` its request."""
        wait = self._settings.replay_wait
        replies = await asyncio.gather(*(self._call(r, method, make(r), wait) for r in regions))
        return dict(zip(regions, replies, strict=True))

    async def _checksums(
        self, table: Table, ranges: Sequence[KeyRange], regions: Sequence[str], min_lsn: int
    ) -> tuple[dict[str, list[Sum]], dict[str, int]]:
        """Per region, each range's checksum; and the position each region read at."""
        protos = [r.to_proto() for r in ranges]

        def request(_region: str) -> agent_pb2.ChecksumRequest:
            return agent_pb2.ChecksumRequest(
                schema=table.schema, table=table.name, ranges=protos, min_lsn=min_lsn,
                wait_seconds=self._settings.replay_wait,
            )  # fmt: skip

        replies = await self._everywhere(regions, "Checksum", request)
        sums, positions = {}, {}
        for region, reply in replies.items():
            if len(reply.ranges) != len(ranges):
                raise VerifyFailed(f"{region} answered {len(reply.ranges)} checksums for "
                                   f"{len(ranges)} ranges", grpc.StatusCode.INTERNAL)  # fmt: skip
            sums[region] = [Sum(c.rows, c.digest) for c in reply.ranges]
            positions[region] = reply.lsn
        return sums, positions

    async def _primary_checksums(
        self, table: Table, ranges: Sequence[KeyRange]
    ) -> tuple[list[Sum], int]:
        sums, positions = await self._checksums(table, ranges, [self.primary], 0)
        return sums[self.primary], positions[self.primary]

    async def _bracketed(self, table: Table, ranges: Sequence[KeyRange]):
        """Primary, standbys, primary again: per range (before, {region: sum}, after)."""
        before, lsn = await self._primary_checksums(table, ranges)
        seen, _ = await self._checksums(table, ranges, self.others, lsn)
        after, _ = await self._primary_checksums(table, ranges)
        return [
            (before[i], {r: seen[r][i] for r in self.others}, after[i]) for i in range(len(ranges))
        ]

    # -- progress ----------------------------------------------------------------------------

    def _tell(self, phase: str | None = None) -> None:
        if phase is not None:
            self._phase = phase
        self._progress(
            admin_pb2.VerifyProgress(
                table=self._table_label, tables_done=self._tables_done,
                tables_total=self._tables_total, ranges_done=self._report.ranges,
                rows_done=self._report.rows, elapsed_seconds=self._clock() - self._started,
                phase=self._phase,
            )
        )  # fmt: skip

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> admin_pb2.VerifyReport:
        self._started = self._clock()
        for region, address in self._agents.items():
            self._channels[region] = open_channel(address, self._tls)
            self._stubs[region] = agent_pb2_grpc.VerifyServiceStub(self._channels[region])
        try:
            tables = await self._catalogs()
            for table in tables:
                self._table_label = table.label
                self._tell(f"comparing {table.label}")
                try:
                    await self._table(table)
                except VerifyFailed as err:
                    if err.code != grpc.StatusCode.NOT_FOUND:
                        raise
                    self._report.tables.append(self._gone(table, str(err)))
                self._tables_done += 1
        finally:
            await asyncio.gather(*(c.close() for c in self._channels.values()))
        report = self._report
        report.elapsed_seconds = self._clock() - self._started
        report.agreeing_fraction = agreeing_fraction(report.ranges_agreeing, report.ranges)
        report.rows_per_second = report.rows / max(report.elapsed_seconds, 1e-6)
        report.consistent = report.ranges_agreeing == report.ranges
        self._table_label = ""
        self._tell("done")
        return report

    async def _catalogs(self) -> list[Table]:
        """Every region's user tables once the standbys have replayed the primary's position;
        the tables to compare (the primary's, then any only other regions have)."""
        self._tell("reading the primary's position and tables")
        primary = await self._call(self.primary, "Tables", agent_pb2.VerifyTablesRequest())
        if primary.standby:
            raise VerifyFailed(
                f"the write region {self.primary}'s database is in recovery, not a primary "
                "(a failover under way?): nothing to compare with",
                grpc.StatusCode.FAILED_PRECONDITION,
            )
        self._report.lsn = primary.lsn
        self._report.regions.extend(sorted(self._agents))
        self._tell(f"waiting for the standbys to replay {format_lsn(primary.lsn)}")
        wait = self._settings.replay_wait
        others = await self._everywhere(
            self.others, "Tables",
            lambda _r: agent_pb2.VerifyTablesRequest(min_lsn=primary.lsn, wait_seconds=wait),
        )  # fmt: skip
        # Cut points come from a standby that replays the primary (sparing the primary the
        # scan), never from a region that does not: its keys may be the very divergence.
        replaying = [r for r, reply in others.items() if reply.standby]
        self._cutter = replaying[0] if replaying else self.primary
        for region, reply in others.items():
            if not reply.standby:
                self._report.notes.append(
                    f"{region} is not a standby (not in recovery, timeline {reply.timeline_id}):"
                    " compared as it stands, without waiting for it to replay"
                )
        catalogs = {self.primary: primary, **others}
        found: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {}
        for region in [self.primary, *self.others]:
            for t in catalogs[region].tables:
                found.setdefault((t.schema, t.name), {})[region] = tuple(t.key_columns)
        wanted = self._settings.tables
        for schema, name in wanted:
            if (schema, name) not in found:
                raise VerifyFailed(f"tables: no region has a table {schema}.{name}",
                                   grpc.StatusCode.INVALID_ARGUMENT)  # fmt: skip
        tables = []
        for (schema, name), keys in found.items():
            if wanted and (schema, name) not in wanted:
                continue
            key = keys.get(self.primary, next(iter(keys.values())))
            table = Table(schema, name, key)
            missing = sorted(set(self._agents) - set(keys))
            unlike = sorted(r for r, k in keys.items() if k != key)
            if missing or unlike:
                self._whole_table_mismatch(table, missing, unlike)
                continue
            tables.append(table)
        self._tables_total = len(tables) + len(self._report.tables)
        self._tables_done = len(self._report.tables)
        return tables

    def _whole_table_mismatch(self, table: Table, missing: list[str], unlike: list[str]) -> None:
        notes = []
        if missing:
            notes.append(f"missing in {', '.join(missing)}")
        if unlike:
            notes.append(f"a different primary key in {', '.join(unlike)}")
        verdict = admin_pb2.TableVerdict(
            table=table.label, key_columns=table.key, ranges=1, note="; ".join(notes)
        )
        verdict.mismatches.add(range="whole table", regions=sorted({*missing, *unlike}))
        self._report.tables.append(verdict)
        self._report.ranges += 1

    async def _table(self, table: Table) -> None:
        started = self._clock()
        verdict = admin_pb2.TableVerdict(table=table.label, key_columns=table.key)
        self._verdicts[table.label] = verdict
        if not table.key:
            verdict.note = "no primary key: compared whole"
            ranges = [WHOLE]
        else:
            ranges = await self._cut(table, WHOLE, self._settings.rows_per_range)
        tally = _Tally(verdict, started)
        step = self._settings.ranges_per_call
        for i in range(0, len(ranges), step):
            batch = ranges[i : i + step]
            sums, lsn = await self._primary_checksums(table, batch)
            seen, _ = await self._checksums(table, batch, self.others, lsn)
            for j, key_range in enumerate(batch):
                verdict.rows += sums[j].rows
                self._report.rows += sums[j].rows
                if differing(sums[j], {r: seen[r][j] for r in self.others}):
                    tally.pending.append(key_range)
                else:
                    verdict.ranges_agreeing += 1
                    self._report.ranges_agreeing += 1
            verdict.ranges += len(batch)
            self._report.ranges += len(batch)
            self._tell()
            elapsed = self._clock() - self._started
            await self._sleep(pause(self._report.rows, elapsed, self._settings.max_rows_per_second))
        if tally.pending:
            await self._recheck(table, tally)
        verdict.elapsed_seconds = self._clock() - started
        self._report.tables.append(self._verdicts.pop(table.label))

    def _gone(self, table: Table, why: str) -> admin_pb2.TableVerdict:
        """A table dropped (or renamed) while the check ran: said so; the ranges compared
        before it went stay counted."""
        verdict = self._verdicts.pop(table.label, None) or admin_pb2.TableVerdict(
            table=table.label, key_columns=table.key
        )
        verdict.note = f"gone during the check, not compared to the end ({why})"
        self._report.notes.append(f"{table.label} was dropped or renamed during the check")
        return verdict

    async def _cut(self, table: Table, within: KeyRange, every: int) -> list[KeyRange]:
        """``within`` in pieces of ``every`` rows, cut where a replaying standby (else the
        primary) says."""
        reply = await self._call(
            self._cutter, "Bounds",
            agent_pb2.BoundsRequest(schema=table.schema, table=table.name,
                                    range=within.to_proto(), every=every, limit=_BOUNDS_LIMIT),
        )  # fmt: skip
        return split(within, [tuple(k.values) for k in reply.keys])

    async def _recheck(self, table: Table, tally: _Tally) -> None:
        """Bracket the ranges that differed at the first look; narrow the confirmed ones."""
        verdict = tally.verdict
        pending = tally.pending
        self._tell(f"re-checking {len(pending)} differing ranges of {table.label}")
        confirmed: list[tuple[KeyRange, list[str], int]] = []
        for _ in range(self._settings.attempts):
            if not pending:
                break
            still = []
            for i in range(0, len(pending), self._settings.ranges_per_call):
                batch = pending[i : i + self._settings.ranges_per_call]
                for key_range, (before, seen, after) in zip(
                    batch, await self._bracketed(table, batch), strict=True
                ):
                    outcome, regions = bracket(before, seen, after)
                    if outcome is Verdict.CHANGING:
                        still.append(key_range)
                    elif outcome is Verdict.AGREE:
                        verdict.ranges_agreeing += 1
                        self._report.ranges_agreeing += 1
                    else:
                        most = max([before.rows, *(s.rows for s in seen.values())])
                        confirmed.append((key_range, regions, most))
            pending = still
        for key_range in pending:
            verdict.mismatches.add(range=describe(key_range, table.key), unsettled=True)
            self._report.ranges_unsettled += 1
        for n, (key_range, regions, most) in enumerate(confirmed):
            mismatch = verdict.mismatches.add(range=describe(key_range, table.key), regions=regions)
            if not table.key:
                continue
            if n >= self._settings.narrowed_ranges:
                mismatch.rows_truncated = True
                continue
            self._tell(f"narrowing {describe(key_range, table.key)} of {table.label}")
            await self._narrow(table, key_range, most, mismatch)

    async def _narrow(
        self, table: Table, key_range: KeyRange, most: int, mismatch: admin_pb2.RangeMismatch
    ) -> None:
        """Find the rows that differ in a confirmed mismatching range: cut it into pieces,
        keep the pieces that still differ, until they are small enough to compare by row."""
        settings = self._settings
        every = pieces(most, settings.row_limit, settings.fanout)
        if every == 0:
            await self._rows(table, key_range, mismatch)
            return
        parts = await self._cut(table, key_range, every)
        if len(parts) == 1:  # cannot be cut further (the regions hold too different rows)
            await self._rows(table, key_range, mismatch)
            return
        for part, (before, seen, after) in zip(
            parts, await self._bracketed(table, parts), strict=True
        ):
            outcome, _ = bracket(before, seen, after)
            if outcome is Verdict.CHANGING:
                mismatch.rows_truncated = True
            elif outcome is Verdict.DIFFER:
                if len(mismatch.rows) >= settings.listed_rows:
                    mismatch.rows_truncated = True
                    return
                most = max([before.rows, *(s.rows for s in seen.values())])
                await self._narrow(table, part, most, mismatch)

    async def _rows(
        self, table: Table, key_range: KeyRange, mismatch: admin_pb2.RangeMismatch
    ) -> None:
        limit = self._settings.row_limit * 4

        def request(lsn: int):
            return lambda _r: agent_pb2.RowsRequest(
                schema=table.schema, table=table.name, range=key_range.to_proto(), limit=limit,
                min_lsn=lsn, wait_seconds=self._settings.replay_wait,
            )  # fmt: skip

        def by_key(reply: agent_pb2.RowsReply) -> dict[Key, str]:
            if reply.truncated:
                mismatch.rows_truncated = True
            return {tuple(r.key.values): r.digest for r in reply.rows}

        before = (await self._everywhere([self.primary], "Rows", request(0)))[self.primary]
        seen = await self._everywhere(self.others, "Rows", request(before.lsn))
        after = (await self._everywhere([self.primary], "Rows", request(0)))[self.primary]
        found, changing = row_differences(
            by_key(before), {r: by_key(s) for r, s in seen.items()}, by_key(after)
        )
        if changing:
            mismatch.rows_truncated = True
        for difference in found:
            if len(mismatch.rows) >= self._settings.listed_rows:
                mismatch.rows_truncated = True
                return
            mismatch.rows.add(key=describe_key(difference.key), regions=difference.regions)
