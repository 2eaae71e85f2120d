"""Primary-key ranges: how a table's key space is cut, and how a range is written for people.

A key is a tuple of the key columns' values in PostgreSQL's text form; its order is the
database's, never Python's, so cutting is done only at keys a database returned (every n-th row
of a range, in key order). A range holds the keys k with after < k <= upto; None is unbounded.
Consecutive cuts of one range therefore cover it exactly, with no gap and no overlap, whatever
rows each region holds: every region is asked about the same key intervals.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from latitude.v1 import agent_pb2

Key = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeyRange:
    after: Key | None = None
    upto: Key | None = None

    @property
    def whole(self) -> bool:
        return self.after is None and self.upto is None

    def to_proto(self) -> agent_pb2.KeyRange:
        message = agent_pb2.KeyRange()
        if self.after is not None:
            message.after.values.extend(self.after)
        if self.upto is not None:
            message.upto.values.extend(self.upto)
        return message


WHOLE = KeyRange()


def split(within: KeyRange, cuts: Sequence[Key]) -> list[KeyRange]:
    """``within`` cut at ``cuts`` (ascending keys inside it): (after, c0], (c0, c1], ...,
    (cn, upto]. A cut equal to ``within.upto`` would leave an empty last piece: it is dropped.
    """
    cuts = list(cuts)
    if cuts and within.upto is not None and cuts[-1] == within.upto:
        cuts.pop()
    edges: list[Key | None] = [within.after, *cuts, within.upto]
    return [KeyRange(a, b) for a, b in itertools.pairwise(edges)]


def _key_text(key: Key) -> str:
    values = [v if _plain(v) else "'" + v.replace("'", "''") + "'" for v in key]
    return values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"


def _plain(value: str) -> bool:
    """Numbers read best unquoted."""
    try:
        float(value)
    except ValueError:
        return False
    return True


def describe_key(key: Key) -> str:
    """A key as people write it: 42, 'abc', or (7, 'b') for a composite key."""
    return _key_text(key)


def describe(key_range: KeyRange, columns: Sequence[str]) -> str:
    """'id in (1000, 2000]', 'id <= 1000', '(a, b) > (1, 'x')', or 'whole table'."""
    if key_range.whole or not columns:
        return "whole table"
    name = columns[0] if len(columns) == 1 else "(" + ", ".join(columns) + ")"
    after, upto = key_range.after, key_range.upto
    if after is None:
        return f"{name} <= {_key_text(upto)}"
    if upto is None:
        return f"{name} > {_key_text(after)}"
    return f"{name} in ({_key_text(after)}, {_key_text(upto)}]"
