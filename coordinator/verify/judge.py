"""What the checksums and row hashes the regions answered mean: agreement, a mismatch, or a
range that changed while it was looked at.

The rule that keeps ``verify`` honest on tables written to during the check: a range is read on
the primary (snapshot at LSN p1), then on every standby once it has replayed p1, then on the
primary again (p2), in that order in time. A standby's read therefore saw the primary's data as
of some point between p1 and p2. If the primary's range is the same at p1 and at p2, a standby
that replicates faithfully shows exactly that, so a standby that differs is a real mismatch. If
the primary's range changed between p1 and p2, nothing can be concluded: the range is read again
(a fresh bracket), and one that changes through every attempt is reported as unsettled: neither
agreeing nor mismatching. (A range changed and changed back between p1 and p2, to the very same
rows, could be reported as a mismatch: it would take that exact round trip within one bracket.)

A first, cheaper look (primary, then standbys, no second primary read) decides agreement: equal
digests cannot come from different data (see agent.verify_sql). Only ranges that differ at the
first look are bracketed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from coordinator.verify.keyspace import Key


@dataclass(frozen=True, slots=True)
class Sum:
    """A range's checksum in one region."""

    rows: int
    digest: str


class Verdict(enum.Enum):
    AGREE = "agree"
    DIFFER = "differ"
    CHANGING = "changing"


def differing(primary: Sum, others: Mapping[str, Sum]) -> list[str]:
    """The regions whose checksum is not the primary's, sorted."""
    return sorted(region for region, seen in others.items() if seen != primary)


def bracket(before: Sum, others: Mapping[str, Sum], after: Sum) -> tuple[Verdict, list[str]]:
    """The verdict on one range read primary (before), standbys, primary (after)."""
    if before != after:
        return Verdict.CHANGING, []
    regions = differing(before, others)
    return (Verdict.DIFFER, regions) if regions else (Verdict.AGREE, [])


MISSING, EXTRA, DIFFERS = "missing", "extra", "differs"


@dataclass(frozen=True, slots=True)
class RowDifference:
    key: Key
    regions: dict[str, str]  # region -> MISSING, EXTRA or DIFFERS


def row_differences(
    before: Mapping[Key, str], others: Mapping[str, Mapping[Key, str]], after: Mapping[Key, str]
) -> tuple[list[RowDifference], int]:
    """The rows that differ from the primary's, by key (in the order of ``before``'s keys, then
    the keys only other regions have), and how many keys changed on the primary between its
    two reads (skipped: no verdict on them)."""
    keys = dict.fromkeys(before)
    for region in sorted(others):
        keys.update(dict.fromkeys(others[region]))
    keys.update(dict.fromkeys(after))
    changing = 0
    found = []
    for key in keys:
        reference = before.get(key)
        if after.get(key) != reference:
            changing += 1
            continue
        how = {}
        for region, rows in sorted(others.items()):
            value = rows.get(key)
            if value == reference:
                continue
            how[region] = MISSING if value is None else EXTRA if reference is None else DIFFERS
        if how:
            found.append(RowDifference(key, how))
    return found, changing


def pieces(rows: int, row_limit: int, fanout: int) -> int:
    """Rows per piece when narrowing a mismatching range of ``rows`` rows: 0 when it is small
    enough to compare row by row, else a size cutting it into about ``fanout`` pieces."""
    if rows <= row_limit:
        return 0
    return max(1, -(-rows // fanout))


def agreeing_fraction(agreeing: int, ranges: int) -> float:
    """The consistency figure: the share of ranges that agreed (1 when there were none)."""
    return 1.0 if ranges == 0 else agreeing / ranges


def pause(rows_done: int, elapsed: float, max_rows_per_second: float) -> float:
    """How long to wait before the next batch so that the rows compared so far were not
    compared faster than ``max_rows_per_second`` (0: no limit)."""
    if max_rows_per_second <= 0:
        return 0.0
    return max(0.0, rows_done / max_rows_per_second - elapsed)
